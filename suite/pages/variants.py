"""A method's entries with hyperparameters of their own (a user's file, a tuned study) set beside the
same method's defaults (``findings.html``, after the claims).

The mechanism reports (``leaderboards/mechanism/``) found schedules under which a method's removal
costs almost nothing, and the campaigns run them through ``suite run --hparams FILE`` as entries of
their own ("<method> (own hparams)"). A reader wants to see, from the stored runs, what such a
schedule changed against the defaults on the same baselines and seeds: top-1, the points lost at
removal, the columns the method declares and the samples it spent. The paper claims nothing about these schedules, so they are described, not tested: no p value
and no part in the Holm family of the claims (adding them would move every claim's adjusted p). The
interval of the top-1 difference is scipy's, the same statistic as the claims': across baselines when
the pairs span several (the baseline is a random factor), else over the paired seeds of one baseline.
A pair is an entry's run and a default run of the same question, baseline and seed, started from the
same baseline weights.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from suite.pages.findings import (
    DEFAULT_SOURCES,
    QUESTION,
    across_baselines,
    comparison_groups,
    fair_runs,
    paired_test,
    protocol_text,
)
from suite.store.results import label


def _defining(method: str, hparams: dict) -> dict:
    """The hyperparameters that define a run of ``method`` (its presentation-only fields left out)."""
    from methods import registry

    return registry.get(method).defining_hparams(hparams) if method in registry.names() else hparams


def _value(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def changed_hparams(method: str, entry: str, default: str | None) -> str:
    """What an entry sets differently from its method's defaults in the setting ("<field> <value>
    (default <value>)"), from the runs' stored hyperparameters (JSON); every field when no default
    run says what the defaults were."""
    mine = _defining(method, json.loads(entry))
    if default is None:
        return ", ".join(f"{k} {_value(v)}" for k, v in sorted(mine.items())) + " (no default run to compare)"
    base = _defining(method, json.loads(default))
    changed = [
        f"{k} {_value(v)} (default {_value(base.get(k, '-'))})" for k, v in sorted(mine.items()) if base.get(k) != v
    ]
    return ", ".join(changed) or "the defaults' values"


def _mean(values) -> float | None:
    values = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(values) / len(values) if values else None


def _side(runs: pd.DataFrame, columns: list[str]) -> dict:
    """One side's means over its runs: top-1, accuracy before and after removal, points lost at
    removal, samples spent and the method's columns (``m:<name>``)."""
    out = {
        "n": len(runs),
        "top1": _mean(runs.top1),
        "before": _mean(runs.acc_before_removal),
        "after": _mean(runs.acc_after_removal),
        "lost": _mean(runs.acc_before_removal - runs.acc_after_removal),
        "samples": _mean(runs.samples),
    }
    return out | {c: _mean(runs[c]) if c in runs else None for c in columns}


def _columns(method: str) -> list[tuple[str, str]]:
    """(``m:<name>``, title) of the extra columns the method declares."""
    from methods import registry

    if method not in registry.names():
        return []
    return [(f"m:{name}", col.title) for name, col in registry.get(method).columns.items()]


def variant_rows(runs: pd.DataFrame) -> list[dict]:
    """One row per question (setting, precision, target, budget point, training-code edition) and
    entry with its own hyperparameters: the entry beside its method's default runs paired with it."""
    if runs.empty:
        return []
    runs = fair_runs(runs)
    own = ~runs.hparams_source.isin(DEFAULT_SOURCES)
    if not own.any():
        return []
    defaults = runs[~own].sort_values("finished_at")
    out = []
    for question, baselines in comparison_groups(runs, QUESTION):
        entries = pd.concat([part[~part.hparams_source.isin(DEFAULT_SOURCES)] for _, part in baselines])
        for (method, hparams, source), _ in entries.groupby(["method", "hparams", "hparams_source"], sort=True):
            columns = _columns(method)
            names = [c for c, _ in columns]
            mine, paired, per_baseline = [], [], []
            for base, part in baselines:
                entry = part[(part.method == method) & (part.hparams == hparams) & (part.hparams_source == source)]
                if entry.empty:
                    continue
                default = part[(part.method == method) & part.hparams_source.isin(DEFAULT_SOURCES)]
                matched = entry.merge(default, on="seed", suffixes=("", "_default"))
                matched = matched[matched.baseline_sha256.fillna("") == matched.baseline_sha256_default.fillna("")]
                mine.append(entry)
                paired.append(default[default.seed.isin(matched.seed)])
                diffs = (matched.top1 - matched.top1_default).tolist()
                per_baseline.append({"baseline_name": base["baseline_name"], "diffs": diffs, "matched": matched})
            with_pairs = [b for b in per_baseline if b["diffs"]]
            if len(with_pairs) > 1:
                test = across_baselines([sum(b["diffs"]) / len(b["diffs"]) for b in with_pairs])
            elif with_pairs:
                m = with_pairs[0]["matched"]
                test = paired_test(m.top1.tolist(), m.top1_default.tolist())
            else:
                test = None
            for b in per_baseline:
                del b["matched"]
            same_setting = defaults[(defaults.setting == question["setting"]) & (defaults.method == method)]
            out.append(
                question
                | {
                    "entry": label(method, source),
                    "method": method,
                    "source": source,
                    "changes": changed_hparams(
                        method, hparams, same_setting.hparams.iloc[-1] if not same_setting.empty else None
                    ),
                    "protocol_text": protocol_text(question["protocol"], question["budget_samples"]),
                    "columns": columns,
                    "own": _side(pd.concat(mine), names),
                    "default": _side(pd.concat(paired), names),  # n 0 and no values: no default run pairs
                    "pairs": sum(len(b["diffs"]) for b in per_baseline),
                    "baselines": per_baseline,
                    "test": test,
                }
            )
    return sorted(out, key=lambda r: (r["setting"], not r["current"], r["numerics"], r["entry"], r["protocol_text"]))


def sentence(rows: list[dict]) -> str | None:
    """The summary's line on today's entries that have default runs to pair with: each entry's top-1
    difference from its method's defaults, with its interval and the pairs behind it; None when
    there are none."""
    parts = []
    for r in rows:
        if not r["current"] or not r["pairs"]:
            continue
        t = r["test"]
        interval = f" [{t['lo']:+.2f}, {t['hi']:+.2f}]" if t["lo"] is not None else ""
        spread = sum(bool(b["diffs"]) for b in r["baselines"])
        lost = (r["own"]["lost"], r["default"]["lost"])
        removal = (
            f"; {r['method']} loses {lost[0]:.1f} points at removal with them, {lost[1]:.1f} with the defaults"
            if None not in lost
            else ""  # a method that removes nothing (masks) records no removal accuracy
        )
        parts.append(
            f"{r['entry']} at {r['setting']} {r['ratios']}, {r['protocol_text']}: {t['diff']:+.2f}{interval} points "
            f"against {r['method']}'s defaults ({r['pairs']} pair{'s' if r['pairs'] > 1 else ''} on "
            f"{spread} baseline{'s' if spread > 1 else ''}{removal})"
        )
    if not parts:
        return None
    return "Own schedules (described, not tested): " + "; ".join(parts) + "."
