"""``suite latency``: the setting's model and the same model pruned, timed in turns per runtime,
or a search for the ratios whose measured speedup reaches a latency target."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from suite.cli import flags, options
from suite.errors import SuiteError

NAME = "latency"


def add(sub) -> None:
    """``suite latency`` and its options."""
    la = sub.add_parser(
        "latency",
        help="time baseline vs pruned under eager, torch.compile, ONNX Runtime and OpenVINO",
        description="Time the setting's model and the same model pruned at a target (random "
        "weights, no training) in turns under eager PyTorch, torch.compile (inductor), "
        "ONNX Runtime and OpenVINO (CPU), and compare the latency speedup (with its "
        "95 % interval from the paired repeats) with the FLOPs speedup.",
    )
    flags.common(la, runs=False)
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
        help="instead of timing a target: search ratios (per stage: per-unit, spread, spread-flops; or one uniform ratio: --latency-search) "
        "whose measured speedup reaches N "
        "(e.g. 2x-latency) under --latency-runtime at --latency-batch, and print them with the "
        "speedup achieved",
    )
    la.add_argument(
        "--latency-runtime", default=None, help="with --target: the runtime it is measured on (default eager)"
    )
    la.add_argument("--latency-batch", type=int, default=None, help="with --target: the batch size (default 64)")
    flags.latency_search(la)
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
        "setting, target, processor, instruction set, threads and torch version, for the leaderboard pages "
        "(default: store nothing)",
    )
    la.add_argument("--json", action="store_true", help="machine-readable output")


def main(args) -> int:
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
    target = _latency_target_of(args)
    setting = options.setting_of(args)
    if target is not None:
        res = search(
            setting,
            target.speedup,
            target.runtime,
            target.batch,
            options.device_of(args),
            kind=target.search,
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


def _latency_target_of(args) -> options.LatencyTarget | None:
    """``suite latency --target Nx-latency``'s target (None: time the setting's ratios instead), its
    options checked before anything is built."""
    if args.latency_target is not None:
        for flag, value in (("--ratios", args.ratios), ("--round-to", args.round_to), ("--runs-dir", args.runs_dir)):
            if value is not None:
                raise SuiteError(
                    f"--target searches ratios and stores nothing: leave out {flag} (time the ratios it "
                    f"finds with --ratios, rounded with --round-to, stored with --runs-dir)"
                )
    return options.latency_target(args, args.latency_target)
