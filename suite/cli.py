"""The ``suite`` command: thin argument parsing over the modules that do the work.

Bad input ends in one line, ``error: <problem and fix>``, and exit code 2, with nothing written.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

from methods.registry import DEFAULT_COMPARISON  # cheap: the registry imports the methods on first use
from suite import options
from suite.errors import SuiteError

DEFAULT_METHODS = ",".join(DEFAULT_COMPARISON)  # what `suite run` compares when none are named

EPILOG = """examples:
  suite list settings                          what each setting prunes, and the speedup it means
  suite list methods 'greg*'                   methods with their hyperparameters and defaults
  suite run --methods greg1,greg2,l1           the offline quick start (Fashion-MNIST, about 4 min)
  suite run --setting fmnist-cnn4 --methods greg1,greg2,l1 --seeds 3   the published CPU comparison
  suite run --setting cifar10jpg-resnet20 --data-dir /tmp/cifar10-jpg --methods 'greg*,l1' --seeds 3
  suite run --methods l1 --ratios 0.9 --dry-run   the plan: cached and new jobs, the budget
  suite results --format csv                   every stored run as one table
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is the suite's one line (``error: ...``, exit 2) like every other
    bad input, instead of the usage block plus ``suite run: error: ...``."""

    def error(self, message):
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="suite",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        description="greg-suite: compare pruning methods (GReg-1/2, L1, NNI's and Torch-Pruning's pruners) on shared settings, "
        "from one trained baseline and one fine-tuning budget.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_list(sub)
    _add_baseline(sub)
    _add_run(sub)
    _add_search(sub)
    _add_leaderboard(sub)
    _add_migrate(sub)
    _add_latency(sub)
    _add_results(sub)
    return p


def _common(sp, runs=True):
    """--setting, --data-dir, --download, --device, --runs-dir, --threads: what every training command takes."""
    sp.add_argument(
        "--setting",
        default=None,
        help="a setting name (see 'suite list settings') or a .toml file; default: fmnist-cnn4-quick, the offline quick start (the published comparison is fmnist-cnn4)",
    )
    sp.add_argument("--data-dir", default=None, help="where the dataset lives (default: the dataset's usual place)")
    sp.add_argument("--download", action="store_true", help="download the dataset where the network allows")
    sp.add_argument("--device", default="auto", help="cuda, cpu or auto (default: cuda when present)")
    if runs:
        sp.add_argument("--runs-dir", default="runs", help="where runs are stored (default: runs/)")
    sp.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of this process (default: the cores shared among the suite "
        "workers live on this machine, announced in RUNS_DIR/.workers/); with --executor "
        "ray/slurm: the CPUs and threads of each task (default 1)",
    )


def _numerics_options(sp):
    """--precision, --channels-last, --compile (suite.training.numerics); see README 'Precision and speed'."""
    g = sp.add_argument_group("precision and speed (README: Precision and speed)")
    g.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16"],
        default=None,
        help="autocast precision of every training and evaluation pass; weights, gradients and "
        "the optimizer stay fp32. Default fp32 everywhere; bf16 (with --channels-last) trains "
        "about 2x faster on a CPU with AMX or AVX512-BF16 or a GPU from Ampere on, but lost "
        "0.2 points of ResNet-20 baseline accuracy here (README). fp16 is for CUDA, with "
        "loss scaling. Part of the run's identity unless fp32",
    )
    g.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="model and batches in channels-last (NHWC) memory format; part of the run's identity. Default: off",
    )
    g.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model for training and evaluation (falls back to eager, saying "
        "why, where it does not compile); part of the run's identity",
    )


def _engine_options(sp):
    """--executor and its engines' options (suite.running.executors); see README 'Running on a cluster'."""
    g = sp.add_argument_group("executors (README: Running on a cluster)")
    g.add_argument(
        "--executor",
        default="local",  # a name of suite.running.executors.EXECUTORS
        help="local: this process (default); ray: one Ray task per job; slurm: one array job "
        "through submitit. The runs dir must be on a disk every worker sees",
    )
    g.add_argument(
        "--ray-address",
        default=None,
        help="a running Ray cluster (auto or HOST:PORT; default: start one on this machine)",
    )
    g.add_argument("--slurm-partition", default=None, help="SLURM partition (default: the cluster's)")
    g.add_argument(
        "--slurm-time",
        type=float,
        default=4.0,
        help="hours a SLURM task may run (default 4); "
        "a task timed out or preempted is requeued and resumes from its checkpoints",
    )
    g.add_argument(
        "--wait",
        action="store_true",
        help="slurm: follow the jobs and print the summary (default: print the job ids and return)",
    )


def _add_list(sub) -> None:
    """``suite list`` and its options."""
    ls = sub.add_parser(
        "list",
        help="list settings, methods or models",
        description="List settings (with the params/FLOPs their ratios achieve), methods, or "
        "models ('torchvision:*', 'timm:*' for theirs).",
    )
    ls.add_argument("what", choices=["settings", "methods", "models"])
    ls.add_argument(
        "pattern",
        nargs="?",
        default="*",
        help="name pattern with wildcards, e.g. 'nni-*'; for settings also a FILE.toml",
    )
    ls.add_argument("--data-dir", default=None, help="with a FILE.toml: where its dataset lives")
    ls.add_argument("--json", action="store_true", help="machine-readable output")


def _add_baseline(sub) -> None:
    """``suite baseline`` and its options."""
    bl = sub.add_parser("baseline", help="train (or find cached) the unpruned model of a setting")
    _common(bl)
    bl.add_argument("--seed", type=int, default=0)
    bl.add_argument("--smoke", action="store_true", help="cut training to a handful of iterations")
    _numerics_options(bl)


def _add_run(sub) -> None:
    """``suite run`` and its options."""
    run = sub.add_parser(
        "run",
        help="run methods on a setting (cached, resumable)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        description="Prune the setting's baseline with each method, fine-tune with the same "
        "recipe, measure, and store every run. Finished runs are never recomputed; "
        "a killed run resumes from its last checkpoint.",
    )
    _common(run)
    run.add_argument(
        "--methods",
        default=DEFAULT_METHODS,
        help=f"comma list of methods, wildcards allowed ('nni-*'); default {DEFAULT_METHODS}",
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
        default="eager",
        help="with --target Nx-latency: the runtime it is measured on (default eager)",
    )
    run.add_argument(
        "--latency-batch", type=int, default=64, help="with --target Nx-latency: the batch size (default 64)"
    )
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
    run.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    run.add_argument(
        "--smoke",
        action="store_true",
        help="every phase cut to a handful of iterations (results marked smoke, never ranked)",
    )
    _numerics_options(run)
    _engine_options(run)


def _add_search(sub) -> None:
    """``suite search`` and its options."""
    se = sub.add_parser(
        "search",
        help="tune a method's hyperparameters with Optuna on a validation split",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="An Optuna study around prune + surgery + fine-tune, scored on a validation "
        "split carved from the training set (never the test set). Re-running the "
        "command continues the study.",
        epilog="several workers on one study: start the same command in several shells (or on "
        "several machines) with the same --storage and --study and different --seed; "
        "use --storage journal:PATH (a journal file) or postgresql://... for many machines.",
    )
    _common(se)
    se.add_argument("--method", required=True, help="the method to tune, e.g. greg1")
    se.add_argument("--trials", type=int, default=10, help="finished trials the study should hold (default 10)")
    se.add_argument("--timeout", type=float, default=None, help="stop adding trials after this many seconds")
    se.add_argument(
        "--storage",
        default=None,
        help="Optuna storage URL (default sqlite:///RUNS_DIR/search.db; journal:PATH for a journal file)",
    )
    se.add_argument("--study", default=None, help="study name (default SETTING-METHOD)")
    se.add_argument("--sampler", choices=["tpe", "random", "grid"], default="tpe")
    se.add_argument("--seed", type=int, default=0, help="sampler seed and the runs' seed")
    se.add_argument("--space", default=None, help='JSON file {param: [low, high] or [low, high, "log"]}')
    se.add_argument("--ratios", default=None, help="override the setting's ratios")
    se.add_argument("--skip", default=None, help="ResNet blocks left unpruned")
    se.add_argument("--smoke", action="store_true", help="every phase cut to a handful of iterations")
    se.add_argument(
        "--parallel",
        type=int,
        default=None,
        help="with --executor ray/slurm: search workers filling the study at once (default 2); "
        "needs an RDB --storage (sqlite:///PATH on shared disk, postgresql://...)",
    )
    _numerics_options(se)
    _engine_options(se)


def _add_leaderboard(sub) -> None:
    """``suite leaderboard`` and its options."""
    lb = sub.add_parser(
        "leaderboard",
        help="write static HTML leaderboards from the stored runs",
        description="Write index.html and one page (+ CSV) per setting from finished runs; smoke, "
        "failed and search-trial runs are never ranked. Pages work offline.",
    )
    lb.add_argument("--runs-dir", default="runs")
    lb.add_argument("--out", default="leaderboards", help="output folder (default leaderboards/)")
    lb.add_argument(
        "--include-capped",
        action="store_true",
        help="rank runs whose own training stopped at the setting's cap before its schedule ended "
        "(marked [capped]); by default they are left out",
    )


def _add_migrate(sub) -> None:
    """``suite migrate`` and its options."""
    mg = sub.add_parser(
        "migrate",
        help="rename stored runs to today's run identity (after an upgrade)",
        description="Rename every run folder whose name is not the hash of today's identity of the "
        "job its config.json records (older versions hashed presentation fields too). "
        "Nothing is deleted; running it again moves nothing.",
    )
    mg.add_argument("--runs-dir", default="runs")


def _add_latency(sub) -> None:
    """``suite latency`` and its options."""
    la = sub.add_parser(
        "latency",
        help="time baseline vs pruned under eager, torch.compile, ONNX Runtime and OpenVINO",
        description="Time the setting's model and the same model pruned at a target (random "
        "weights, no training) in turns under eager PyTorch, torch.compile (inductor), "
        "ONNX Runtime and OpenVINO (CPU), and compare the latency speedup (with its "
        "95 % interval from the paired repeats) with the FLOPs speedup.",
    )
    _common(la, runs=False)
    la.add_argument("--ratios", default=None, help="the target ratio string (default: the setting's)")
    from suite.measure.runtimes import DEFAULT_RUNTIMES, RUNTIMES  # names only: no torch

    la.add_argument(
        "--runtimes",
        default=DEFAULT_RUNTIMES,
        help=f"comma list of {', '.join(RUNTIMES)} (default {DEFAULT_RUNTIMES}); bf16 ones only "
        f"where the hardware has fast bf16, cuda-graph and tensorrt only on a GPU",
    )
    la.add_argument("--batches", default="1,64", help="comma list of batch sizes (default: 1,64)")
    la.add_argument(
        "--round-to",
        default=None,
        metavar="N,...",
        help="also time the pruned model with its kept channel counts rounded down to multiples of "
        "each N (at least N), e.g. 1,8,16,32, in the same turns (default: no rounding)",
    )
    la.add_argument(
        "--target",
        dest="latency_target",
        default=None,
        metavar="Nx-latency",  # not run's FLOPs --target
        help="instead of timing a target: search per-stage ratios whose measured speedup reaches N "
        "(e.g. 2x-latency) under --latency-runtime at --latency-batch, and print them with the "
        "speedup achieved",
    )
    la.add_argument(
        "--latency-runtime", default="eager", help="with --target: the runtime it is measured on (default eager)"
    )
    la.add_argument("--latency-batch", type=int, default=64, help="with --target: the batch size (default 64)")
    la.add_argument(
        "--max-repeats",
        type=int,
        default=200,
        help="repeats at most per model (taken in turns, 10 at a time, until every IQR is under 5%% of "
        "its median and every speedup's 95%% interval under 5%% of the speedup)",
    )
    la.add_argument(
        "--layer-passes",
        type=int,
        default=20,
        help="forward passes of the per-layer breakdown (eager, batch 64, torch.profiler; each layer's "
        "fastest pass); 0 leaves it out (default 20)",
    )
    la.add_argument(
        "--runs-dir",
        default=None,
        help="also store the report (with its date) as DIR/latency/SETTING/<hash>.json, one record per "
        "setting, target, processor, threads and torch version, for the leaderboard pages "
        "(default: store nothing)",
    )
    la.add_argument("--json", action="store_true", help="machine-readable output")


def _add_results(sub) -> None:
    """``suite results`` and its options."""
    res = sub.add_parser("results", help="print every stored run as one table")
    res.add_argument("--runs-dir", default="runs")
    res.add_argument("--format", choices=["table", "csv", "json"], default="table")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        commands = {
            "list": cmd_list,
            "baseline": cmd_baseline,
            "run": cmd_run,
            "search": cmd_search,
            "leaderboard": cmd_leaderboard,
            "results": cmd_results,
            "migrate": cmd_migrate,
            "latency": cmd_latency,
        }
        return commands[args.command](args)
    except SuiteError as e:
        print(f"error: {' '.join(str(e).splitlines())}", file=sys.stderr)  # one line, whatever the input held
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130


# ---------------------------------------------------------------------------- list
def cmd_list(args) -> int:
    import fnmatch

    if args.what == "models":
        from suite.models import zoo

        for name in zoo.list_models(args.pattern):
            print(name)
        return 0
    if args.what == "methods":
        from methods import registry

        rows = []
        for name in registry.names(args.pattern):
            m = registry.get(name)
            rows.append(
                {
                    "name": name,
                    "granularity": m.granularity,
                    "summary": m.summary,
                    "hparams": m.Hparams().to_dict(),
                    "search_space": {k: list(v) for k, v in m.Hparams.space().items()},
                }
            )
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for r in rows:
                print(f"{r['name']:<20} {r['granularity']:<7} {r['summary']}")
                hp = ", ".join(f"{k}={v}" for k, v in r["hparams"].items())
                print(f"{'':<20} {hp or '(no hyperparameters)'}")
        return 0

    from suite.pages.overview import setting_row
    from suite.spec.settings import DEFAULT_SETTING, SETTINGS, get_setting

    if args.pattern.endswith(".toml"):  # a custom setting: what it means before any training
        rows = [setting_row(get_setting(args.pattern, data_dir=args.data_dir))]
    else:
        names = sorted(SETTINGS, key=lambda n: n != DEFAULT_SETTING)  # the default first, then as registered
        rows = [setting_row(SETTINGS[n]) for n in names if fnmatch.fnmatchcase(n, args.pattern)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        default = "  [default]" if r["name"] == DEFAULT_SETTING else ""
        shape = "x".join(map(str, r["input_shape"]))
        print(
            f"{r['name']}{default}  ({r['dataset']}, {r['model']}; {shape}, {r['num_classes']} classes; {r['budget']})"
        )
        skip = f" skip {r['skip']}" if r["skip"] else ""
        print(
            f"  ratios {r['ratios']}{skip}: params {r['params'] / 1e6:.3f}M -> {r['pruned_params'] / 1e6:.3f}M, "
            f"FLOPs {r['flops'] / 1e6:.2f}M -> {r['pruned_flops'] / 1e6:.2f}M, speedup {r['speedup']:.2f}x "
            f"(L1-smallest filters removed, {r['pruned_layers']} layers)"
        )
        if r["targets"]:
            print(f"  other targets: {', '.join(r['targets'])}")
        if r["method_overrides"]:
            print(f"  method defaults changed for this budget: {json.dumps(r['method_overrides'])}")
    return 0


# ---------------------------------------------------------------------------- run
def cmd_run(args) -> int:
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


def cmd_search(args) -> int:
    from methods import registry
    from suite.running import executors
    from suite.running.runner import Runner, load_data
    from suite.running.search import (
        SearchSpec,
        default_storage,
        get_study,
        load_space,
        make_sampler,
        report,
        run_search,
        study_name,
    )
    from suite.running.workers import Workers
    from suite.store.files import check_writable

    workers = Workers(Path(args.runs_dir), args.threads)
    engine = options.engine_of(args)  # checked before any data is loaded
    setting = options.setting_of(args)
    registry.get(args.method)
    options.dry_surgery(setting)
    if args.trials <= 0:
        raise SuiteError(f"--trials {args.trials}: must be >= 1")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise SuiteError(f"--timeout {args.timeout}: must be a number of seconds > 0")
    options.seed_of("--seed", args.seed)
    space = load_space(args.space, args.method)
    device = options.device_of(args)
    numerics = options.numerics_of(args, device)
    engine = replace(engine, numerics=numerics)
    executor = executors.make(engine)
    runs_dir = Path(args.runs_dir)
    storage = args.storage or default_storage(runs_dir)
    parallel = options.search_parallel(args, executor, storage)  # checked before any data is loaded
    data = load_data(setting, args.data_dir, args.download).with_validation(setting.val_size, seed=0)
    name = args.study or study_name(setting, args.method, numerics)
    check_writable(runs_dir)
    study = get_study(
        storage,
        name,
        setting,
        args.method,
        sampler=make_sampler(args.sampler, args.seed, space),
        space=space,
        numerics=numerics,
    )
    spec = SearchSpec(
        setting, args.method, args.trials, space, args.sampler, args.seed, args.smoke, args.timeout, numerics
    )
    ft = setting.finetune
    with workers:
        print(
            f"search {name}: {args.method} on {setting.name} ({data.label}, validation split of "
            f"{setting.val_size} images carved from train), {args.trials} trials, sampler {args.sampler}, space "
            f"{json.dumps({k: list(v) for k, v in space.items()})}; budget per trial: {setting.budget_label()}"
            f"{' (SMOKE)' if args.smoke else ''}; fine-tune {ft.epochs} ep at batch {ft.batch_size}; "
            f"device {device}, {options.precision_text(args, device, numerics)}; "
            f"{workers.describe() if parallel is None else f'{parallel} {executor.name} workers'}",
            flush=True,
        )
        runner = Runner(setting, data, runs_dir, device)
        if parallel is None:
            run_search(spec, runner, study)
        else:
            executor.search(executors.context(runner, engine), spec, storage, name, parallel)
    print(report(study))
    return 0


def cmd_baseline(args) -> int:
    from suite.running.runner import load_data
    from suite.running.workers import Workers
    from suite.store.files import check_writable
    from suite.training.baseline import get_baseline

    workers = Workers(Path(args.runs_dir), args.threads)
    setting = options.setting_of(args)
    options.seed_of("--seed", args.seed)
    device = options.device_of(args)
    numerics = options.numerics_of(args, device)
    data = load_data(setting, args.data_dir, args.download)
    runs_dir = Path(args.runs_dir)
    check_writable(runs_dir)
    with workers:
        print(
            f"baseline {setting.name} seed {args.seed}: device {device}, {options.precision_text(args, device, numerics)}; "
            f"{workers.describe()}",
            flush=True,
        )
        b = get_baseline(setting, data, args.seed, runs_dir, device, smoke=args.smoke, numerics=numerics)
    print(f"baseline {setting.name} seed {args.seed}: top-1 {b.top1:.2f}  ({b.path})")
    return 0


def cmd_latency(args) -> int:
    import torch

    from suite.measure.latency import format_report, report
    from suite.measure.latency_target import format_search, search
    from suite.measure.runtimes import parse_runtimes
    from suite.models.rounding import parse_round_to

    runtimes = parse_runtimes(args.runtimes)
    round_to = parse_round_to(args.round_to) if args.round_to is not None else None
    try:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        batches = []
    if not batches or any(b < 1 for b in batches):
        raise SuiteError(f"--batches {args.batches!r}: must be a comma list of integers >= 1, e.g. 1,64")
    if args.max_repeats < 10:
        raise SuiteError(f"--max-repeats {args.max_repeats}: must be >= 10")
    if args.threads is not None:
        if args.threads < 1:
            raise SuiteError(f"--threads {args.threads}: must be >= 1")
        torch.set_num_threads(args.threads)
    if args.layer_passes < 0:
        raise SuiteError(f"--layer-passes {args.layer_passes}: must be >= 0 (0 leaves the per-layer breakdown out)")
    if args.runs_dir is not None:
        from suite.store.files import check_writable

        check_writable(Path(args.runs_dir))  # before minutes of timing, not after
    target = _latency_target_of(args) if args.latency_target is not None else None
    setting = options.setting_of(args)
    if target is not None:
        res = search(
            setting,
            target,
            args.latency_runtime,
            args.latency_batch,
            options.device_of(args),
            rounds=max(1, args.max_repeats // 10),
        )
        print(json.dumps(res, indent=2) if args.json else format_search(res))
        return 0
    rep = report(
        setting,
        args.ratios,
        runtimes,
        batches,
        options.device_of(args),
        layer_passes=args.layer_passes,
        round_to=round_to,
        rounds=max(1, args.max_repeats // 10),
    )
    print(json.dumps(rep, indent=2) if args.json else format_report(rep))
    if args.runs_dir is not None:
        from suite.measure.latency_records import store

        print(f"stored: {store(Path(args.runs_dir), rep)}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _latency_target_of(args) -> float:
    """``suite latency --target Nx-latency``'s target, its options checked before anything is built."""
    from suite.measure.latency_target import parse_latency_target

    for flag, value in (("--ratios", args.ratios), ("--round-to", args.round_to), ("--runs-dir", args.runs_dir)):
        if value is not None:
            raise SuiteError(
                f"--target searches ratios and stores nothing: leave out {flag} (time the ratios it "
                f"finds with --ratios, rounded with --round-to, stored with --runs-dir)"
            )
    options.check_latency_measure(args)
    return parse_latency_target(args.latency_target)


def cmd_leaderboard(args) -> int:
    from suite.pages.leaderboard import render
    from suite.pages.reports import report_unreadable
    from suite.store.files import check_writable

    runs = Path(args.runs_dir)
    if not runs.is_dir():
        raise SuiteError(f"runs dir {runs} does not exist: run 'suite run' first or pass --runs-dir")
    check_writable(Path(args.out), "--out folder", "--out")
    unreadable = []
    for path in render(runs, Path(args.out), include_capped=args.include_capped, unreadable=unreadable):
        print(path)
    report_unreadable(unreadable)
    return 0


def cmd_migrate(args) -> int:
    from suite.store.migrate import migrate

    runs = Path(args.runs_dir)
    if not runs.is_dir():
        raise SuiteError(f"runs dir {runs} does not exist: pass --runs-dir")
    moved = migrate(runs)
    for old, new in moved.items():
        print(f"{old} -> {new}")
    print(f"{len(moved)} run folder(s) renamed")
    return 0


def cmd_results(args) -> int:
    from suite.pages.reports import report_unreadable
    from suite.store.results import TABLE_COLUMNS, load_runs

    runs = Path(args.runs_dir)
    if not runs.is_dir():
        raise SuiteError(f"runs dir {runs} does not exist: run 'suite run' first or pass --runs-dir")
    unreadable = []
    frame = load_runs(runs, unreadable)
    report_unreadable(unreadable)
    if args.format == "csv":
        print(frame.to_csv(index=False), end="")
    elif args.format == "json":
        print(frame.to_json(orient="records", indent=2))
    else:
        print(frame[TABLE_COLUMNS].to_string(index=False) if not frame.empty else "no stored runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
