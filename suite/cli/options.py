"""The command line's values, validated into the objects the suite runs on.

``suite.cli``'s commands parse; this module checks what was given (each bad value one line naming the
option, the value and the fix, before any data is loaded or anything is written) and turns it
into a setting, seeds, a device and numerics, hyperparameters, engine options and, for ``suite
run``, the planned jobs (:func:`prepare_run`). May import anything of the suite: it is the CLI's
floor, above running and pages.
"""

from __future__ import annotations

import json
import tomllib
import urllib.error
from dataclasses import dataclass, replace
from pathlib import Path

from suite.errors import SuiteError
from suite.measure.search_kinds import DEFAULT_SEARCH

MAX_SEED = 2**31 - 1  # torch and numpy seeds; a larger one overflows deep inside a job
MAX_SEEDS = 1000  # --seeds N builds N jobs per method up front


def setting_of(args):
    """The setting with the command line's target, ratios, skip list and alignment applied. A
    latency target (``suite run --target 2x-latency``) is left to :func:`latency_target_of` and
    :func:`latency_setting`, which measures it once the run's other options are checked."""
    from suite.spec.settings import DEFAULT_SETTING, get_setting, with_ratios

    ratios, skip = getattr(args, "ratios", None), getattr(args, "skip", None)
    round_to = getattr(args, "align_to", None)  # suite run's --round-to N (suite latency's is a sweep)
    if round_to is not None and round_to < 1:
        raise SuiteError(f"--round-to {round_to}: must be an integer >= 1 (1: counts as the ratios give them)")
    target = getattr(args, "target", None)
    if target is not None and target.strip().endswith("-latency"):
        target = None
    if target is not None:
        if ratios is not None:
            raise SuiteError("--target and --ratios exclude each other: a target is a ratio string (--ratios 2.5x)")
        try:
            speedup = float(target.strip().removesuffix("x"))
        except ValueError:
            speedup = None
        if speedup is None or not speedup > 1:  # nan too
            raise SuiteError(
                f"--target {target!r}: write a FLOPs speedup > 1 like 2.5x, or a measured one like 2x-latency"
            )
        ratios = target if target.strip().endswith("x") else f"{target}x"
    replacing = {"ratios": ratios, "skip": skip, "round_to": round_to}
    s = get_setting(args.setting or DEFAULT_SETTING, data_dir=getattr(args, "data_dir", None), replacing=replacing)
    try:
        return with_ratios(s, ratios, skip, round_to)
    except SuiteError as e:
        named = "--ratios" if target is None else "--target"  # the ratio string the user wrote
        given = " ".join(
            f"{o} {v!r}" for o, v in ((named, ratios), ("--skip", skip), ("--round-to", round_to)) if v is not None
        )
        raise SuiteError(f"{given}: {e}") from None


@dataclass(frozen=True)
class LatencyTarget:
    """A measured-speedup target (``--target 2x-latency``) and the measure it is taken on: the
    runtime, the batch and how ratios are searched (``--latency-runtime``, ``--latency-batch``,
    ``--latency-search``; these defaults where they are left out)."""

    speedup: float
    runtime: str = "eager"
    batch: int = 64
    search: str = DEFAULT_SEARCH


# The options of a latency target's measure and the fields they fill. The parsers' defaults are
# None, so that an option given without a target can be told from one left out.
_MEASURE_OPTIONS = {"latency_runtime": "runtime", "latency_batch": "batch", "latency_search": "search"}


def latency_target(args, text: str | None) -> LatencyTarget | None:
    """The latency target ``text`` (the command's --target where it names one, else None) with its
    measure, checked before anything is built. Measure options given where no latency target is
    would be ignored in silence: an error."""
    from suite.measure.latency_target import parse_latency_target
    from suite.measure.runtimes import parse_runtimes

    given = {field: getattr(args, opt) for opt, field in _MEASURE_OPTIONS.items() if getattr(args, opt) is not None}
    if text is None:
        if given:
            flags = [f"--{opt.replace('_', '-')}" for opt, field in _MEASURE_OPTIONS.items() if field in given]
            these = "these apply" if len(flags) > 1 else "it applies"
            raise SuiteError(
                f"{', '.join(flags)}: {these} to a latency target only: add --target Nx-latency (e.g. 2x-latency) "
                f"or leave {'them' if len(flags) > 1 else 'it'} out"
            )
        return None
    runtime, batch = given.get("runtime", LatencyTarget.runtime), given.get("batch", LatencyTarget.batch)
    try:
        one = len(parse_runtimes(runtime)) == 1
    except SuiteError as e:  # its message names --runtimes, suite latency's option for other series
        raise SuiteError(str(e).replace("--runtimes", "--latency-runtime", 1)) from None
    if not one:
        raise SuiteError(f"--latency-runtime {runtime!r}: name one runtime, e.g. onnx")
    if batch < 1:
        raise SuiteError(f"--latency-batch {batch}: must be >= 1")
    return LatencyTarget(parse_latency_target(text), **given)


def latency_target_of(args) -> LatencyTarget | None:
    """``suite run --target Nx-latency``'s target with its measure checked (None: no latency
    target), before any setting is built: they do not depend on it."""
    latency = args.target is not None and args.target.strip().endswith("-latency")
    if latency and args.ratios is not None:
        raise SuiteError("--target and --ratios exclude each other: a latency target finds the ratios")
    return latency_target(args, args.target if latency else None)


def latency_setting(args, setting, target: LatencyTarget, device):
    """The setting with the ratios whose measured speedup on the target's runtime and batch
    reaches it, found once per machine and stored in the runs dir
    (``suite.measure.latency_target.resolve_for_run``), and what it measured."""
    from suite.measure.latency_target import resolve_for_run
    from suite.store.files import check_writable

    check_writable(Path(args.runs_dir))  # the search is stored there: checked before minutes of timing
    found, record = resolve_for_run(
        setting,
        target.speedup,
        target.runtime,
        target.batch,
        device,
        Path(args.runs_dir),
        kind=target.search,
    )
    return replace(found, latency_target=record)


def seed_of(option: str, value: int) -> int:
    if not 0 <= value <= MAX_SEED:
        raise SuiteError(f"{option} {value}: must be an integer in 0..{MAX_SEED}")
    return value


def seeds_of(args) -> list[int]:
    if args.seed_list is not None:
        try:
            seeds = [int(x) for x in args.seed_list.split(",") if x.strip()]
        except ValueError:
            raise SuiteError(f"--seed-list {args.seed_list!r}: give integers like 0,1,2") from None
        if not seeds or any(not 0 <= s <= MAX_SEED for s in seeds):
            raise SuiteError(f"--seed-list {args.seed_list!r}: give integers in 0..{MAX_SEED} like 0,1,2")
        if len(set(seeds)) != len(seeds):
            raise SuiteError(f"--seed-list {args.seed_list!r}: a seed is listed twice")
        if len(seeds) > MAX_SEEDS:
            raise SuiteError(f"--seed-list: {len(seeds)} seeds, at most {MAX_SEEDS} (as --seeds)")
        return seeds
    if not 1 <= args.seeds <= MAX_SEEDS:
        raise SuiteError(f"--seeds {args.seeds}: must be in 1..{MAX_SEEDS} (or give --seed-list)")
    return list(range(args.seeds))


def device_of(args):
    """--device checked by name before torch sees it (torch.device('tpu') is a RuntimeError)."""
    import re

    import torch

    from suite.training.loop import pick_device

    name = args.device
    m = re.fullmatch(r"auto|cpu|cuda(?::(\d+))?", name)
    if not m:
        raise SuiteError(f"--device {name!r}: must be auto, cpu, cuda or cuda:N")
    if m.group(1) is not None and torch.cuda.is_available() and int(m.group(1)) >= torch.cuda.device_count():
        raise SuiteError(
            f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
            f"cuda:0..cuda:{torch.cuda.device_count() - 1}"
        )
    return pick_device(name)


def numerics_of(args, device):
    """--precision, --channels-last (fp32 and contiguous when not named), --compile, checked for the device."""
    from suite.training.numerics_default import resolve

    return resolve(args.precision, args.channels_last, args.compile, device)


def precision_text(args, device, numerics) -> str:
    """How a header names the numerics, with the fast flags where this device has them and none was named."""
    from suite.training.numerics_default import hint

    return f"precision {numerics.label()}{hint(args.precision, args.channels_last, device)}"


def user_hparams(args, setting, methods: list[str], numerics) -> tuple[dict | None, dict]:
    """(hparams per method, where they came from) from --hparams FILE or --hparams best (by default
    the study of the run's precision, as ``suite search`` names it)."""
    path = args.hparams
    if path is None:
        return None, {}
    if path == "best":
        from suite.running.search import best_hparams, default_storage, study_name

        storage = args.storage or default_storage(Path(args.runs_dir))
        found = {m: best_hparams(storage, args.study or study_name(setting, m, numerics), setting, m) for m in methods}
        return {m: v[0] for m, v in found.items()}, {m: v[1] for m, v in found.items()}
    from suite.store.files import KeyTwice, unique_keys

    p = Path(path)
    if not p.is_file():
        raise SuiteError(
            f"--hparams {path}: {'a folder: name the JSON or TOML file' if p.is_dir() else 'no such file'}"
        )
    try:
        text = p.read_text()
        d = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text, object_pairs_hook=unique_keys)
    except (OSError, UnicodeDecodeError) as e:
        raise SuiteError(
            f"--hparams {path} cannot be read ({type(e).__name__}): check it is a readable UTF-8 text file"
        ) from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise SuiteError(f"--hparams {path} is not valid {'TOML' if p.suffix == '.toml' else 'JSON'}: {e}") from None
    except KeyTwice as e:
        raise SuiteError(f"--hparams {path} sets {e} twice: keep one (JSON would take the last in silence)") from None
    if not isinstance(d, dict) or not all(isinstance(v, dict) for v in d.values()):
        raise SuiteError(
            f'--hparams {path}: write {{method: {{field: value}}}}, e.g. {{"greg1": {{"penalty_increment": 2e-4}}}}'
        )
    unknown = sorted(set(d) - set(methods))
    if unknown:
        raise SuiteError(f"--hparams {path} sets {', '.join(unknown)}, which --methods does not run")
    from suite.spec.plan import resolve_hparams

    for m, values in d.items():  # checked here too, so the error names the file
        try:
            resolve_hparams(setting, m, values)
        except SuiteError as e:
            raise SuiteError(f"--hparams {path}: {e}") from None
    return d, {m: f"user file {p.name}" for m in d}


def data_of(setting, args):
    """The setting's data as --data-dir and --download give it (``suite run``, ``baseline`` and
    ``search``), a server that cannot be reached one line naming the fix."""
    from suite.running.runner import load_data

    try:
        return load_data(setting, args.data_dir, args.download)
    except urllib.error.URLError as e:  # --download where the network is not reachable
        raise SuiteError(
            f"--download: cannot reach the dataset's server ({e.reason}); put the files in --data-dir instead"
        ) from None


def prepare_run(args):
    """Everything a run needs, checked before anything is written."""
    from methods import registry
    from suite.spec.plan import budget_points, parse_budgets, plan
    from suite.store.files import check_writable
    from suite.training.baseline import load_user_baseline

    latency_target = latency_target_of(args)  # its options, before anything is built
    setting = setting_of(args)
    budget_points(args.budget)  # its spelling, before any data is loaded
    methods = registry.expand(args.methods)
    seeds = seeds_of(args)
    device = device_of(args)
    if latency_target is not None:
        setting = latency_setting(args, setting, latency_target, device)
    numerics = numerics_of(args, device)
    user, sources = user_hparams(args, setting, methods, numerics)
    dry = dry_surgery(setting)
    seed_of("--baseline-seed", args.baseline_seed)
    if args.baseline and args.baseline_seed:
        raise SuiteError(
            "--baseline and --baseline-seed exclude each other: a seed picks a trained baseline, "
            "--baseline brings your own"
        )
    data = data_of(setting, args)
    train_size = data.batches_per_epoch(1)
    jobs = plan(
        setting,
        methods,
        seeds,
        train_size=train_size,
        budgets=parse_budgets(args.budget, setting, train_size, args.smoke),
        smoke=args.smoke,
        user_hparams=user,
        sources=sources,
        baseline_seed=args.baseline_seed,
        numerics=numerics,
    )
    baseline = load_user_baseline(setting, Path(args.baseline), data, device, numerics) if args.baseline else None
    if baseline is not None:  # runs from another baseline are other runs: never a cached default one
        jobs = [replace(j, user_baseline=baseline.key) for j in jobs]
    runs_dir = Path(args.runs_dir)
    if not args.dry_run:
        check_writable(runs_dir)  # last: bad input above leaves nothing written
    return setting, jobs, device, runs_dir, data, baseline, dry, numerics


def engine_of(args):
    """The command's engine options as the executors take them (``suite.running.executors``)."""
    from suite.running.executors import EngineOptions

    return EngineOptions(
        args.executor,
        args.ray_address,
        args.slurm_partition,
        args.slurm_time,
        args.wait,
        args.data_dir,
        args.download,
        args.threads,
    )


def dry_surgery(setting) -> dict:
    """The target checked by the real surgery before any baseline or training (cached per
    setting): a spec the model cannot take is a one-line error now, not after hours of GReg."""
    from suite.pages.overview import cached_achieved

    try:
        achieved = cached_achieved(setting)
    except SuiteError as e:
        raise SuiteError(f"ratios {setting.ratios!r} on {setting.model}: {e}") from None
    # kept counts are rounded down to multiples of N but never below N: where every layer is at most
    # N wide, alignment keeps them all whole, though the ratios prune
    if (
        setting.round_to > 1
        and achieved["pruned_layers"] == 0
        and cached_achieved(replace(setting, round_to=1))["pruned_layers"] > 0
    ):
        raise SuiteError(
            f"--round-to {setting.round_to} leaves every layer of {setting.model} whole at ratios "
            f"{setting.ratios!r} (a count is never rounded below {setting.round_to}): use a multiple "
            f"smaller than {setting.round_to}"
        )
    return achieved


def search_parallel(args, executor, storage: str) -> int | None:
    """Search workers on an engine (None: this process searches). Their trials must be failed when a
    worker dies, which takes Optuna's heartbeat, which only its RDB storages have."""
    if executor.name == "local":
        if args.parallel is not None:
            raise SuiteError(
                "--parallel needs --executor ray or slurm; on one machine, start the same "
                "'suite search' in several shells instead"
            )
        return None
    n = 2 if args.parallel is None else args.parallel
    if n < 1:
        raise SuiteError(f"--parallel {n}: must be >= 1")
    if storage.startswith("journal:"):
        raise SuiteError(
            f"--storage {storage}: a journal file has no heartbeat, so a dead worker's trial would "
            f"stay RUNNING; with --executor {executor.name} use sqlite:///PATH.db on shared disk or "
            f"postgresql://..."
        )
    return n
