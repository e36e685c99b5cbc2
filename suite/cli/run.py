"""``suite run``: methods x seeds x budget points on one setting from one shared baseline: the plan,
the jobs on an executor, each job's line as it ends, and the summary."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from suite.cli import flags, options

NAME = "run"


def add(sub) -> None:
    """``suite run`` and its options."""
    run = sub.add_parser(
        "run",
        help="run methods on a setting (cached, resumable)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=flags.EPILOG,
        description="Prune the setting's baseline with each method, fine-tune with the same "
        "recipe, measure, and store every run. Finished runs are never recomputed; "
        "a killed run resumes from its last checkpoint.",
    )
    flags.common(run)
    run.add_argument(
        "--methods",
        default=flags.DEFAULT_METHODS,
        help=f"comma list of methods, wildcards allowed ('nni-*'); default {flags.DEFAULT_METHODS}",
    )
    run.add_argument("--seeds", type=int, default=1, help="number of seeds, 0..N-1 (default 1)")
    run.add_argument("--seed-list", default=None, help="explicit seeds, e.g. 0,3,7 (overrides --seeds)")
    run.add_argument(
        "--ratios",
        default=None,
        help="override the setting's ratios: 0.7, [0,0.5,0.5,0.5,0] (ResNet stages), [1-15:0.7], "
        "module globs 'features.*=0.5,classifier=0', a transformer's structure kinds heads=0.5,mlp=0.3 "
        "(and embed=0.25, its embedding width; globs may follow), or a FLOPs target 2.5x",
    )
    run.add_argument(
        "--target",
        default=None,
        help="a FLOPs speedup, e.g. 2.5x: the uniform ratio whose surgery achieves it (the same as --ratios "
        "2.5x); or a latency speedup, e.g. 2x-latency: per-stage ratios whose speedup measured on this "
        "machine (--latency-runtime at --latency-batch) reaches it, searched once and stored in the runs dir",
    )
    run.add_argument(
        "--latency-runtime",
        default=None,  # given without a latency target it is an error (options.latency_target)
        help="with --target Nx-latency: the runtime it is measured on (default eager)",
    )
    run.add_argument(
        "--latency-batch", type=int, default=None, help="with --target Nx-latency: the batch size (default 64)"
    )
    flags.latency_search(run)
    run.add_argument("--skip", default=None, help="ResNet blocks left unpruned, e.g. [1.0,2.3]")
    run.add_argument(
        "--round-to",
        dest="align_to",
        type=int,
        default=None,
        metavar="N",
        help="channel alignment: round every pruned layer's kept filter count down to a multiple of N "
        "(torch-pruning's round_to; part of the run's identity, so N=8 is another comparison than the "
        "counts as given). 'suite latency --round-to 1,8,16,32' shows what it buys on this machine",
    )
    run.add_argument(
        "--hparams",
        default=None,
        help="JSON or TOML file {method: {field: value}} (see 'suite list methods'), or 'best': "
        "each method's best trial of its 'suite search' study",
    )
    run.add_argument("--study", default=None, help="with --hparams best: the study name (default SETTING-METHOD)")
    run.add_argument(
        "--storage", default=None, help="with --hparams best: the Optuna storage (default: RUNS_DIR/search.db)"
    )
    run.add_argument(
        "--budget",
        default="paper",
        metavar="LIST",
        help="budget points, comma-separated: paper (default: the setting's fine-tuning, a method's "
        "own training on top); total:1x,2x,4x (every method trains on the same samples after "
        "the baseline: N x the setting's budget unit, the fine-tuning's schedule stretched to "
        "fill it); a plain number is samples. E.g. --budget paper,total:1x,2x,4x",
    )
    run.add_argument(
        "--baseline", default=None, help="your own baseline checkpoint (a state_dict) instead of training one"
    )
    run.add_argument(
        "--baseline-seed",
        type=int,
        default=0,
        help="seed of the trained baseline (default 0); another seed is another baseline, whose "
        "runs the leaderboard keeps in tables of their own (a replication)",
    )
    run.add_argument(
        "--recompute-stale",
        action="store_true",
        help="retrain stored runs whose training code differs from today's (the old run is kept in "
        "its folder's superseded/); without it they are reported as stale and left as they are",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan and exit (a latency target is searched first, since the plan's ratios are its "
        "result, and stored for the runs: minutes of timing on an idle machine)",
    )
    run.add_argument(
        "--smoke",
        action="store_true",
        help="every phase cut to a handful of iterations (results marked smoke, never ranked)",
    )
    flags.numerics(run)
    flags.engine(run)


def main(args) -> int:
    import pandas as pd

    from methods import registry
    from suite.pages.reports import format_summary, job_line, plan_report
    from suite.running import executors
    from suite.running.runner import Runner
    from suite.running.workers import Workers
    from suite.store.results import RunRecord, aggregate

    workers = Workers(Path(args.runs_dir), args.threads)
    engine = options.engine_of(args)  # checked before any data is loaded
    setting, jobs, device, runs_dir, data, user_base, dry, numerics = options.prepare_run(args)
    executor = executors.make(replace(engine, numerics=numerics))
    runner = Runner(setting, data, runs_dir, device, baseline=user_base, recompute_stale=args.recompute_stale)
    # a mask (weight granularity) keeps every filter: the dry surgery's speedup says nothing about it
    if any(registry.get(j.method).granularity == "filter" for j in jobs):
        target = f"dry surgery: {dry['speedup']:.2f}x FLOPs"
    else:
        target = "weight sparsity, FLOPs unchanged"
    header = (
        f"setting {setting.name}: {data.label} [{data.fingerprint}], {setting.model}, "
        f"input {'x'.join(map(str, setting.input_shape))}, ratios {setting.ratios} ({target})"
        f"{' skip ' + setting.skip if setting.skip else ''}; {setting.budget_label()}"
        f"{'; SMOKE (not a result)' if args.smoke else ''}; device {device}, {options.precision_text(args, device, numerics)}"
    )
    if args.dry_run:
        print(header)
        print(plan_report(runner, jobs))
        return 0
    results, rows = [], []
    with workers:
        print(f"{header}; {workers.describe()}", flush=True)
        workers.apply()
        for jr in executor.results(runner, jobs, workers):
            r = jr.result
            print(job_line(jr), flush=True)
            results.append(r)
            rows.append(RunRecord.read(r, jr.folder).row())
    if not rows:  # submitted to an engine without waiting: it said where the jobs went
        return 0
    frame = pd.DataFrame(rows)
    ok = frame[frame.status.isin(["done", "smoke"])]
    print()
    print(format_summary(aggregate(ok) if not ok.empty else ok, runs_dir))
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        print(
            f"\n{len(failed)} job(s) failed: "
            + "; ".join(f"{r['method']} seed {r['seed']}: {r['error']}" for r in failed),
            file=sys.stderr,
        )
        return 1
    return 0
