"""Static leaderboard pages from stored runs: pandas aggregates, jinja2 pages, inline SVG charts.

Only finished, non-smoke runs evaluated on the test split appear as results (search trials are
scored on a validation split and trained on less data, so they are left out). Numbers reported
in the paper are shown beside ours, marked, and never ranked with them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shlex
import statistics
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import jinja2
import pandas as pd

from methods.registry import DEFAULT_COMPARISON
from suite.errors import SuiteError
from suite.measure import latency_records
from suite.measure.latency import top_layers
from suite.measure.metrics import machine_text
from suite.pages import latency_cuts
from suite.pages.findings import findings, setting_summary, welch_test
from suite.pages.matrix import baseline_order, baselines_text, best_matrix, shared_baselines
from suite.pages.overview import changed_defaults
from suite.pages.twins import partly, table_starts, twins
from suite.pages.variants import sentence as variants_sentence
from suite.pages.variants import variant_rows
from suite.spec.settings import NAME_RE, SETTINGS
from suite.store.files import read_json_object, write_atomic
from suite.store.fingerprint import unchanging_code
from suite.store.results import Unreadable, aggregate, current_code, load_runs, unreadable_count


def paper_results() -> dict:
    """The numbers the GReg paper reports, per setting (suite/paper_results.json, package data):
    {"source": citation, "settings": {name: {"baseline": top-1, "rows": [[table, method, speedup, top-1]]}}}."""
    from importlib.resources import files

    return json.loads(files("suite.pages").joinpath("paper_results.json").read_text())


# ---------------------------------------------------------------------------- the data
def ranked(frame: pd.DataFrame, include_capped: bool = False) -> pd.DataFrame:
    """The runs that may be ranked: finished, not smoke, scored on the test split, and (unless
    ``include_capped``) whose own training finished its schedule before the setting's cap."""
    if frame.empty:
        return frame
    keep = (frame.status == "done") & (frame.eval_split == "test")
    if not include_capped:
        keep &= ~frame.capped.astype(bool)
    return frame[keep]


def versus_best(best: list[float], other: list[float]) -> dict:
    """A table row against the table's best row (``suite.pages.findings.welch_test``: the
    difference, Welch's p and the smallest difference the seeds could detect at 80 % power), for
    the words "not significant (n=3 vs 3; could detect >= 1.2 points)" rather than "within noise".
    Unadjusted: the pages' tables are not the findings' family of tests (those are Holm-adjusted)."""
    t = welch_test(best, other)
    return {**t, "significant": t["p"] is not None and t["p"] < 0.05}


# ---------------------------------------------------------------------------- the chart
def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) covering [lo, hi].

    Hand-written (Heckbert's nice numbers, a few lines) rather than pulling in matplotlib for its
    tick locator: the chart is plain SVG."""
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / max(1, target - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(k * mag for k in (1, 2, 2.5, 5, 10) if k * mag >= raw)
    first = math.floor(lo / step + 1e-9) * step
    ticks = [round(first, 10)]
    while ticks[-1] < hi - step * 1e-9 or len(ticks) < 2:  # the last tick reaches past hi
        ticks.append(round(first + len(ticks) * step, 10))
    return ticks


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both speedup and top-1, by increasing speedup."""
    front, best = [], -math.inf
    for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):  # fastest first
        if y > best:
            front.append((x, y))
            best = y
    return sorted(front)


def _tick_text(v: float, step: float) -> str:
    """A tick label with as many decimals as the step needs (a step of 2.5 needs one, 2 none)."""
    decimals = 0
    while abs(round(step, decimals) - step) > 1e-9 and decimals < 6:
        decimals += 1
    return f"{v:.{decimals}f}"


def svg_chart(
    agg: pd.DataFrame,
    baseline: float | None,
    paper: dict | None = None,
    width: int = 1000,
    height: int = 420,
    x: str = "speedup",
    x_suffix: str = "x",
    x_scale: float = 1.0,
    front: bool = True,
) -> dict:
    """Coordinates for an inline SVG: top-1 vs FLOPs speedup (or another column ``x``, divided by
    ``x_scale`` and ticked with ``x_suffix``), one series per row label with error bars, the
    paper's reported points as hollow diamonds, and (``front``) the Pareto frontier of our points.
    A row whose ``hollow`` column is true is drawn as a hollow circle (the budget curve's
    paper-protocol points).

    Axes span the data (ours, the paper's, the baseline) with a margin and round ticks; the legend
    sits right of the plot area, so it never covers a point or the baseline. The SVG scales to the
    page width through its viewBox."""
    paper_rows = (paper or {}).get("rows", [])
    if agg.empty and not paper_rows:
        return {}
    if agg.empty:  # a page with the paper's numbers only
        agg = pd.DataFrame(columns=[x, "top1_mean", "top1_std", "method", "label", "n"], dtype=float)
    agg = agg.assign(x_value=agg[x] / x_scale)
    std = agg.top1_std.fillna(0)
    xs = agg.x_value.tolist() + [r[2] for r in paper_rows]
    ys = (
        (agg.top1_mean - std).tolist()
        + (agg.top1_mean + std).tolist()
        + [r[3] for r in paper_rows]
        + ([baseline] if baseline is not None else [])
    )
    span_x, span_y = max(xs) - min(xs), max(ys) - min(ys)
    pad_x = max(span_x * 0.08, max(xs) * 0.05)
    pad_y = max(span_y * 0.08, 0.5)
    yticks = nice_ticks(min(ys) - pad_y, max(ys) + pad_y)
    xticks = nice_ticks(max(0.0, min(xs) - pad_x), max(xs) + pad_x)
    lo_x, hi_x, lo_y, hi_y = xticks[0], xticks[-1], yticks[0], yticks[-1]
    m = {"l": 60, "r": 220, "t": 14, "b": 44}  # the right margin holds the legend

    def px(x):  # rounded: a tenth of a pixel is invisible, and re-rendered pages stay byte-stable
        return round(m["l"] + (x - lo_x) / (hi_x - lo_x) * (width - m["l"] - m["r"]), 1)

    def py(y):
        return round(height - m["b"] - (y - lo_y) / (hi_y - lo_y) * (height - m["t"] - m["b"]), 1)

    palette = [
        "#1b6ac9",
        "#d1495b",
        "#2a9d8f",
        "#e9a03b",
        "#6c4ab6",
        "#555555",
        "#8ab17d",
        "#b5651d",
        "#17becf",
        "#c51b7d",
        "#7f7f00",
        "#0b3d91",
    ]
    # one colour per row label: our greg1 and the paper's greg1 share it, the marker tells them apart
    color = {
        name: palette[k % len(palette)]
        for k, name in enumerate(dict.fromkeys(sorted(agg.label) + [r[1] for r in paper_rows]))
    }
    series = []
    if not agg.empty:
        for label_, part in agg.sort_values("x_value").groupby("label", sort=False):
            pts = []
            for r in part.itertuples():
                sd = 0.0 if pd.isna(r.top1_std) else r.top1_std
                hollow = bool(getattr(r, "hollow", False))
                pts.append(
                    {
                        "x": px(r.x_value),
                        "y": py(r.top1_mean),
                        "y0": py(r.top1_mean - sd),
                        "y1": py(r.top1_mean + sd),
                        "hollow": hollow,
                        "label": f"{label_}: {r.top1_mean:.2f} at {r.x_value:.2f}{x_suffix} (n={r.n})"
                        + (" (paper protocol)" if hollow else ""),
                    }
                )
            series.append(
                {
                    "method": label_,
                    "color": color[label_],
                    "points": pts,
                    "path": " ".join(f"{p['x']},{p['y']}" for p in pts),
                }
            )
    paper_series = []
    for meth in dict.fromkeys(r[1] for r in paper_rows):
        pts = [
            {"x": px(sp), "y": py(acc), "label": f"{meth} (paper, {src}): {acc:.2f} at {sp:.2f}x"}
            for src, mm, sp, acc in sorted(paper_rows, key=lambda r: r[2])
            if mm == meth
        ]
        paper_series.append({"method": f"{meth} (paper)", "color": color[meth], "points": pts})
    front = pareto(list(zip(agg.x_value, agg.top1_mean))) if front else []
    legend = [{"kind": "ours", "text": s_["method"], "color": s_["color"]} for s_ in series]
    legend += [{"kind": "paper", "text": s_["method"], "color": s_["color"]} for s_ in paper_series]
    if len(front) > 1:
        legend.append({"kind": "front", "text": "Pareto frontier (ours)", "color": "#bbbbbb"})
    if baseline is not None:
        legend.append({"kind": "baseline", "text": f"baseline {baseline:.2f}", "color": "#999999"})
    for k, item in enumerate(legend):
        item["y"] = m["t"] + 10 + 20 * k
    xstep, ystep = xticks[1] - xticks[0], yticks[1] - yticks[0]
    return {
        "width": width,
        "height": height,
        "series": series,
        "paper": paper_series,
        "m": m,
        "legend": legend,
        "legend_x": width - m["r"] + 16,
        "front": " ".join(f"{px(x)},{py(y)}" for x, y in front) if len(front) > 1 else "",
        "baseline_y": py(baseline) if baseline is not None else None,
        "yticks": [{"v": _tick_text(v, ystep), "y": py(v)} for v in yticks],
        "xticks": [{"v": _tick_text(v, xstep) + x_suffix, "x": px(v)} for v in xticks],
    }


def budget_curves(agg: pd.DataFrame) -> list[dict]:
    """Top-1 against the training samples after the baseline, one chart per target, baseline and
    precision of today's filter-pruning runs that reach at least two budget points: every method
    over the paper protocol (hollow: each method's own samples) and the equal-sample budgets
    (filled: every method at the same samples), mean and std over seeds. A target with several
    baselines leads with one chart across them (``_across_baselines``), each baseline's own folded."""
    if agg.empty:
        return []
    rows = agg[(agg.granularity == "filter") & agg.current & agg.samples.notna() & ~agg.capped.astype(bool)]
    rows = rows[rows.protocol.isin(["paper", "total"])]
    out = []
    for (ratios, skip, num), target in rows.groupby(["ratios", "skip", "numerics"], sort=False):
        per_baseline = [
            part for _, part in target.groupby("baseline_key", sort=False) if part.samples.round(-3).nunique() >= 2
        ]
        across = len(per_baseline) > 1
        if across:
            per_baseline.insert(0, _across_baselines(pd.concat(per_baseline)))
        for k, part in enumerate(per_baseline):
            part = part.assign(hollow=part.protocol == "paper")
            chart = svg_chart(
                part, part.baseline_top1.mean(), x="samples", x_suffix="M", x_scale=1e6, front=False, height=360
            )
            out.append(
                {
                    "ratios": ratios,
                    "skip": skip,
                    "baseline_name": part.baseline_name.iloc[0],
                    "across": across and k == 0,
                    "folded": across and k > 0,  # each baseline's own chart, under the chart across them
                    "numerics": num,
                    "budgets": sorted({int(v) for v in part.budget_samples.dropna()}),
                    "chart": chart,
                }
            )
    return out


def _across_baselines(rows: pd.DataFrame) -> pd.DataFrame:
    """One point per method and budget over several baselines: the baselines are a random factor
    (findings.html), so a point is the mean of the per-baseline means, its spread their std across
    baselines, over the baselines every method of that budget point has runs on (no method's point
    rests on a baseline another's lacks: ``suite.pages.matrix.shared_baselines``)."""
    names = dict(zip(rows.baseline_key, rows.baseline_name))
    order = baseline_order(names)
    points, used = [], set()
    for _, point in rows.groupby(["protocol", "budget_samples"], sort=False, dropna=False):
        shared = shared_baselines(point, order, "label")
        used.update(shared)
        for _, runs in point[point.baseline_key.isin(shared)].groupby("label", sort=False):
            first = runs.iloc[0]
            k = runs.baseline_key.nunique()
            points.append(
                first.to_dict()
                | {
                    "top1_mean": runs.top1_mean.mean(),
                    "top1_std": runs.top1_mean.std() if k > 1 else first.top1_std,
                    "n": int(runs.n.sum()),
                    "samples": runs.samples.mean(),
                    "baseline_top1": runs.baseline_top1.mean(),
                }
            )
    text = baselines_text([names[b] for b in order if b in used])
    return pd.DataFrame(points).assign(baseline_name=f"{text}: mean over baselines")


# ---------------------------------------------------------------------------- rendering
def _code_versions(runs: pd.DataFrame) -> dict[str, list[str]]:
    """The commits a page's runs were made at: those of today's training code (the runs the page
    leads with), then the others (a store that has retrained its runs over many stops holds dozens,
    which the page folds)."""
    if runs.empty:
        return {"today": [], "older": []}
    today = current_code(runs)
    current = sorted(set(runs.code_version[today]))
    return {"today": current, "older": sorted(set(runs.code_version[~today]) - set(current))}


def _mechanism_reports(out_dir: Path) -> list[dict]:
    """The mechanism reports kept beside the pages (``mechanism/<setting>-<ratio>/REPORT.md`` under
    --out, as in leaderboards/): findings.html links them where it shows the schedules they led to.
    Linked, never quoted: their numbers come from probes, not from stored runs."""
    return [
        {"name": p.parent.name, "href": _href(p.relative_to(out_dir).as_posix())}
        for p in sorted(Path(out_dir).glob("mechanism/*/REPORT.md"))
    ]


def _latest(runs: pd.DataFrame) -> str:
    """When the newest of these runs finished (UTC), or "no runs"."""
    if runs.empty or runs.finished_at.isna().all():
        return "no runs"
    return str(runs.finished_at.dropna().max())


def slug(name: str) -> str:
    """A page's file name stem: the setting name when it is already a safe name (what the CLI
    accepts, so every page of a real run keeps its name), else the name with every other character
    replaced and a digest of the full name appended, so two hostile names never share a page. A
    stored run's name can be anything (a hand-edited result.json): it never reaches a path or URL."""
    if NAME_RE.fullmatch(name) and name.lower() not in ("index", "findings"):
        return name
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-_")[:60] or "setting"
    return f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def _inside(out_dir: Path, file_name: str) -> Path:
    """``out_dir / file_name``, checked after resolving to stay directly inside ``out_dir``."""
    path = out_dir / file_name
    if path.resolve().parent != out_dir.resolve():
        raise SuiteError(f"leaderboard page {file_name!r} would land outside --out {out_dir}; not written")
    return path


def _href(path: str) -> str:
    """A relative link from a file path: every segment percent-encoded (``:`` too), so no part of a
    stored folder name can become a URL scheme such as ``javascript:``."""
    return "/".join(quote(part, safe="") for part in Path(path).as_posix().split("/"))


def _stored_setting(runs: pd.DataFrame):
    """A setting not in the registry (a TOML file), as its runs recorded it in config.json."""
    from suite.spec.settings import Setting

    for run in runs.get("run", []):  # a setting with latency records only has no runs
        try:
            config = json.loads((Path(run) / "config.json").read_text())
            # its ratios were checked against its model when it ran: not again for a page (the dry
            # surgery of every FLOPs target took 8 of a 26 s render of the published store)
            return Setting.from_dict(config.get("setting_definition") or config["setting"], against_model=False)
        except (OSError, KeyError, ValueError, SuiteError):
            continue
    return None


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("suite.pages", "templates"),
        autoescape=jinja2.select_autoescape(["html"], default=True),
        undefined=jinja2.StrictUndefined,
        finalize=_machine_independent,
    )
    env.globals["unreadable_count"] = unreadable_count  # the notice's heading, as the terminal words it
    return env


def _machine_independent(value):
    """A float printed raw (the sort keys in ``data-v`` attributes) with 12 significant digits: the
    statistics' BLAS kernels differ in the last bits between CPUs (an OLS slope on findings.html
    changed in its 17th digit between an AVX2 and an AVX-512 machine), and a page re-rendered from
    the same runs must be the same bytes anywhere. Displayed numbers are formatted shorter anyway."""
    return f"{value:.12g}" if isinstance(value, float) else value


def _unique_best(rows: list[dict], col: str) -> str | None:
    """The row that leads ``col`` (rounded as shown), or None when rows tie: a tie has no best."""
    shown = sorted((round(r[col], 2), r["method"]) for r in rows)
    if len(shown) > 1 and shown[-1][0] == shown[-2][0]:
        return None
    return shown[-1][1]


def target_latency(rows: list[dict]) -> dict | None:
    """One latency for a table: every method prunes a target to the same per-layer counts, so the
    rows time one architecture, and their differences are timing noise, not a ranking. The median
    of the rows' speedups, with the range their quartile intervals span, the device, and whether
    any row's timing was noisy (None: unstructured rows, whose dense latency is the baseline's)."""
    timed = [r for r in rows if r["latency_speedup"] == r["latency_speedup"]]
    if not timed:
        return None
    spans = [(r["latency_lo"], r["latency_hi"]) for r in timed if r["latency_lo"] == r["latency_lo"]]
    return {
        "speedup": statistics.median(r["latency_speedup"] for r in timed),
        "lo": min(lo for lo, _ in spans) if spans else None,
        "hi": max(hi for _, hi in spans) if spans else None,
        "noisy": any(r["latency_noisy"] is not False for r in timed),
        "device": timed[0]["latency_device"],
    }


def _leading(agg: pd.DataFrame, by: str) -> list:
    """The values of ``by`` (a baseline key, a precision) ordered by their runs of today's training
    code, then by all their runs: a page leads with its current edition, and the tables of an
    edition trained by older code follow it, however many runs it has."""
    counts = agg.assign(_current=agg.n.where(agg.current, 0)).groupby(by, sort=False)[["_current", "n"]].sum()
    return counts.sort_values(["_current", "n"], ascending=False, kind="stable").index.tolist()


def _target_tables(agg: pd.DataFrame, out_dir: Path, baseline_processors: dict | None = None) -> list[dict]:
    tables = []
    # filter targets from the mildest to the strongest pruning, then unstructured ones by sparsity,
    # each with the paper's protocol first
    order = agg.assign(_total=agg.protocol == "total").sort_values(
        ["granularity", "speedup", "sparsity", "ratios", "_total"], kind="stable"
    )
    # one table per baseline too: rows that started from different weights are not ranked together;
    # and per precision and layout (a --baseline file's runs in fp32 and bf16 share its key)
    rank = {key: i for i, key in enumerate(_leading(agg, "baseline_key"))}
    order = order.assign(_rank=order.baseline_key.map(rank)).sort_values("_rank", kind="stable")
    for _comparison, part in order.groupby("comparison", sort=False, dropna=False):  # one table per comparison
        first = part.iloc[0]
        key, numerics, granularity, ratios, skip, protocol = (
            first.baseline_key,
            first.numerics,
            first.granularity,
            first.ratios,
            first.skip,
            first.protocol,
        )
        part = part.sort_values("top1_mean", ascending=False)
        # the reference for "within noise" is the best row that has seeds enough to test (n >= 2)
        testable = part[part.n >= 2]
        best = testable.iloc[0] if not testable.empty else part.iloc[0]
        rows = []
        for r in part.itertuples():
            vs = None if r.Index == best.name else versus_best(best.top1_values, r.top1_values)
            rows.append(
                {
                    "method": r.label,
                    "top1": r.top1_mean,
                    "std": None if pd.isna(r.top1_std) else r.top1_std,  # one seed: no spread to show
                    "n": r.n,
                    "delta": r.delta,
                    "params": r.params,
                    "param_reduction": r.param_reduction,
                    "speedup": r.speedup,
                    "nonzero_params": r.nonzero_params,
                    "nonzero_reduction": r.nonzero_reduction,
                    "sparsity": r.sparsity,
                    "latency_speedup": r.latency_speedup,
                    "latency_device": r.latency_device,
                    "latency_lo": r.latency_lo,
                    "latency_hi": r.latency_hi,
                    "latency_noisy": r.latency_noisy,
                    "own_iters": int(r.own_iters or 0),
                    "finetune_epochs": r.finetune_epochs,
                    "samples": None if pd.isna(r.samples) else int(r.samples),
                    "samples_x_train": None if pd.isna(r.samples_x_train) else r.samples_x_train,
                    "train_macs": None if pd.isna(r.train_macs) else r.train_macs,
                    "capped": bool(r.capped),
                    "before": r.before_removal,
                    "after": r.after_removal,
                    "shown": _method_columns(part, r.Index, r.method),
                    "hparams": r.hparams,
                    "hparams_source": r.hparams_source,
                    "vs_best": vs,
                    "configs": [_href(os.path.relpath(Path(p) / "config.json", out_dir)) for p in r.runs],
                }
            )
        weights = granularity == "weight"  # masks leave FLOPs as they were: no speedup to lead
        marks = {"top1": _unique_best(rows, "top1"), "speedup": None if weights else _unique_best(rows, "speedup")}
        budget = None if first.budget_samples != first.budget_samples else first.budget_samples
        starts = table_starts(part)  # each run's log read once for both notes below
        tables.append(
            {
                "ratios": ratios,
                "skip": skip,
                "protocol": protocol,
                "rows": rows,
                "best": marks,
                "budget_samples": None if budget is None else int(budget),
                "unstructured": weights,
                "latency": None if weights else target_latency(rows),
                "latency_target": first.get("latency_target") or "",
                "round_to": int(first.get("round_to") or 1),
                "trained_on": trained_on(part.processors),
                "baseline_key": key,
                "numerics": numerics,
                "baseline_name": part.baseline_name.iloc[0],
                "baseline_top1": float(part.baseline_top1.iloc[0]),
                "baseline_processor": (baseline_processors or {}).get(key),
                "twins": twins(part, starts),  # rows that fine-tuned one pruned model: one result, not several
                "partly": partly(part, starts),  # ... on some of their seeds only
                # an edition of older training code only, or a legacy protocol: folded away on the page
                "older": not part.current.any() or protocol not in ("paper", "total"),
            }
        )
    return tables


def _method_columns(frame: pd.DataFrame, index, method: str) -> list[tuple[str, float]]:
    """(title, value) of the extra columns a row's method declares (``Method.columns``), where recorded."""
    from methods import registry

    if method not in registry.names():
        return []
    values = [
        (col.title, frame.at[index, f"m:{name}"])
        for name, col in registry.get(method).columns.items()
        if f"m:{name}" in frame.columns
    ]
    return [(title, float(v)) for title, v in values if v == v and v is not None]


def trained_on(processors) -> list[tuple[str, int]]:
    """The processors that pruned and fine-tuned a table's runs (one list per row), most runs first,
    with their run counts. Training is bit-exact on one CPU model only: a table that ran on two
    models says so, and a reader who retrains a row knows which machine gives its digits back."""
    counts = Counter(p for row in processors for p in row)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _baseline_processor(folder: Path) -> str | None:
    """The processor a stored baseline trained on (None for a user's --baseline file, or a baseline
    stored before it was recorded)."""
    meta = read_json_object(folder / "meta.json")
    if not meta.get("processor"):
        return None
    return " then ".join(machine_text(m) for m in meta.get("machines") or [meta])  # a resumed training: each, in order


def _timing(t: dict) -> dict:
    """One side (baseline or pruned) of a stored latency row, as a page shows it."""
    if t.get("error") is not None:
        return {"error": str(t["error"])}
    return {
        "error": None,
        "ms": float(t["median_ms"]),
        "iqr": float(t["q3_ms"]) - float(t["q1_ms"]),
        "converged": bool(t["converged"]),
    }


def _latency_record(rec: dict) -> dict:
    """A stored latency record (``suite latency --runs-dir``) as a page's table; raises KeyError,
    TypeError or ValueError when the file does not hold one."""
    rows = []
    for r in rec["rows"]:
        speedup = r.get("speedup")
        rows.append(
            {
                "runtime": str(r["runtime"]),
                "batch": int(r["batch"]),
                "baseline": _timing(r["baseline"]),
                "pruned": _timing(r["pruned"]),
                "speedup": None if speedup is None else float(speedup),
                "share": None if speedup is None else float(r["share_of_flops_speedup"]),
            }
        )
    view = {
        "ratios": str(rec["ratios"]),
        "flops_speedup": float(rec["flops_speedup"]),
        "rows": rows,
        "processor": machine_text(rec),
        "device": str(rec["device"]),
        "threads": int(rec["threads"]),
        "torch": str(rec["torch"]),
        "date": str(rec["measured_at"]),
        "layers": None,
        "rounding": None,
    }
    if rec.get("rounding"):  # suite latency --round-to 1,8,16,32: the alignment sweep, per runtime and batch
        flops_x = {int(v["round_to"]): float(v["flops_speedup"]) for v in rec["rounding"]}
        view["rounding"] = {
            "kept": {int(v["round_to"]): sorted(set(v["kept"].values())) for v in rec["rounding"]},
            "rows": [
                {
                    "runtime": str(r["runtime"]),
                    "batch": int(r["batch"]),
                    "round_to": n,
                    "flops_speedup": flops_x[n],
                    "pruned": _timing(v["pruned"]),
                    "speedup": None if v.get("speedup") is None else float(v["speedup"]),
                    "lo": v.get("speedup_ci_lo"),
                    "hi": v.get("speedup_ci_hi"),
                }
                for r in rec["rows"]
                for n, v in [(1, r), *((int(x["round_to"]), x) for x in r.get("rounded", []))]
            ],
        }
    if rec.get("layers"):
        prof = rec["layer_profile"]
        fwd = {k: float(prof["forward_ms"][k]) for k in ("baseline", "pruned")}
        layers = [
            {
                "layer": str(r["layer"]),
                "kind": str(r["kind"]),
                "baseline_ms": float(r["baseline_ms"] or 0.0),
                "pruned_ms": None if r["pruned_ms"] is None else float(r["pruned_ms"]),
            }
            for r in rec["layers"]
        ]
        top = top_layers(layers)
        view["layers"] = {
            "rows": top,
            "count": len(layers),
            "forward": fwd,
            "batch": int(prof["batch"]),
            "passes": int(prof["passes"]),
            "runtime": str(prof["runtime"]),
            "top_share": sum(r["baseline_ms"] for r in top) / fwd["baseline"],
            "all_share": sum(r["baseline_ms"] for r in layers) / fwd["baseline"],
        }
    return view


def latency_section(records: list[dict]) -> dict | None:
    """A setting's stored latency records (each one ``_latency_record`` reads: ``render`` names the
    others) as its page's "Latency by runtime" section: one table per record (a target measured on
    one machine), mildest target first, then oldest first; and the per-layer breakdown of the newest
    record of the strongest target that has one."""
    views = [_latency_record(rec) for rec in records]
    if not views:
        return None
    views.sort(key=lambda v: (v["flops_speedup"], v["ratios"], v["date"], v["processor"], v["threads"], v["torch"]))
    with_layers = [v for v in views if v["layers"]]
    strongest = max(with_layers, key=lambda v: (v["flops_speedup"], v["date"]), default=None)
    return {"tables": views, "breakdown": strongest}


def fill_commands(setting) -> list[str]:
    """The `suite run` lines that would fill a setting's page: its own target with every method,
    then each other target the paper reports."""
    base = ["suite", "run", "--setting", setting.name]
    data = ["--data-dir", "DIR"] if setting.dataset in ("cifar10", "cifar100", "imagenet") else []
    methods = ",".join(DEFAULT_COMPARISON)
    lines = [base + ["--methods", methods, "--seeds", "3"] + data]
    lines += [base + ["--ratios", t, "--methods", methods, "--seeds", "3"] + data for t in setting.targets]
    return [shlex.join(line) for line in lines]


@unchanging_code()  # the checkout does not change while its pages are written
def render(
    runs_dir: Path, out_dir: Path, include_capped: bool = False, unreadable: list[Unreadable] | None = None
) -> list[Path]:
    """Write index.html, one page (+ CSV) per setting that has runs or paper rows; return the paths.
    Stored runs that could not be read are named on index.html and on their setting's page, and
    appended to ``unreadable`` (when given) for the terminal.

    Pages depend on the stored runs only (their dates and code versions, not the clock or the
    checkout rendering them), so rendering committed runs again reproduces the committed pages.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    damaged: list[Unreadable] = []
    frame = load_runs(runs_dir, damaged)
    if not frame.empty:  # a result.json whose setting is not a name (null, a number) is no run
        named = frame.setting.map(lambda v: isinstance(v, str))
        damaged += [
            Unreadable(
                Path(run), f"result.json: its setting {json.dumps(v, default=str)[:40]} is not a name", listed=False
            )
            for run, v in zip(frame.run[~named], frame.setting[~named])
        ]
        frame = frame[named]
    timed: dict[str, list[dict]] = {}  # per setting, its stored latency records
    for path, rec in latency_records.load(runs_dir, damaged):
        try:  # one the page could not show is named, as a damaged run is, not dropped
            if not isinstance(rec.get("setting"), str):
                raise ValueError(f"its setting {json.dumps(rec.get('setting'), default=str)[:40]} is not a name")
            _latency_record(rec)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            damaged.append(latency_records.damaged(path, f"not a latency record ({type(e).__name__}: {e})"))
            continue
        timed.setdefault(rec["setting"], []).append(rec)
    searched = {  # per setting, its stored latency searches (suite run --target Nx-latency)
        folder.parent.name: latency_cuts.load_searches(runs_dir, folder.parent.name, damaged)
        for folder in sorted(Path(runs_dir).glob("*/latency-targets"))
    }
    if unreadable is not None:
        unreadable.extend(damaged)
    # named relative to the pages, as their config links are: re-rendered elsewhere, the same text
    notices = [
        {"setting": u.setting, "what": u.what, "path": os.path.relpath(u.folder, out_dir), "detail": u.detail}
        for u in damaged
    ]
    good = ranked(frame, include_capped)
    env = _env()
    stamp = _latest(good)
    written, index_rows = [], []
    published = paper_results()
    names = list(SETTINGS) + sorted(((set(good.setting) if not good.empty else set()) | set(timed)) - set(SETTINGS))
    # every setting with runs gets a page: the findings are those of the runs the pages show
    paged = good[good.setting.isin(names)] if not good.empty else good
    found = findings(paged)
    for name in names:
        runs = good[good.setting == name] if not good.empty else good
        setting = SETTINGS.get(name) or _stored_setting(runs)
        failed = frame[(frame.setting == name) & (frame.status == "failed")] if not frame.empty else frame
        paper = published["settings"].get(name)
        latency = latency_section(timed.get(name, []))
        if runs.empty and paper is None and setting is None and latency is None:
            continue
        agg = aggregate(runs) if not runs.empty else pd.DataFrame()
        stem = slug(name)
        csv_path = _inside(out_dir, f"{stem}.csv")
        if not agg.empty:
            table = agg.drop(columns=["runs", "top1_values", "hparams_apart"])
            table["processors"] = ["; ".join(f"{p} ({n})" for p, n in trained_on([v])) for v in agg.processors]
            write_atomic(csv_path, table.to_csv(index=False))
        first = runs.iloc[0] if not runs.empty else None
        commands = fill_commands(setting) if setting else []
        # the baselines this page's runs started from, the current edition first; the chart shows the first
        baselines = (
            agg.groupby("baseline_key", sort=False)
            .agg(name=("baseline_name", "first"), top1=("baseline_top1", "first"), runs=("n", "sum"))
            .loc[_leading(agg, "baseline_key")]
            .reset_index()
            .to_dict("records")
            if not agg.empty
            else []
        )
        for b in baselines:
            b["processor"] = _baseline_processor(Path(runs_dir) / "baselines" / name / b["baseline_key"])
        # the chart plots top-1 against FLOPs speedup: unstructured rows (masks, no FLOPs saved) stay in their tables
        main = (
            agg[
                (agg.protocol == "paper")
                & (agg.baseline_key == baselines[0]["baseline_key"])
                & (agg.granularity == "filter")
            ]
            if baselines
            else agg
        )
        if not main.empty:  # the chart too shows one precision, that baseline's leading one
            main = main[main.numerics == _leading(main, "numerics")[0]]
        precisions = sorted(set(agg.numerics)) if not agg.empty else []
        # today's code in one compact table across baselines (the index's), above each baseline's tables
        across = [t for t in best_matrix(runs) if t["today"]] if not runs.empty else []
        page = env.get_template("setting.html").render(
            name=name,
            setting=setting,
            overrides=changed_defaults(setting) if setting else {},
            paper=paper,
            paper_source=published["source"],
            stamp=_latest(runs),
            data_label=first.data_label if first is not None else (setting.dataset if setting else "?"),
            fingerprints=sorted(set(runs.data_fingerprint)) if not runs.empty else [],
            code_versions=_code_versions(runs),
            baselines=baselines,
            tables=_target_tables(agg, out_dir, {b["baseline_key"]: b["processor"] for b in baselines})
            if not agg.empty
            else [],
            precisions=precisions,
            chart_precision=main.numerics.iloc[0] if not main.empty else None,
            chart=svg_chart(main, baselines[0]["top1"] if baselines else None, paper),
            curves=budget_curves(agg),
            failed=failed.to_dict("records"),
            commands=commands,
            csv=_href(csv_path.name) if not agg.empty else None,
            latency=latency,
            cuts=latency_cuts.sections(agg, searched.get(name, []), timed.get(name, []), setting),
            matrix=across,
            summary=setting_summary(found, name),
            pages=None,
            unreadable=[u for u in notices if u["setting"] == name],
        )
        path = _inside(out_dir, f"{stem}.html")
        write_atomic(path, page)
        written.append(path)
        index_rows.append(
            {"name": name, "page": _href(path.name), "setting": setting, "runs": len(runs), "paper": paper is not None}
        )
    pages = {r["name"]: r["page"] for r in index_rows}
    variants = variant_rows(paged)
    described = variants_sentence(variants)
    found["summary"] += [described] if described else []
    findings_path = _inside(out_dir, "findings.html")
    write_atomic(
        findings_path,
        env.get_template("findings.html").render(
            **found, variants=variants, reports=_mechanism_reports(out_dir), pages=pages, stamp=stamp
        ),
    )
    index = env.get_template("index.html").render(
        rows=index_rows,
        stamp=stamp,
        unreadable=notices,
        summary=found["summary"],
        matrix=best_matrix(paged),
        pages=pages,
    )
    index_path = _inside(out_dir, "index.html")
    write_atomic(index_path, index)
    return [index_path, findings_path, *written]
