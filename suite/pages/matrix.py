"""index.html's matrix of results: per setting, one row per method and one column per target and protocol
(a setting page shows its own, of today's code, above each baseline's tables).

A reader at the index wants today's answer, not every edition the store holds: the matrix shows
runs of today's training code only. A setting with none shows its newest edition (each method's
most recently trained code) and says so. Within that edition one precision is shown (the one with
the most runs: a comparison is internal to one precision). Baselines vary more than seeds, so the
baseline is a random factor (as on findings.html): a column averages over the baselines every
method in it has runs on, each baseline weighted once (the mean of the per-baseline means, their
standard deviation across baselines beside it), so no method's number rests on a baseline another
method's lacks; where the methods share no baseline, the column shows the baseline most of them
have, and only them. Older editions, tuned entries and the legacy iteration-matched "total" runs stay
on the setting's page.
"""

from __future__ import annotations

import re

import pandas as pd

from suite.pages.findings import comparisons, natural, protocol_text
from suite.pages.twins import twins
from suite.store.results import aggregate


def edition(runs: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """One setting's runs of today's training code (True), or, when it has none, each method's runs
    of the code its newest run was trained by (False)."""
    current = runs[runs.current]
    if not current.empty:
        return current, True
    newest = runs.sort_values("finished_at", kind="stable").drop_duplicates("method", keep="last")
    code = dict(zip(newest.method, newest.training_code))
    return runs[runs.training_code == runs.method.map(code)], False


def _cell(rows: pd.DataFrame) -> str:
    """One method's cell from its per-baseline rows (``aggregate``'s): over one baseline, mean ± std
    over seeds (n); over several, the mean of the baseline means ± their std (runs; baselines)."""
    if rows.baseline_key.nunique() == 1:
        (r,) = rows.itertuples()
        spread = "" if pd.isna(r.top1_std) else f" ± {r.top1_std:.2f}"
        return f"{r.top1_mean:.2f}{spread} ({r.n})"
    means = rows.top1_mean
    return f"{means.mean():.2f} ± {means.std():.2f} ({rows.n.sum()} runs; {rows.baseline_key.nunique()} baselines)"


def shared_baselines(point: pd.DataFrame, order: list, by: str) -> list:
    """The baselines every method (rows grouped by the column ``by``) of one column or budget point
    has runs on; if none, the one most of them have (ties: the first in ``order``, the setting's
    baselines by seed). The index's matrix and the setting pages' across-baseline curve use it."""
    per_method = [set(g.baseline_key) for _, g in point.groupby(by, sort=False)]
    shared = set.intersection(*per_method)
    if not shared:
        counts = point.groupby("baseline_key").size()
        shared = {max(order, key=lambda b: (counts.get(b, 0), -order.index(b)))}
    return [b for b in order if b in shared]


def best_matrix(runs: pd.DataFrame) -> list[dict]:
    """The matrix, as one small table per setting and granularity (filter targets, then masks: no
    method prunes both ways, so one table for both would be half empty): its ``columns`` (target and
    protocol, mildest first, the paper's protocol first), ``methods`` (rows: most columns filled first),
    ``cells`` ({method: {column index: text}}), and which edition and starting point it shows."""
    runs = comparisons(runs)
    tables = []
    if runs.empty:
        return tables
    for setting, part in runs.groupby("setting", sort=True):
        chosen, today = edition(part)
        numerics = chosen.groupby("numerics", sort=False).size().sort_values(ascending=False, kind="stable").index[0]
        chosen = chosen[chosen.numerics == numerics]
        names = dict(zip(chosen.baseline_key, chosen.baseline_name))
        order = baseline_order(names)
        agg = aggregate(chosen)
        # a capped schedule (--include-capped) is a row of its own, as are a setting's changed overrides
        agg = agg.assign(
            _row=[m + a + (" [capped]" if c else "") for m, a, c in zip(agg.method, agg.hparams_apart, agg.capped)]
        )
        agg = agg.assign(_total=agg.protocol == "total").sort_values(
            ["granularity", "speedup", "sparsity", "ratios", "_total", "budget_samples"], kind="stable"
        )
        for granularity, block in agg.groupby("granularity", sort=False):
            columns, cells, used, same = [], {}, set(), {}
            for (ratios, skip, protocol, samples), group in block.groupby(
                ["ratios", "skip", "protocol", "budget_samples"], sort=False, dropna=False
            ):
                size = (
                    f"{100 * group.sparsity.mean():.0f} % sparse"
                    if granularity == "weight"
                    else f"{group.speedup.mean():.2f}x"
                )
                columns.append(
                    {
                        "target": f"{ratios}{' skip ' + skip if skip else ''}",
                        "size": size,
                        "protocol": protocol_text(protocol, samples),
                    }
                )
                shared = shared_baselines(group, order, "_row")
                used.update(shared)
                kept = group[group.baseline_key.isin(shared)]
                for row, rows in kept.groupby("_row", sort=False):
                    cells.setdefault(row, {})[len(columns) - 1] = _cell(rows)
                for row, first in same_model(kept).items():
                    same.setdefault(row, {})[len(columns) - 1] = first
            tables.append(
                {
                    "setting": setting,
                    "masks": granularity == "weight",
                    "columns": columns,
                    "methods": sorted(cells, key=lambda m: (-len(cells[m]), m)),
                    "cells": cells,
                    "same": same,
                    "today": today,
                    "baseline": baselines_text([names[b] for b in order if b in used]),
                    "baseline_count": len(used),
                    "numerics": numerics,
                    "newest": str(chosen.finished_at.max()),
                }
            )
    return tables


def same_model(rows: pd.DataFrame) -> dict[str, str]:
    """The rows of one column (``aggregate``'s, over its baselines) that fine-tuned one pruned model
    with another row on every baseline both have runs on (``suite.pages.twins``), each mapped to the
    first of its group by name: the cell says so, as the setting page does under its table."""
    pairs: dict[frozenset, list[bool]] = {}
    for _, part in rows.groupby("comparison", sort=False):
        part = part.assign(label=part._row)
        grouped = [set(g["labels"]) for g in twins(part)]
        for a_i, a in enumerate(part._row):
            for b in list(part._row)[a_i + 1 :]:
                pairs.setdefault(frozenset((a, b)), []).append(any({a, b} <= g for g in grouped))
    out = {}
    for pair, verdicts in pairs.items():
        if all(verdicts):
            first, other = sorted(pair)
            out[other] = min(first, out.get(other, first))
    return out


def baselines_text(names: list[str]) -> str:
    """ "baseline seed 1", or "baseline seeds 0, 1, 2" (an own baseline file keeps its own name)."""
    seeds = [re.fullmatch(r"baseline seed (\d+)", n) for n in names]
    if len(names) > 1 and all(seeds):
        return "baseline seeds " + ", ".join(m[1] for m in seeds)
    return "; ".join(names)


def baseline_order(names: dict) -> list:
    """Baseline keys by their names' natural order: seed 2 before seed 10; own baseline files after."""

    return sorted(names, key=lambda b: natural(names[b]))
