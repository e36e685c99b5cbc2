"""``suite baseline``: train a setting's unpruned model, or find it trained."""

from __future__ import annotations

from pathlib import Path

from suite.cli import flags, options

NAME = "baseline"


def add(sub) -> None:
    """``suite baseline`` and its options."""
    bl = sub.add_parser("baseline", help="train (or find cached) the unpruned model of a setting")
    flags.common(bl)
    bl.add_argument("--seed", type=int, default=0)
    bl.add_argument("--smoke", action="store_true", help="cut training to a handful of iterations")
    flags.numerics(bl)


def main(args) -> int:
    from suite.running.workers import Workers
    from suite.store.files import check_writable
    from suite.training.baseline import get_baseline

    workers = Workers(Path(args.runs_dir), args.threads)
    setting = options.setting_of(args)
    options.seed_of("--seed", args.seed)
    device = options.device_of(args)
    numerics = options.numerics_of(args, device)
    data = options.data_of(setting, args)
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
