"""Stored runs as one pandas table, their aggregation over seeds, and the summary ``suite run`` prints."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import get_args, get_type_hints

import pandas as pd

from suite.errors import SuiteError
from suite.measure.metrics import machine_text
from suite.measure.search_kinds import SEARCHES
from suite.store.files import content_hash, read_json_object, read_json_record
from suite.training.numerics import Numerics

# What `suite results` prints by default (the frame holds more).
TABLE_COLUMNS = [
    "setting",
    "method",
    "seed",
    "status",
    "protocol",
    "numerics",
    "ratios",
    "eval_split",
    "top1",
    "baseline_top1",
    "acc_before_removal",
    "acc_after_removal",
    "params",
    "speedup",
    "latency_speedup",
    "own_iters",
    "finetune_epochs",
    "samples",
    "train_macs",
    "capped",
    "training_code",
    "hparams_source",
    "error",
]


@dataclass(frozen=True)
class Unreadable:
    """A stored run (or a stored latency record) that could not be read in full. Writes are atomic,
    so a damaged file means someone edited it or its disk failed: the listings and pages name it and
    count it rather than drop it unnoticed (``suite run`` refuses such a job outright)."""

    folder: Path  # runs/<setting>/<method>/<hash>, or a record's file (runs/latency/<setting>/<hash>.json)
    problem: str  # "result.json: truncated JSON"
    listed: bool  # its result was read and is listed all the same (only its config.json is damaged)
    what: str = "run"  # or "latency record", "latency search"
    fix: str = "restore the file, or delete the folder and 'suite run' computes the run again"
    page: str | None = None  # its setting, where its path does not name it as a run's does

    @property
    def setting(self) -> str:
        """The setting folder it sits in: the page it belongs to."""
        return self.page or self.folder.parent.parent.name

    @property
    def detail(self) -> str:
        """What is wrong, what became of the run, and the fix (the line after the folder)."""
        fate = "its result is listed with an unrecorded processor" if self.listed else "left out"
        return f"({self.problem}): {fate}; {self.fix}"


def unreadable_count(whats: list[str]) -> str:
    """ "2 stored runs", "1 stored latency record", "3 stored runs and records": what could not be read."""
    kinds, n = set(whats), len(whats)
    if len(kinds) == 1:
        return f"{n} stored {kinds.pop()}{'s' if n != 1 else ''}"
    return f"{n} stored {'runs and records' if 'run' in kinds else 'records'}"


def load_runs(runs_dir: Path, unreadable: list[Unreadable] | None = None) -> pd.DataFrame:
    """Every ``result.json`` under ``runs_dir`` (baselines excluded) as one row. A run whose
    result.json cannot be read is left out, one whose config.json is missing or damaged is listed
    with an unrecorded processor; both are appended to ``unreadable`` (when given), for a caller
    that shows the frame to say what it could not show."""
    rows = []
    for path in sorted(Path(runs_dir).glob("*/*/*/result.json")):
        r, problem = read_json_record(path)
        record = None
        if not problem:
            record, problem = checked_record(r, path.parent)
        _, config_problem = read_json_record(path.parent / "config.json")
        if (problem or config_problem) and unreadable is not None:
            unreadable.append(
                Unreadable(
                    path.parent,
                    f"result.json: {problem}" if problem else f"config.json: {config_problem}",
                    listed=not problem,
                )
            )
        if record is not None:
            rows.append(record.row())
    return pd.DataFrame(rows)


def checked_record(r: dict, run: Path) -> tuple[RunRecord | None, str | None]:
    """The stored result ``r`` of the folder ``run`` as its record and None, or None and what is
    wrong with it. Valid JSON whose fields have the wrong shape (an edited ``"latency": []``,
    ``"budget": 3`` or ``"top1": "x"``) shows where it is read into typed fields; the run is then
    named like any other damaged one rather than ending a listing with a traceback."""
    try:
        return RunRecord.read(r, run), None
    except (AttributeError, TypeError, ValueError) as e:
        return None, f"a field of the wrong type ({type(e).__name__}: {e})"


def _processor(run: Path) -> str:
    """The CPU (or GPU) model that pruned and fine-tuned a run, from its ``config.json``: training is
    bit-exact on one CPU model and instruction set only, so a page says which trained its rows (runs
    stored before the processor was recorded say "an unrecorded processor")."""
    config = read_json_object(run / "config.json")
    if not config.get("processor"):
        return "an unrecorded processor"
    # a run resumed on another machine names each that trained it, in order
    return " then ".join(machine_text(m) for m in config.get("machines") or [config])


@dataclass(frozen=True)
class RunRecord:
    """One stored ``result.json``, read into typed fields once, here: every reader of stored runs
    (``load_runs``, the summary ``suite run`` prints) gets the same names, types and defaults for
    fields older records lack (runs stored before latency spread was recorded: NaN bounds and an
    unknown ``latency_noisy``; before the neutral name of a method's own training: ``reg_iters``).
    Its ``comparison`` is the run description's key (``comparison_of``); ``row()`` is the flat row of
    the tables the pages and ``suite results`` are made from."""

    setting: str | None
    comparison: str
    method: str | None
    seed: int | None
    status: str | None
    error: str
    ratios: str | None
    skip: str
    protocol: str
    numerics: str
    eval_split: str
    top1: float | None
    baseline_top1: float | None
    baseline_key: str
    baseline_sha256: str | None  # the weights pairs of runs share (findings)
    baseline_name: str
    params: int | None
    granularity: str
    nonzero_params: int | None
    sparsity: float | None
    baseline_params: int | None
    flops: float | None
    speedup: float | None
    latency_speedup: float | None
    latency_device: str | None
    latency_lo: float
    latency_hi: float
    latency_noisy: bool | None
    acc_before_removal: float | None
    acc_after_removal: float | None
    own_iters: int | None  # a method's own training iterations
    finetune_epochs: float | None
    wall_seconds: float | None
    samples: int | None
    samples_x_train: float | None
    budget_samples: int | None  # under an equal-sample budget: the samples every row reaches
    latency_target: str
    round_to: int
    train_macs: float | None
    capped: bool
    training_code: str
    model_modules: tuple[str, ...]  # its model family's modules (fingerprinted)
    hparams: str  # JSON, keys sorted: one comparable value per setting of the hyperparameters
    hparams_source: str
    data_label: str | None
    data_fingerprint: str | None
    code_version: str | None
    reduced: bool | None
    method_columns: dict  # the extra columns its method declares (``method_columns``)
    finished_at: str | None
    run: str
    processor: str

    def __post_init__(self):
        """A number field holding anything but a number (an edited ``"top1": "x"``, or a method's
        column such as ``"mag_ratio": "x"``) is refused here,
        where ``load_runs`` names the run as damaged and ``suite run`` refuses to reuse it, not later
        in a page's arithmetic."""
        numbers = {name: getattr(self, name) for name in _number_fields()}
        if not isinstance(self.method_columns, dict):
            raise TypeError(f"method_columns is {self.method_columns!r}, not a record")
        numbers |= {f"method_columns[{k!r}]": v for k, v in self.method_columns.items()}
        for name, value in numbers.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise TypeError(f"{name} is {value!r}, not a number")

    @classmethod
    def read(cls, r: dict, run: Path) -> RunRecord:
        """The record of one stored result ``r`` (a JSON object) in the folder ``run``."""
        b = r.get("budget", {})
        lat = r.get("latency", {}).get("batch64", {})
        return cls(
            setting=r.get("setting"),
            comparison=comparison_of(r),
            method=r.get("method"),
            seed=r.get("seed"),
            status=r.get("status"),
            error=r.get("error", ""),
            ratios=r.get("ratios"),
            skip=r.get("skip", ""),
            protocol=r.get("protocol", "paper"),
            numerics=numerics_label(r),
            eval_split=r.get("eval_split", "test"),
            top1=r.get("top1"),
            baseline_top1=r.get("baseline_top1"),
            baseline_key=r.get("baseline_key", ""),
            baseline_sha256=r.get("baseline_sha256"),
            baseline_name=baseline_name(r),
            params=r.get("params"),
            granularity=r.get("granularity", "filter"),
            nonzero_params=r.get("nonzero_params"),
            sparsity=r.get("weight_sparsity"),
            baseline_params=r.get("baseline_params"),
            flops=r.get("flops"),
            speedup=r.get("speedup"),
            latency_speedup=r.get("latency_speedup"),
            latency_device=lat.get("device"),
            latency_lo=lat.get("speedup_lo", float("nan")),
            latency_hi=lat.get("speedup_hi", float("nan")),
            latency_noisy=lat.get("noisy"),
            acc_before_removal=r.get("acc_before_removal"),
            acc_after_removal=r.get("acc_after_removal"),
            own_iters=b.get("own_iters", b.get("reg_iters")),
            finetune_epochs=b.get("finetune_epochs"),
            wall_seconds=r.get("wall_seconds"),
            samples=b.get("samples"),
            samples_x_train=b.get("samples_x_train"),
            budget_samples=b.get("total_samples_target"),
            latency_target=latency_target_text(r.get("latency_target")),
            round_to=r.get("round_to", 1),
            train_macs=b.get("train_macs"),
            capped=_capped(r),
            training_code=r.get("training_code") or "unrecorded",
            model_modules=tuple(r.get("model_modules") or ()),
            hparams=json.dumps(r.get("hparams", {}), sort_keys=True),
            hparams_source=r.get("hparams_source", ""),
            data_label=r.get("data_label"),
            data_fingerprint=r.get("data_fingerprint"),
            code_version=r.get("code_version"),
            reduced=r.get("reduced_budget"),
            method_columns=method_columns(r),
            finished_at=r.get("finished_at"),
            run=str(run),
            processor=_processor(run),
        )

    def row(self) -> dict:
        """The record as one flat table row; the method's columns as ``m:<name>``."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "method_columns":
                out.update({f"m:{k}": v for k, v in value.items()})
            else:
                out[f.name] = value
        return out


@functools.cache
def _number_fields() -> tuple[str, ...]:
    """RunRecord's fields typed as numbers (int or float, None allowed), read from its annotations
    so that a field added later is checked without being listed."""
    hints = get_type_hints(RunRecord)
    out = []
    for f in fields(RunRecord):
        kinds = set(get_args(hints[f.name])) or {hints[f.name]}
        if kinds & {int, float} and kinds <= {int, float, type(None)}:
            out.append(f.name)
    return tuple(out)


# Which runs are compared with each other, everywhere (the summary, ``suite results``, the pages and
# the findings): one setting's page, one comparison key, one edition of the training code.
COMPARISON = ["setting", "comparison", "current"]


def comparison_of(r: dict) -> str:
    """A stored run's comparison key: the run description's (``suite.spec.run.RunDescription.
    comparison``: same data, model and layers, baseline, budget and numerics; any method,
    hyperparameters and seed), recorded in every result since the description. A record from before
    it is keyed by the columns that made one comparison then (setting, baseline, precision,
    granularity, target, protocol), which partition every published run exactly as the description
    does (checked when the description came in); such runs are of older training code anyway, so
    they never share a comparison with a run of today's."""
    if r.get("comparison"):
        return r["comparison"]
    b = r.get("budget", {})
    legacy = {k: r.get(k) for k in ("setting", "baseline_key", "granularity", "ratios", "skip", "protocol")}
    legacy.update(numerics=numerics_label(r), samples_counted=b.get("samples") is not None)
    return "legacy-" + content_hash(legacy)


def baseline_name(r: dict) -> str:
    """How a run's starting point is named to a reader: the trained baseline's seed (runs stored
    before baseline_seed was recorded all used seed 0), or an own --baseline file's digest; a
    baseline trained in another precision than fp32 says so (it is another baseline)."""
    key = r.get("baseline_key", "")
    if key.startswith("user-"):
        return f"own baseline {key[5:13]}"
    numerics = numerics_label(r)
    return f"baseline seed {r.get('baseline_seed', 0)}" + ("" if numerics == "fp32" else f" ({numerics})")


def numerics_label(r: dict) -> str:
    """A run's precision and layout as pages name it (``fp32`` for runs stored before the options);
    a hand-edited record with a precision the suite does not know is shown as such, not trusted."""
    try:
        return Numerics.from_record(r).label()
    except SuiteError:
        return f"unknown precision {str(r.get('precision'))[:40]!r}"


def _capped(r: dict) -> bool:
    """The method's own training stopped at the setting's cap before its schedule was done (runs
    stored before the harness recorded it: the method's own ``capped_before_done`` flag)."""
    b = r.get("budget", {})
    return bool(b.get("capped", r.get("method_info", {}).get("capped_before_done", False)))


def method_columns(r: dict) -> dict[str, float | None]:
    """The extra columns a run's method declares (``methods.base.Method.columns``), as recorded in
    its result, or read from its ``method_info`` for a record stored before methods declared them."""
    if "method_columns" in r:
        return r["method_columns"] or {}
    from methods import registry

    if r.get("method") not in registry.names():
        return {}
    return registry.get(r["method"]).column_values(r.get("method_info") or {})


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and n over seeds per comparison (``COMPARISON``: setting, baseline, precision,
    granularity, layers, budget, code edition) and method with its hyperparameters: a sparsity of 0.9 is another target than 90 % of the filters; runs
    that started from different baselines or ran in another precision or layout are never averaged
    together (a row's label names a precision other than fp32). The one aggregation
    behind both the summary ``suite run`` prints and the leaderboard pages.

    Latency: the mean speedup, the mean of each run's quartile range (``latency_lo/hi``, NaN when
    a run predates recorded spread) and ``latency_noisy``: True when any run was noisy, None when
    no run recorded it.
    """
    # one comparison (``COMPARISON``), then what a method and its hyperparameters make of it; a capped
    # schedule is another computation: never averaged in
    keys = COMPARISON + ["method", "hparams", "hparams_source", "training_code", "capped"]
    runs = runs.assign(protocol=protocol_of(runs), current=current_code(runs))
    runs = runs.assign(latency_noisy=[float("nan") if v is None or v != v else float(v) for v in runs.latency_noisy])
    g = runs.groupby(keys, sort=False, dropna=False)
    # what a page shows of a comparison: the same for all its runs (the first spelling of a target
    # that two spellings name)
    shown = {
        c: (c, "first")
        for c in (
            "baseline_key",
            "numerics",
            "granularity",
            "ratios",
            "skip",
            "protocol",
            "budget_samples",
            "latency_target",
            "round_to",
        )
    }
    out = g.agg(
        **shown,
        top1_mean=("top1", "mean"),
        top1_std=("top1", "std"),
        n=("top1", "size"),
        baseline_top1=("baseline_top1", "mean"),
        baseline_name=("baseline_name", "first"),
        params=("params", "mean"),
        nonzero_params=("nonzero_params", "mean"),
        sparsity=("sparsity", "mean"),
        baseline_params=("baseline_params", "mean"),
        speedup=("speedup", "mean"),
        latency_speedup=("latency_speedup", "mean"),
        latency_device=("latency_device", "first"),
        latency_lo=("latency_lo", lambda v: v.mean(skipna=False)),
        latency_hi=("latency_hi", lambda v: v.mean(skipna=False)),
        latency_noisy=("latency_noisy", "max"),
        own_iters=("own_iters", "mean"),
        finetune_epochs=("finetune_epochs", "mean"),
        wall_seconds=("wall_seconds", "mean"),
        samples=("samples", "mean"),
        samples_x_train=("samples_x_train", "mean"),
        train_macs=("train_macs", "mean"),
        before_removal=("acc_before_removal", "mean"),
        after_removal=("acc_after_removal", "mean"),
        **{c: (c, "mean") for c in runs.columns if c.startswith("m:")},
        runs=("run", list),
        top1_values=("top1", list),
        processors=("processor", list),
    ).reset_index()
    out["latency_noisy"] = out.latency_noisy.map(lambda v: None if v != v else bool(v))
    out["hparams_apart"] = _hparams_apart(out)
    out["label"] = [
        label(m, src)
        + apart
        + ("" if num == "fp32" else f" [{num}]")
        + ("" if cur else " [older training code]")
        + (" [capped]" if cap else "")
        for m, src, apart, num, cur, cap in zip(
            out.method, out.hparams_source, out.hparams_apart, out.numerics, out.current, out.capped
        )
    ]
    out["delta"] = out.top1_mean - out.baseline_top1
    out["param_reduction"] = out.baseline_params / out.params
    out["nonzero_reduction"] = out.baseline_params / out.nonzero_params  # NaN for filter pruning
    return out


def _search_words(t: dict) -> str:
    """How a run's target text names its kind of search (``SEARCHES``); a kind this code does not
    know is named as it is recorded."""
    kind = t.get("search", "per-unit")
    return SEARCHES[kind].run_words if kind in SEARCHES else f" by the {kind} search"


def latency_target_text(t) -> str:
    """How a run's ratios were found by ``suite run --target Nx-latency``, in words ("" otherwise):
    the target, how it was searched where that is not per unit, its runtime and batch, the machine
    it was measured on and what it measured."""
    if not isinstance(t, dict):
        return ""
    try:
        return (
            f"{float(t['target']):g}x latency{_search_words(t)} on {t['runtime']} at batch {int(t['batch'])}, measured "
            f"{float(t['speedup']):.2f}x on {machine_text(t)} ({int(t['threads'])} threads)"
        )
    except (KeyError, TypeError, ValueError):
        return "a latency target (its record is incomplete)"


def protocol_of(frame: pd.DataFrame) -> pd.Series:
    """The budget protocol as a page states it. ``total`` runs stored before samples were counted
    matched *iterations* across batch sizes (not equal): they are named so, never called equal."""
    legacy = (frame.protocol == "total") & frame.samples.isna()
    return frame.protocol.where(~legacy, "total-iterations (legacy, unequal samples)")


def current_code(frame: pd.DataFrame) -> pd.Series:
    """True where a run was trained by today's training code for its method and its model family
    (the family modules the run recorded; a run that recorded none predates them and is compared
    with the shared harness alone)."""
    from methods import registry
    from suite.store.fingerprint import training_code

    known = set(registry.names())
    families = frame.model_modules if "model_modules" in frame else [()] * len(frame)
    keys = [(m, tuple(f) if isinstance(f, (list, tuple)) else ()) for m, f in zip(frame.method, families)]
    today = {k: training_code(type(registry.get(k[0])), k[1]) for k in set(keys) if k[0] in known}
    return pd.Series([today.get(k) == c for k, c in zip(keys, frame.training_code)], index=frame.index)


def _hparams_apart(rows: pd.DataFrame) -> list[str]:
    """Per row of ``aggregate``: " (field=value, ...)" naming the hyperparameters in which it differs
    from the setting's other rows of its method and source, "" where they share one set. A method's
    defaults are one set per setting until a setting's ``method_overrides`` change between runs
    (they are not training code): the rows would then share a name, and the pages show one row,
    one cell and one series per name."""
    sets = rows.groupby(["setting", "method", "hparams_source"], sort=False).hparams.agg(lambda h: set(h))
    out = []
    for setting, method, source, hparams in zip(rows.setting, rows.method, rows.hparams_source, rows.hparams):
        others = sets[(setting, method, source)]
        if len(others) == 1:
            out.append("")
            continue
        mine, rest = json.loads(hparams), [json.loads(h) for h in others]
        differ = sorted(k for k in set(mine).union(*rest) if any(r.get(k) != mine.get(k) for r in rest))
        out.append(" (" + ", ".join(f"{k}={mine.get(k, 'unset')}" for k in differ) + ")")
    return out


def label(method: str, hparams_source: str) -> str:
    """How a row is named: a method with tuned or user-given hyperparameters is another entry than
    the same method with its defaults, and must not share its row, its best mark or its series."""
    if not hparams_source or hparams_source == "default":
        return method
    return f"{method} (tuned)" if hparams_source.startswith("tuned") else f"{method} (own hparams)"
