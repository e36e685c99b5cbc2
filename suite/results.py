"""Stored runs as one pandas table, and the per-method summary ``suite run`` prints."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

# What `suite results` prints by default (the frame holds more).
TABLE_COLUMNS = ["setting", "method", "seed", "status", "protocol", "ratios", "eval_split", "top1",
                 "baseline_top1", "acc_before_removal", "acc_after_removal", "params", "speedup",
                 "latency_speedup", "reg_iters", "finetune_epochs", "samples", "train_macs", "capped",
                 "training_code", "hparams_source", "error"]


def load_runs(runs_dir: Path) -> pd.DataFrame:
    """Every ``result.json`` under ``runs_dir`` (baselines excluded) as one row; unreadable files
    are skipped (writes are atomic, so a damaged file means someone edited it)."""
    rows = []
    for path in sorted(Path(runs_dir).glob("*/*/*/result.json")):
        try:
            r = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        b = r.get("budget", {})
        lat = r.get("latency", {}).get("batch64", {})
        rows.append({
            "setting": r.get("setting"), "method": r.get("method"), "seed": r.get("seed"),
            "status": r.get("status"), "error": r.get("error", ""), "ratios": r.get("ratios"),
            "skip": r.get("skip", ""), "protocol": r.get("protocol", "paper"),
            "eval_split": r.get("eval_split", "test"), "top1": r.get("top1"),
            "baseline_top1": r.get("baseline_top1"), "baseline_key": r.get("baseline_key", ""),
            "baseline_name": baseline_name(r),
            "params": r.get("params"),
            "baseline_params": r.get("baseline_params"), "flops": r.get("flops"), "speedup": r.get("speedup"),
            "latency_speedup": r.get("latency_speedup"), "latency_device": lat.get("device"),
            "acc_before_removal": r.get("acc_before_removal"), "acc_after_removal": r.get("acc_after_removal"),
            "reg_iters": b.get("reg_iters"), "finetune_epochs": b.get("finetune_epochs"),
            "samples": b.get("samples"), "samples_x_train": b.get("samples_x_train"),
            "train_macs": b.get("train_macs"), "capped": _capped(r),
            "training_code": r.get("training_code") or "unrecorded",
            "hparams": json.dumps(r.get("hparams", {}), sort_keys=True), "hparams_source": r.get("hparams_source", ""),
            "data_label": r.get("data_label"), "data_fingerprint": r.get("data_fingerprint"),
            "code_version": r.get("code_version"), "reduced": r.get("reduced_budget"),
            "mag_ratio": _min_ratio(r), "finished_at": r.get("finished_at"), "run": str(path.parent),
        })
    return pd.DataFrame(rows)


def baseline_name(r: dict) -> str:
    """How a run's starting point is named to a reader: the trained baseline's seed (runs stored
    before baseline_seed was recorded all used seed 0), or an own --baseline file's digest."""
    key = r.get("baseline_key", "")
    return f"own baseline {key[5:13]}" if key.startswith("user-") else f"baseline seed {r.get('baseline_seed', 0)}"


def _capped(r: dict) -> bool:
    """The method's own training stopped at the setting's cap before its schedule was done (runs
    stored before the harness recorded it: the method's own ``capped_before_done`` flag)."""
    b = r.get("budget", {})
    return bool(b.get("capped", r.get("method_info", {}).get("capped_before_done", False)))


def _min_ratio(r: dict):
    ratios = [v for v in (r.get("method_info", {}).get("mag_ratio") or {}).values() if v is not None]
    return min(ratios) if ratios else None


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
            "top-1": [_mean_spread(m, s, n) for m, s, n in zip(part.top1_mean, part.top1_std, part.n)],
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


def _mean_spread(mean: float, std: float, n: int) -> str:
    """``mean +- std (n=N)``; one seed has no spread, so none is shown (a ``+- 0.00`` would claim one)."""
    return f"{mean:.2f} (n={n})" if n < 2 else f"{mean:.2f} +- {std:.2f} (n={n})"
