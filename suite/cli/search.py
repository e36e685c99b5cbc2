"""``suite search``: an Optuna study of one method's hyperparameters on a validation split."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

from suite.cli import flags, options
from suite.errors import SuiteError

NAME = "search"


def add(sub) -> None:
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
    flags.common(se)
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
    flags.numerics(se)
    flags.engine(se)


def main(args) -> int:
    from methods import registry
    from suite.running import executors
    from suite.running.runner import Runner
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
    data = options.data_of(setting, args).with_validation(setting.val_size, seed=0)
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
