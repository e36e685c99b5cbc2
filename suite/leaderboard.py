"""Static leaderboard pages from stored runs: pandas aggregates, jinja2 pages, inline SVG charts.

Only finished, non-smoke runs evaluated on the test split appear as results (search trials are
scored on a validation split and trained on less data, so they are left out). Numbers reported
in the paper are shown beside ours, marked, and never ranked with them.
"""
from __future__ import annotations

import json
import math
import os
import shlex
from pathlib import Path

import jinja2
import pandas as pd
from scipy import stats

from suite.results import aggregate, load_runs
from suite.settings import SETTINGS
from suite.store import write_atomic

# GREG_SPEC.md, "Published numbers": Wang et al., ICLR 2021. (setting, ratios, method, speedup, top-1)
PAPER = "Wang et al., ICLR 2021 (Neural Pruning via Growing Regularization)"
PAPER_ROWS = {
    "cifar10-resnet56": {"baseline": 93.36, "rows": [
        ("Table 1", "l1", 1.99, 92.97), ("Table 1", "greg1", 1.99, 93.06),
        ("Table 1", "l1", 3.59, 91.88), ("Table 1", "greg1", 3.59, 92.23),
        ("Table 1", "l1", 11.41, 87.34), ("Table 1", "greg1", 11.41, 89.49),
        ("Table 1", "l1", 14.76, 87.31), ("Table 1", "greg1", 14.76, 88.39),
        ("Table 1", "l1", 19.31, 82.79), ("Table 1", "greg1", 19.31, 85.97),
        ("Table 2", "greg1", 2.55, 93.18), ("Table 2", "greg2", 2.55, 93.36)]},
    "cifar100-vgg19": {"baseline": 74.02, "rows": [
        ("Table 1", "l1", 3.60, 71.49), ("Table 1", "greg1", 3.60, 71.50),
        ("Table 1", "l1", 8.84, 66.05), ("Table 1", "greg1", 8.84, 67.35),
        ("Table 1", "l1", 17.30, 61.59), ("Table 1", "greg1", 17.30, 63.55),
        ("Table 1", "l1", 44.22, 51.36), ("Table 1", "greg1", 44.22, 57.09),
        ("Table 2", "greg1", 8.84, 67.55), ("Table 2", "greg2", 8.84, 67.75)]},
}


# ---------------------------------------------------------------------------- the data
def ranked(frame: pd.DataFrame) -> pd.DataFrame:
    """The runs that may be ranked: finished, not smoke, scored on the test split."""
    if frame.empty:
        return frame
    return frame[(frame.status == "done") & (frame.eval_split == "test")]


def within_noise(a: list[float], b: list[float], alpha: float = 0.05) -> bool | None:
    """Welch's t-test: True when the means are not distinguishable at ``alpha`` (None: too few seeds)."""
    if len(a) < 2 or len(b) < 2:
        return None
    if pd.Series(a).std() == 0 and pd.Series(b).std() == 0:
        return a[0] == b[0]
    return bool(stats.ttest_ind(a, b, equal_var=False).pvalue >= alpha)


# ---------------------------------------------------------------------------- the chart
def svg_chart(agg: pd.DataFrame, baseline: float | None, width: int = 560, height: int = 320) -> dict:
    """Coordinates for an inline SVG: top-1 vs FLOPs speedup, one series per row label, error bars."""
    if agg.empty:
        return {}
    xs = agg.speedup.tolist()
    lo_y = min((agg.top1_mean - agg.top1_std.fillna(0)).min(), baseline or math.inf)
    hi_y = max((agg.top1_mean + agg.top1_std.fillna(0)).max(), baseline or -math.inf)
    pad_y = max(0.5, (hi_y - lo_y) * 0.1)
    lo_y, hi_y = lo_y - pad_y, hi_y + pad_y
    lo_x, hi_x = 1.0, max(xs) * 1.1
    m = {"l": 56, "r": 16, "t": 16, "b": 40}

    def px(x):  # rounded: a tenth of a pixel is invisible, and re-rendered pages stay byte-stable
        return round(m["l"] + (x - lo_x) / (hi_x - lo_x) * (width - m["l"] - m["r"]), 1)

    def py(y):
        return round(height - m["b"] - (y - lo_y) / (hi_y - lo_y) * (height - m["t"] - m["b"]), 1)

    palette = ["#1b6ac9", "#d1495b", "#2a9d8f", "#e9a03b", "#6c4ab6", "#555555", "#8ab17d", "#b5651d"]
    series = []
    for i, (method, part) in enumerate(agg.sort_values("speedup").groupby("label", sort=False)):
        pts = [{"x": px(r.speedup), "y": py(r.top1_mean), "y0": py(r.top1_mean - (r.top1_std or 0)),
                "y1": py(r.top1_mean + (0 if pd.isna(r.top1_std) else r.top1_std)),
                "label": f"{method}: {r.top1_mean:.2f} at {r.speedup:.2f}x (n={r.n})"}
               for r in part.itertuples()]
        for p in pts:
            if math.isnan(p["y0"]):
                p["y0"] = p["y1"] = p["y"]
        series.append({"method": method, "color": palette[i % len(palette)], "points": pts,
                       "path": " ".join(f"{p['x']:.1f},{p['y']:.1f}" for p in pts)})
    ticks_y = [lo_y + k * (hi_y - lo_y) / 4 for k in range(5)]
    ticks_x = [lo_x + k * (hi_x - lo_x) / 4 for k in range(5)]
    return {"width": width, "height": height, "series": series, "m": m,
            "baseline_y": py(baseline) if baseline is not None else None,
            "yticks": [{"v": f"{v:.1f}", "y": py(v)} for v in ticks_y],
            "xticks": [{"v": f"{v:.1f}x", "x": px(v)} for v in ticks_x]}


# ---------------------------------------------------------------------------- rendering
def _latest(runs: pd.DataFrame) -> str:
    """When the newest of these runs finished (UTC), or "no runs"."""
    if runs.empty or runs.finished_at.isna().all():
        return "no runs"
    return str(runs.finished_at.dropna().max())


def _stored_setting(runs: pd.DataFrame):
    """A setting not in the registry (a TOML file), as its runs recorded it in config.json."""
    from suite.settings import Setting
    for run in runs.run:
        try:
            return Setting.from_dict(json.loads((Path(run) / "config.json").read_text())["setting"])
        except (OSError, KeyError, ValueError):
            continue
    return None


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("suite", "templates"),
                              autoescape=jinja2.select_autoescape(["html"], default=True),
                              undefined=jinja2.StrictUndefined)


def _unique_best(rows: list[dict], col: str) -> str | None:
    """The row that leads ``col`` (rounded as shown), or None when rows tie: a tie has no best."""
    shown = sorted((round(r[col], 2), r["method"]) for r in rows)
    if len(shown) > 1 and shown[-1][0] == shown[-2][0]:
        return None
    return shown[-1][1]


def _latency_best(rows: list[dict]) -> str | None:
    """The fastest row, only when its latency was measured cleanly (spread recorded, not noisy) and
    its quartile range clears the runner-up's: a lead inside the timing noise is no lead."""
    order = sorted(rows, key=lambda r: r["latency_speedup"], reverse=True)
    top = order[0]
    if top["latency_noisy"] is not False or math.isnan(top["latency_lo"]):
        return None
    if len(order) > 1:
        nxt = order[1]
        if math.isnan(nxt["latency_hi"]) or top["latency_lo"] <= nxt["latency_hi"]:
            return None
    return top["method"]


def _target_tables(agg: pd.DataFrame, out_dir: Path) -> list[dict]:
    tables = []
    # targets from the mildest to the strongest pruning, each with the paper's protocol first
    order = agg.assign(_total=agg.protocol == "total").sort_values(["speedup", "ratios", "_total"], kind="stable")
    # one table per baseline too: rows that started from different weights are not ranked together
    order = order.assign(_runs=order.groupby("baseline_key").n.transform("sum"))
    order = order.sort_values("_runs", ascending=False, kind="stable")  # the most-used baseline first
    for (key, ratios, skip, protocol), part in order.groupby(["baseline_key", "ratios", "skip", "protocol"],
                                                             sort=False, dropna=False):
        part = part.sort_values("top1_mean", ascending=False)
        # the reference for "within noise" is the best row that has seeds enough to test (n >= 2)
        testable = part[part.n >= 2]
        best = testable.iloc[0] if not testable.empty else part.iloc[0]
        rows = []
        for r in part.itertuples():
            noise = None if r.Index == best.name else within_noise(best.top1_values, r.top1_values)
            rows.append({
                "method": r.label, "top1": r.top1_mean, "std": None if pd.isna(r.top1_std) else r.top1_std,  # one seed: no spread to show
                "n": r.n, "delta": r.delta, "params": r.params, "param_reduction": r.param_reduction,
                "speedup": r.speedup, "latency_speedup": r.latency_speedup, "latency_device": r.latency_device,
                "latency_lo": r.latency_lo, "latency_hi": r.latency_hi, "latency_noisy": r.latency_noisy,
                "reg_iters": int(r.reg_iters or 0), "finetune_epochs": r.finetune_epochs,
                "before": r.before_removal, "after": r.after_removal, "mag_ratio": r.mag_ratio,
                "hparams": r.hparams, "hparams_source": r.hparams_source, "within_noise": noise,
                "configs": [os.path.relpath(Path(p) / "config.json", out_dir) for p in r.runs],
            })
        marks = {col: _unique_best(rows, col) for col in ("top1", "speedup")}
        marks["latency_speedup"] = _latency_best(rows)
        tables.append({"ratios": ratios, "skip": skip, "protocol": protocol, "rows": rows, "best": marks,
                       "baseline_key": key, "baseline_name": part.baseline_name.iloc[0],
                       "baseline_top1": float(part.baseline_top1.iloc[0])})
    return tables


def fill_commands(setting) -> list[str]:
    """The `suite run` lines that would fill a setting's page: its own target with every method,
    then each other target the paper reports (Table 1 compares L1 and GReg-1 there)."""
    base = ["suite", "run", "--setting", setting.name]
    data = ["--data-dir", "DIR"] if setting.dataset in ("cifar10", "cifar100", "imagenet") else []
    lines = [base + ["--methods", "greg1,greg2,l1", "--seeds", "3"] + data]
    lines += [base + ["--ratios", t, "--methods", "greg1,l1", "--seeds", "3"] + data for t in setting.targets]
    return [shlex.join(line) for line in lines]


def render(runs_dir: Path, out_dir: Path) -> list[Path]:
    """Write index.html, one page (+ CSV) per setting that has runs or paper rows; return the paths.

    Pages depend on the stored runs only (their dates and code versions, not the clock or the
    checkout rendering them), so rendering committed runs again reproduces the committed pages.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = load_runs(runs_dir)
    good = ranked(frame)
    env = _env()
    stamp = _latest(good)
    written, index_rows = [], []
    names = list(SETTINGS) + sorted(set(good.setting) - set(SETTINGS) if not good.empty else [])
    for name in names:
        runs = good[good.setting == name] if not good.empty else good
        setting = SETTINGS.get(name) or _stored_setting(runs)
        failed = frame[(frame.setting == name) & (frame.status == "failed")] if not frame.empty else frame
        paper = PAPER_ROWS.get(name)
        if runs.empty and paper is None and setting is None:
            continue
        agg = aggregate(runs) if not runs.empty else pd.DataFrame()
        csv_path = out_dir / f"{name}.csv"
        if not agg.empty:
            write_atomic(csv_path, agg.drop(columns=["runs", "top1_values"]).to_csv(index=False))
        first = runs.iloc[0] if not runs.empty else None
        commands = fill_commands(setting) if setting else []
        # the baselines this page's runs started from, most runs first; the chart shows the first
        baselines = (agg.groupby("baseline_key", sort=False)
                     .agg(name=("baseline_name", "first"), top1=("baseline_top1", "first"), runs=("n", "sum"))
                     .sort_values("runs", ascending=False, kind="stable").reset_index().to_dict("records")
                     if not agg.empty else [])
        main = agg[(agg.protocol == "paper") & (agg.baseline_key == baselines[0]["baseline_key"])] if baselines else agg
        page = env.get_template("setting.html").render(
            name=name, setting=setting, paper=paper, paper_source=PAPER, stamp=_latest(runs),
            data_label=first.data_label if first is not None else (setting.dataset if setting else "?"),
            fingerprints=sorted(set(runs.data_fingerprint)) if not runs.empty else [],
            code_versions=sorted(set(runs.code_version)) if not runs.empty else [],
            baselines=baselines, tables=_target_tables(agg, out_dir) if not agg.empty else [],
            chart=svg_chart(main, baselines[0]["top1"]) if baselines else {},
            failed=failed.to_dict("records"), commands=commands, csv=csv_path.name if not agg.empty else None)
        path = out_dir / f"{name}.html"
        write_atomic(path, page)
        written.append(path)
        best = (agg.sort_values("top1_mean", ascending=False).groupby("label", sort=False).head(1)
                if not agg.empty else pd.DataFrame())
        index_rows.append({"name": name, "page": path.name, "setting": setting, "runs": len(runs),
                           "paper": paper is not None, "best": best.to_dict("records")})
    index = env.get_template("index.html").render(rows=index_rows, stamp=stamp)
    write_atomic(out_dir / "index.html", index)
    return [out_dir / "index.html", *written]
