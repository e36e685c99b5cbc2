"""index.html's matrix of results: per setting, one row per method and one column per target and protocol.

A reader at the index wants today's answer, not every edition the store holds: the matrix shows
runs of today's training code only. A setting with none shows its newest edition (each method's
most recently trained code) and says so. Within that edition one starting point is shown (the
baseline and precision with the most runs: runs from different baselines are never averaged); its
other baselines, older editions, tuned entries and the legacy iteration-matched "total" runs stay on
the setting's page.
"""

from __future__ import annotations

import pandas as pd

from suite.pages.findings import comparisons, protocol_text
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


def _cell(r) -> str:
    spread = "" if pd.isna(r.top1_std) else f" ± {r.top1_std:.2f}"
    return f"{r.top1_mean:.2f}{spread} ({r.n})"


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
        start = (
            chosen.groupby(["baseline_key", "numerics"], sort=False)
            .size()
            .sort_values(ascending=False, kind="stable")
            .index[0]
        )
        chosen = chosen[(chosen.baseline_key == start[0]) & (chosen.numerics == start[1])]
        agg = aggregate(chosen)
        agg = agg.assign(_total=agg.protocol == "total").sort_values(
            ["granularity", "speedup", "sparsity", "ratios", "_total", "budget_samples"], kind="stable"
        )
        for granularity, block in agg.groupby("granularity", sort=False):
            columns, cells = [], {}
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
                for r in group.itertuples():  # a capped schedule (--include-capped) is a row of its own
                    cells.setdefault(r.method + (" [capped]" if r.capped else ""), {})[len(columns) - 1] = _cell(r)
            tables.append(
                {
                    "setting": setting,
                    "masks": granularity == "weight",
                    "columns": columns,
                    "methods": sorted(cells, key=lambda m: (-len(cells[m]), m)),
                    "cells": cells,
                    "today": today,
                    "baseline": chosen.baseline_name.iloc[0],
                    "numerics": start[1],
                    "newest": str(chosen.finished_at.max()),
                }
            )
    return tables
