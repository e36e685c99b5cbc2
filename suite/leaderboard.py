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
from pathlib import Path
from urllib.parse import quote

import jinja2
import pandas as pd
from scipy import stats

from suite.cli import DEFAULT_METHODS
from suite.errors import SuiteError
from suite.results import load_runs
from suite.settings import NAME_RE, SETTINGS
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
def ranked(frame: pd.DataFrame, include_capped: bool = False) -> pd.DataFrame:
    """The runs that may be ranked: finished, not smoke, scored on the test split, and (unless
    ``include_capped``) whose own training finished its schedule before the setting's cap."""
    if frame.empty:
        return frame
    keep = (frame.status == "done") & (frame.eval_split == "test")
    if not include_capped:
        keep &= ~frame.capped.astype(bool)
    return frame[keep]


def protocol_of(frame: pd.DataFrame) -> pd.Series:
    """The budget protocol as a page states it. ``total`` runs stored before samples were counted
    matched *iterations* across batch sizes (not equal): they are named so, never called equal."""
    legacy = (frame.protocol == "total") & frame.samples.isna()
    return frame.protocol.where(~legacy, "total-iterations (legacy, unequal samples)")


def current_code(frame: pd.DataFrame) -> pd.Series:
    """True where a run was trained by today's training code for its method."""
    from methods import registry
    from suite.fingerprint import training_code
    today = {m: training_code(type(registry.get(m))) for m in set(frame.method) if m in registry.names()}
    return pd.Series([today.get(m) == c for m, c in zip(frame.method, frame.training_code)], index=frame.index)


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and n over seeds per (setting, baseline, ratios, skip, protocol, method, hparams):
    runs that started from different baselines are never averaged together."""
    runs = runs.assign(protocol=protocol_of(runs), current=current_code(runs))
    keys = ["setting", "baseline_key", "ratios", "skip", "protocol", "method", "hparams", "hparams_source",
            "training_code", "current"]
    g = runs.groupby(keys, sort=False, dropna=False)
    out = g.agg(top1_mean=("top1", "mean"), top1_std=("top1", "std"), n=("top1", "size"),
                baseline_top1=("baseline_top1", "mean"), baseline_name=("baseline_name", "first"),
                params=("params", "mean"),
                baseline_params=("baseline_params", "mean"), speedup=("speedup", "mean"),
                latency_speedup=("latency_speedup", "mean"), latency_device=("latency_device", "first"),
                reg_iters=("reg_iters", "mean"), finetune_epochs=("finetune_epochs", "mean"),
                samples=("samples", "mean"), samples_x_train=("samples_x_train", "mean"),
                train_macs=("train_macs", "mean"), capped=("capped", "any"),
                before_removal=("acc_before_removal", "mean"), after_removal=("acc_after_removal", "mean"),
                mag_ratio=("mag_ratio", "mean"), runs=("run", list), top1_values=("top1", list)).reset_index()
    out["label"] = [label(m, src) + ("" if cur else " [older training code]") + (" [capped]" if cap else "")
                    for m, src, cur, cap in zip(out.method, out.hparams_source, out.current, out.capped)]
    out["delta"] = out.top1_mean - out.baseline_top1
    out["param_reduction"] = out.baseline_params / out.params
    return out


def label(method: str, hparams_source: str) -> str:
    """How a row is named: a method with tuned or user-given hyperparameters is another entry than
    the same method with its defaults, and must not share its row, its best mark or its series."""
    if not hparams_source or hparams_source == "default":
        return method
    return f"{method} (tuned)" if hparams_source.startswith("tuned") else f"{method} (own hparams)"


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


def slug(name: str) -> str:
    """A page's file name stem: the setting name when it is already a safe name (what the CLI
    accepts, so every page of a real run keeps its name), else the name with every other character
    replaced and a digest of the full name appended, so two hostile names never share a page. A
    stored run's name can be anything (a hand-edited result.json): it never reaches a path or URL."""
    if NAME_RE.fullmatch(name) and name.lower() != "index":
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
    from suite.settings import Setting
    for run in runs.run:
        try:
            config = json.loads((Path(run) / "config.json").read_text())
            return Setting.from_dict(config.get("setting_definition") or config["setting"])
        except (OSError, KeyError, ValueError, SuiteError):
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
                "reg_iters": int(r.reg_iters or 0), "finetune_epochs": r.finetune_epochs,
                "samples": None if pd.isna(r.samples) else int(r.samples),
                "samples_x_train": None if pd.isna(r.samples_x_train) else r.samples_x_train,
                "train_macs": None if pd.isna(r.train_macs) else r.train_macs, "capped": bool(r.capped),
                "before": r.before_removal, "after": r.after_removal, "mag_ratio": r.mag_ratio,
                "hparams": r.hparams, "hparams_source": r.hparams_source, "within_noise": noise,
                "configs": [_href(os.path.relpath(Path(p) / "config.json", out_dir)) for p in r.runs],
            })
        marks = {col: _unique_best(rows, col) for col in ("top1", "speedup", "latency_speedup")}
        tables.append({"ratios": ratios, "skip": skip, "protocol": protocol, "rows": rows, "best": marks,
                       "baseline_key": key, "baseline_name": part.baseline_name.iloc[0],
                       "baseline_top1": float(part.baseline_top1.iloc[0])})
    return tables


def fill_commands(setting) -> list[str]:
    """The `suite run` lines that would fill a setting's page: its own target with every method,
    then each other target the paper reports."""
    base = ["suite", "run", "--setting", setting.name]
    data = ["--data-dir", "DIR"] if setting.dataset in ("cifar10", "cifar100", "imagenet") else []
    lines = [base + ["--methods", DEFAULT_METHODS, "--seeds", "3"] + data]
    lines += [base + ["--ratios", t, "--methods", DEFAULT_METHODS, "--seeds", "3"] + data for t in setting.targets]
    return [shlex.join(line) for line in lines]


def render(runs_dir: Path, out_dir: Path, include_capped: bool = False) -> list[Path]:
    """Write index.html, one page (+ CSV) per setting that has runs or paper rows; return the paths.

    Pages depend on the stored runs only (their dates and code versions, not the clock or the
    checkout rendering them), so rendering committed runs again reproduces the committed pages.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = load_runs(runs_dir)
    if not frame.empty:  # a result.json whose setting is not a name (null, a number) is no run
        frame = frame[frame.setting.map(lambda v: isinstance(v, str))]
    good = ranked(frame, include_capped)
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
        stem = slug(name)
        csv_path = _inside(out_dir, f"{stem}.csv")
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
            failed=failed.to_dict("records"), commands=commands, csv=_href(csv_path.name) if not agg.empty else None)
        path = _inside(out_dir, f"{stem}.html")
        write_atomic(path, page)
        written.append(path)
        best = (agg.sort_values("top1_mean", ascending=False).groupby("label", sort=False).head(1)
                if not agg.empty else pd.DataFrame())
        index_rows.append({"name": name, "page": _href(path.name), "setting": setting, "runs": len(runs),
                           "paper": paper is not None, "best": best.to_dict("records")})
    index = env.get_template("index.html").render(rows=index_rows, stamp=stamp)
    index_path = _inside(out_dir, "index.html")
    write_atomic(index_path, index)
    return [index_path, *written]
