"""Stored runs as one pandas table, and the per-method summary ``suite run`` prints."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

COLUMNS = ["setting", "method", "seed", "status", "protocol", "ratios", "top1", "top5", "baseline_top1",
           "acc_before_removal", "acc_after_removal", "params", "flops", "speedup", "latency_speedup",
           "reg_iters", "finetune_epochs", "wall_seconds", "data_fingerprint", "code_version", "error", "run"]


def load_runs(runs_dir: Path) -> pd.DataFrame:
    """Every ``result.json`` under ``runs_dir`` (baselines excluded) as one row, unreadable files skipped."""
    rows = []
    for path in sorted(Path(runs_dir).glob("*/*/*/result.json")):
        try:
            r = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a reader never trusts a damaged file; writes are atomic, so this is rare
        budget = r.get("budget", {})
        rows.append({**{k: r.get(k) for k in COLUMNS}, "reg_iters": budget.get("reg_iters"),
                     "finetune_epochs": budget.get("finetune_epochs"), "run": str(path.parent)})
    return pd.DataFrame(rows, columns=COLUMNS)


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (setting, protocol, ratios, method): top-1 mean, std and n over seeds, and sizes."""
    ok = frame[frame.status.isin(["done", "smoke"])]
    if ok.empty:
        return pd.DataFrame()
    g = ok.groupby(["setting", "ratios", "protocol", "method"], sort=False)
    out = g.agg(top1_mean=("top1", "mean"), top1_std=("top1", "std"), n=("top1", "size"),
                baseline_top1=("baseline_top1", "mean"), params=("params", "mean"),
                speedup=("speedup", "mean"), latency_speedup=("latency_speedup", "mean"),
                reg_iters=("reg_iters", "mean"), finetune_epochs=("finetune_epochs", "mean"),
                before_removal=("acc_before_removal", "mean"), after_removal=("acc_after_removal", "mean"))
    out["delta"] = out.top1_mean - out.baseline_top1
    return out.reset_index()


def format_summary(summary: pd.DataFrame) -> str:
    """The table printed at the end of ``suite run``."""
    if summary.empty:
        return "no finished runs"
    lines = []
    for (setting, ratios, protocol), part in summary.groupby(["setting", "ratios", "protocol"], sort=False):
        base = part.baseline_top1.iloc[0]
        lines.append(f"{setting}  ratios {ratios}  budget protocol: {protocol}  baseline top-1 {base:.2f}")
        table = pd.DataFrame({
            "method": part.method,
            "top-1": [f"{m:.2f} +- {0 if pd.isna(s) else s:.2f} (n={n})"
                      for m, s, n in zip(part.top1_mean, part.top1_std, part.n)],
            "vs base": part.delta.map(lambda d: f"{d:+.2f}"),
            "before/after removal": [f"{b:.1f} / {a:.1f}" for b, a in zip(part.before_removal, part.after_removal)],
            "params": part.params.map(lambda p: f"{p / 1e6:.3f}M"),
            "FLOPs speedup": part.speedup.map(lambda x: f"{x:.2f}x"),
            "latency speedup": part.latency_speedup.map(lambda x: f"{x:.2f}x"),
            "budget": [f"reg {int(r)} it + ft {e:.1f} ep" for r, e in zip(part.reg_iters, part.finetune_epochs)],
        })
        lines.append(table.to_string(index=False))
        lines.append("")
    return "\n".join(lines).rstrip()
