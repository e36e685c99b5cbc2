"""A setting page's "Latency target against uniform cuts": what choosing the cut per stage buys.

``suite run --target 2x-latency`` prunes to per-stage ratios whose measured speedup reaches the
target; whether that choice is worth anything shows only beside the uniform cuts a user would
otherwise take, trained the same way from the same baseline: one uniform ratio of the same measured
speed (``--latency-search uniform``), and the uniform ratio of the same FLOPs speedup (``--target
Fx`` with the per-stage search's FLOPs). The three architectures are separate comparisons on the
page (their ratios differ); this section finds them from the stored searches
(``<setting>/latency-targets/*.json``) and the runs, and sets them side by side: FLOPs, the speed the
search confirmed, the speed ``suite latency`` measured for each alike (its stored records, same
runtime, batch and processor), and each method's top-1.

A run is linked to a search by its ratios and its recorded target (the text the page prints for it,
which holds the target, runtime, batch, processor, threads and measured speedup); the FLOPs
reference by a ``--target Fx`` within 0.5 % of the search's FLOPs speedup, with no latency target,
or, where that target prunes to the counts of the uniform ratio of the same speed, by that ratio's
runs (on ResNet-20 at 2x on ONNX Runtime both are 0.8625: one computation, trained once).
All three in the same context: baseline, numerics, budget protocol and point, granularity,
alignment and skip list, today's training code, default hyperparameters. The differences are Welch
intervals (findings' ``welch_test``; different architectures: no pairing), described, not tested: the paper claims nothing
about latency targets, so they stay out of findings' Holm family.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from suite.errors import SuiteError
from suite.measure.metrics import machine_text
from suite.measure.search_kinds import SEARCHES
from suite.pages.findings import DEFAULT_SOURCES, welch_test
from suite.store.files import read_json_record
from suite.store.results import Unreadable, label, latency_target_text

FLOPS_MATCH = 0.005  # a FLOPs target within 0.5 % of the search's FLOPs speedup is its reference
_FLOPS_TARGET = re.compile(r"(\d+(?:\.\d+)?)x")
CONTEXT = ["baseline_key", "numerics", "protocol", "budget", "granularity", "round_to", "skip"]
# the searches that choose a cut per stage, each its own section, in the table's order
PER_STAGE = [name for name, kind in SEARCHES.items() if kind.cut]


def load_searches(runs_dir: Path, setting: str, unreadable: list[Unreadable] | None = None) -> list[dict]:
    """The stored latency searches of a setting (``suite run --target Nx-latency``), in path order.
    Writes are atomic, so a file that is not a search record was edited by hand: it is left out and
    appended to ``unreadable`` (when given), to be named as a damaged run is."""
    out = []
    for path in sorted((Path(runs_dir) / setting / "latency-targets").glob("*.json")):
        rec, problem = read_json_record(path)
        if not problem and not (isinstance(rec.get("achieved"), dict) and "ratios" in rec and "flops_speedup" in rec):
            problem = "not a latency search record (no achieved, ratios or flops_speedup)"
        if not problem:
            out.append(rec)
        elif unreadable is not None:
            fix = "restore the file (a new search may land on other ratios than its runs pruned to)"
            unreadable.append(Unreadable(path, problem, listed=False, what="latency search", fix=fix))
    return out


def _run_text(search: dict) -> str:
    """What the runs pruned to this search record as their target (``latency_target_text`` of the
    record ``suite run`` stores in each run)."""
    return latency_target_text({**search, "speedup": search["achieved"]["speedup"]})


def _same_machine(a: dict, b: dict) -> bool:
    """Whether two records were measured on one machine: the same processor and instruction set, or
    the same processor where one of them was stored before the instruction set was recorded (the
    per-unit ResNet-20 search of stop 48: a model name alone, which its uniform twin and the
    ``suite latency`` records of its cuts, measured later on that machine, name with their ISA)."""
    return a.get("processor") == b.get("processor") and (not a.get("isa") or not b.get("isa") or a["isa"] == b["isa"])


def _prunes_alike(a: dict, b: dict) -> bool:
    """Whether two searches chose among the same architectures: the same skip list and alignment
    (their keys'; a record without a key is of the counts as given, nothing skipped beyond the
    setting's). A uniform search aligned to 32 is another cut than one of the counts as given, and
    each is the twin of the per-stage search of its own alignment only."""

    def pruning(r: dict) -> tuple:
        return (r.get("key") or {}).get("base_ratios_skip"), _aligned_to(r)

    return pruning(a) == pruning(b)


def _aligned_to(search: dict) -> int:
    """The multiple a search's kept counts were aligned to (its key's ``round_to``; a search stored
    before its key held one, or of the counts as given: 1)."""
    return int((search.get("key") or {}).get("round_to") or 1)


def _very_same_machine(a: dict, b: dict) -> bool:
    """Whether two records name one machine in the same words (processor and instruction set alike):
    among records of one machine (``_same_machine``), such a record is preferred to one that
    names no instruction set."""
    return machine_text(a) == machine_text(b)


def _timed_alike(search: dict, ratios: str, timed: list[dict]) -> dict | None:
    """The newest ``suite latency`` measurement of ``ratios`` on the search's machine
    (``_same_machine``; one naming it in the same words first: ``_very_same_machine``), runtime,
    batch and alignment (a record of the counts as given does not time an aligned search's cut):
    {speedup, lo, hi}, or None when none is stored."""
    found = []
    aligned = _aligned_to(search)
    for rec in timed:
        if rec.get("ratios") != ratios or not _same_machine(rec, search):
            continue
        for row in rec.get("rows", []):
            if (row.get("runtime"), row.get("batch")) != (search["runtime"], search["batch"]):
                continue
            series = _of_alignment(rec, row, aligned)
            if series and series.get("speedup"):
                found.append(((_very_same_machine(rec, search), str(rec.get("measured_at", ""))), series))
    if not found:
        return None
    _, row = max(found, key=lambda t: t[0])
    # the paired 95 % interval; a record from before it has a quartile range there, not an interval
    return {"speedup": float(row["speedup"]), "lo": row.get("speedup_ci_lo"), "hi": row.get("speedup_ci_hi")}


def _of_alignment(rec: dict, row: dict, aligned: int) -> dict | None:
    """The series of a ``suite latency`` row that timed the ratios aligned to ``aligned``: the row
    itself where the record's setting aligned its counts so (counts as given: 1), its rounding
    sweep's entry of that alignment where the record is of the counts as given (the sweep rounds
    the ratios' counts as a run of ``--round-to N`` does), None where it timed neither."""
    own = int(rec.get("round_to") or 1)
    if own == aligned:
        return row
    if own == 1:
        return next((v for v in row.get("rounded", []) if v.get("round_to") == aligned), None)
    return None


def _context(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns that must agree for three architectures to be one question (NaN budgets, the
    paper protocol's, made comparable)."""
    return frame.assign(
        budget=[None if b is None or b != b else int(b) for b in frame.budget_samples],
        skip=frame.skip.fillna(""),
        round_to=frame.round_to.fillna(1).astype(int),
    )


def same_uniform_cut(setting, flops_target: str, uniform_ratio: str, skip=None, round_to=None) -> bool:
    """Whether the FLOPs target ``flops_target`` ("7.333x": the uniform ratio whose surgery comes
    nearest) and the uniform ratio ``uniform_ratio`` prune ``setting``'s model to the same counts.
    Both are one ratio for every layer, and each layer's kept count falls as the ratio grows, so two
    of them whose pruned models have the same FLOPs and parameters keep the same count in every
    layer: the dry surgery's numbers (cached per setting, as ``suite list settings`` shows them)
    say it without comparing layers. ``skip`` and ``round_to``: the runs' own (default: the
    setting's). A target the model cannot take is not that cut."""
    from suite.pages.overview import cached_achieved
    from suite.spec.settings import with_ratios

    try:
        a, b = (cached_achieved(with_ratios(setting, r, skip, round_to)) for r in (flops_target, uniform_ratio))
    except SuiteError:
        return False
    return (a["pruned_flops"], a["pruned_params"]) == (b["pruned_flops"], b["pruned_params"])


def sections(agg: pd.DataFrame, searches: list[dict], timed: list[dict], setting=None) -> list[dict]:
    """One section per per-stage search with runs of today's code and default hyperparameters, and
    per context (baseline, numerics, budget...) its runs have: the three cuts (rows) with each
    method's top-1, and per method the per-stage cut's difference to each uniform cut. Where the
    uniform ratio of the same measured speed is also the uniform ratio of the same FLOPs (the same
    counts in every layer, ``same_uniform_cut``; ``setting`` given), its runs answer both rows: the
    same computation is not trained twice under two names."""
    if agg.empty:
        return []
    today = _context(agg[agg.current & agg.hparams_source.isin(DEFAULT_SOURCES) & (agg.granularity == "filter")])
    # by alignment (counts as given first), then kind (per-unit, spread, spread-flops): a page reads
    # each alignment's searches together, the first one asked first
    per_stage = sorted(
        (s for s in searches if s.get("search", "per-unit") in PER_STAGE),
        key=lambda s: (_aligned_to(s), PER_STAGE.index(s.get("search", "per-unit"))),
    )
    uniform = [s for s in searches if s.get("search") == "uniform"]
    out = []
    for search in per_stage:
        same = (search["target"], search["runtime"], search["batch"], search["threads"])
        twins = [
            u
            for u in uniform
            if (u["target"], u["runtime"], u["batch"], u["threads"]) == same
            and _same_machine(u, search)
            and _prunes_alike(u, search)
        ]
        twin = max(twins, key=lambda u: _very_same_machine(u, search), default=None)
        mine = today[(today.ratios == search["ratios"]) & (today.latency_target == _run_text(search))]
        for ctx, part in mine.groupby(CONTEXT, sort=False, dropna=False):
            here = today[_same(today, ctx)]
            flops_runs = here[
                (here.latency_target.fillna("") == "") & here.ratios.apply(_near, args=(search["flops_speedup"],))
            ]
            speed_runs = (
                here[(here.ratios == twin["ratios"]) & (here.latency_target == _run_text(twin))]
                if twin
                else here.iloc[0:0]
            )
            # aligned counts step: a FLOPs target lands on the aligned uniform cut nearest it
            # (ResNet-18 aligned to 32: 1.72x for the per-stage cut's 1.94x), which the title says
            flops_title = "one uniform ratio, " + (
                "nearest the same FLOPs" if _aligned_to(search) > 1 else "same FLOPs"
            )
            flops_target = f"{search['flops_speedup']:.3f}x"
            if (
                flops_runs.empty
                and not speed_runs.empty
                and setting is not None
                and same_uniform_cut(setting, flops_target, twin["ratios"], *_skip_and_round_to(ctx))
            ):
                flops_runs = speed_runs
                flops_title += f" ({flops_target} prunes to the same counts: the row above, trained once)"
            elif flops_runs.empty and setting is not None:
                flops_runs, other = _same_cut_runs(here, setting, flops_target, ctx)
                if other:
                    flops_title += f" ({flops_target} prunes to the counts of {other}: its runs, trained once)"
            cuts = [(f"{_kind(search).replace('-', ' ')} (the latency search)", search, part)]
            cuts.append(("one uniform ratio, searched to the same speed", twin, speed_runs))
            cuts.append((flops_title, None, flops_runs))
            out.append(_section(search, part.iloc[0], cuts, timed))
    return out


def _same_cut_runs(here: pd.DataFrame, setting, flops_target: str, ctx: tuple) -> tuple[pd.DataFrame, str | None]:
    """The runs of another FLOPs target (no latency target) that prunes to the counts of
    ``flops_target``, and that target; none found: no runs, None. Aligned counts step, so two
    per-stage searches of one comparison can take FLOPs speedups apart by more than ``FLOPS_MATCH``
    whose references are one cut (ResNet-18 aligned to 32: 1.939x and 1.968x both keep the
    counts of the aligned uniform cut of 1.72x), trained once under the first one's name."""
    plain = here[
        (here.latency_target.fillna("") == "") & here.ratios.apply(lambda r: bool(_FLOPS_TARGET.fullmatch(str(r))))
    ]
    for other in sorted(set(plain.ratios)):
        if same_uniform_cut(setting, flops_target, other, *_skip_and_round_to(ctx)):
            return plain[plain.ratios == other], other
    return plain.iloc[0:0], None


def _skip_and_round_to(ctx: tuple) -> tuple[str, int]:
    """The skip list and alignment of a context tuple (``CONTEXT``'s order), as the runs pruned."""
    got = dict(zip(CONTEXT, ctx))
    return got["skip"] or "", int(got["round_to"])


def _same(frame: pd.DataFrame, ctx: tuple) -> pd.Series:
    """Row-wise equality with a context tuple where None/NaN equals None/NaN (pandas' == does not)."""
    ok = pd.Series(True, index=frame.index)
    for col, want in zip(CONTEXT, ctx):
        have = frame[col]
        if want is None or (isinstance(want, float) and math.isnan(want)):
            ok &= have.isna()
        else:
            ok &= have == want
    return ok


def _near(ratios: str, flops: float) -> bool:
    m = _FLOPS_TARGET.fullmatch(str(ratios).strip())
    return bool(m) and abs(float(m.group(1)) / flops - 1) <= FLOPS_MATCH


def _section(search: dict, first, cuts: list, timed: list[dict]) -> dict:
    methods = sorted({m for _, _, runs in cuts for m in runs.method})
    rows = []
    for title, rec, runs in cuts:
        ratios = rec["ratios"] if rec else (runs.ratios.iloc[0] if not runs.empty else None)
        by_method = {r.method: r for r in runs.itertuples()}
        rows.append(
            {
                "cut": title,
                "ratios": ratios,
                "flops": float(runs.speedup.mean()) if not runs.empty else (rec["flops_speedup"] if rec else None),
                "searched": None
                if rec is None
                else {
                    "speedup": rec["achieved"]["speedup"],
                    "lo": rec["achieved"].get("speedup_ci_lo"),
                    "hi": rec["achieved"].get("speedup_ci_hi"),
                },
                "timed": _timed_alike(search, ratios, timed) if ratios else None,
                "top1": {
                    m: {
                        "mean": r.top1_mean,
                        "std": None if r.top1_std != r.top1_std else r.top1_std,
                        "n": int(r.n),
                        "values": list(r.top1_values),
                    }
                    for m, r in by_method.items()
                },
            }
        )
    stage, same_speed, same_flops = (row["top1"] for row in rows)

    def versus(cut: dict, method: str) -> dict | None:
        """The per-stage cut's runs of ``method`` against ``cut``'s (findings' Welch test; its p value
        is not shown), None when either cut has no run of it."""
        if method not in stage or method not in cut:
            return None
        return welch_test(stage[method]["values"], cut[method]["values"])

    diffs = [{"method": label(m, ""), "speed": versus(same_speed, m), "flops": versus(same_flops, m)} for m in methods]
    return {
        "search": search.get("search", "per-unit"),
        "how_spread": SEARCHES[search.get("search", "per-unit")].how_spread,
        "target": search["target"],
        "runtime": search["runtime"],
        "batch": search["batch"],
        "processor": machine_text(search),
        "threads": search["threads"],
        "round_to": _aligned_to(search),
        "baseline_name": first.baseline_name,
        "numerics": first.numerics,
        "protocol": first.protocol,
        "budget": first.budget,
        "methods": [(m, label(m, "")) for m in methods],
        "rows": rows,
        "diffs": diffs,
        "sentence": _sentence(search, diffs, _speeds_apart(rows[0], rows[1])),
    }


def _speeds_apart(stage: dict, uniform: dict) -> tuple[float, float, str] | None:
    """(per-stage speedup, uniform speedup, how they were measured) when the two cuts do not run at
    the same speed (more than the search's tolerance apart), None when they do or a speed is
    missing. Timed alike where both cuts were (the fairer measure: one series after the other),
    else as their searches confirmed them. A uniform search cannot always land near its target:
    on torchvision's ResNet-18 under ONNX Runtime every uniform ratio below 0.5 ran slower than the
    unpruned model (unaligned counts), so its twin ran at 2.62x against the per-stage cut's 2.04x."""
    from suite.measure.latency_target import TOLERANCE

    for key, how in (("timed", "timed alike"), ("searched", "as their searches confirmed them")):
        a, b = stage.get(key), uniform.get(key)
        if a and b:
            x, y = a["speedup"], b["speedup"]
            return None if abs(y / x - 1) <= TOLERANCE else (x, y, how)
    return None


def _kind(search: dict) -> str:
    """What a page calls a per-stage search's cut: "per-stage", "spread per-stage" or "FLOPs-spread per-stage"."""
    return SEARCHES[search.get("search", "per-unit")].cut


def _sentence(search: dict, diffs: list[dict], apart: tuple[float, float, str] | None = None) -> str:
    """The result in words: per method, the per-stage cut against the uniform one searched to the
    same speed, and where the two do not run at the same speed (``apart``), that first."""
    told = [d for d in diffs if d["speed"] and d["speed"]["lo"] is not None]
    cut = _kind(search)
    if not told:
        return (
            f"No method has two runs or more of both the {cut} cut and the uniform cut of the same "
            f"measured speed yet, so what choosing the cut per stage buys at {search['target']:g}x on "
            f"{search['runtime']} is not known from these runs."
        )
    parts = []
    for d in told:
        s = d["speed"]
        verdict = "more" if s["lo"] > 0 else "less" if s["hi"] < 0 else "neither clearly more nor less"
        parts.append(
            f"{d['method']} keeps {verdict} top-1 with the {cut} cut ({s['diff']:+.2f} points "
            f"[{s['lo']:+.2f}, {s['hi']:+.2f}])"
        )
    where = f"{search['target']:g}x on {search['runtime']} at batch {search['batch']}"
    if apart is None:
        head = f"At the same measured speed ({where}): "
    else:
        x, y, how = apart
        head = (
            f"The two cuts do not run at the same speed: searched to the same target ({where}), the "
            f"uniform cut runs at {y:.2f}x and the {cut} cut at {x:.2f}x ({how}), so the uniform cut "
            f"is {'faster' if y > x else 'slower'} as well. "
        )
    return head + "; ".join(parts) + ". Welch 95 % intervals over the seeds of one baseline: described, not tested."
