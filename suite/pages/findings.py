"""The paper's claims, each set against every comparison the store holds (``findings.html``).

A comparison is one table of a setting's page: one setting, baseline, precision, target, budget
protocol and edition of the training code (runs of older code are compared among themselves, never
with today's, and say so). Only each method's default hyperparameters enter (a tuned entry is
another entry), and only the two fair protocols (the paper's, and equal total training in
samples): the legacy "total" runs matched iterations across batch sizes, which is no equal budget. For every claim and comparison where both sides have runs: our difference in
points, each side's mean +- std (n), and Welch's p (scipy; none below two runs a side). Nothing here
is typed by hand; a claim no comparison can test says why.
"""
from __future__ import annotations

import pandas as pd
from scipy import stats

from methods.claims import CLAIMS, GAP, Claim
from suite.store.results import current_code, protocol_of

# The columns that make one comparison (one table of a setting's page): masks (weight granularity)
# at the same ratio are another table, and their unchanged FLOPs never enter a filter row's speedup.
COMPARISON = ["setting", "baseline_name", "baseline_key", "numerics", "granularity", "ratios", "skip", "protocol",
              "current"]


def welch(a: list[float], b: list[float]) -> float | None:
    """Welch's two-sided p, None with fewer than two runs on a side (or no spread on either).

    One side without spread is common: L1 removes the same filters of the same baseline whatever the
    seed, so its points lost at removal repeat exactly. Welch's test is then the one-sample t-test of
    the other side against that constant (t over the other side's standard error, n - 1 degrees of
    freedom); it is computed as such because scipy's variance of identical floats is rounding noise
    and warns of catastrophic cancellation on every page render."""
    flat_a, flat_b = len(set(a)) == 1, len(set(b)) == 1
    if len(a) < 2 or len(b) < 2 or (flat_a and flat_b):
        return None
    if flat_a or flat_b:
        spread, constant = (b, a[0]) if flat_a else (a, b[0])
        return float(stats.ttest_1samp(spread, constant).pvalue)
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _side(part: pd.DataFrame, method: str, measure: str) -> list[float]:
    rows = part[part.method == method]
    if measure == "top1":
        return rows.top1.tolist()
    return (rows.acc_before_removal - rows.acc_after_removal).dropna().tolist()


def _summary(values: list[float]) -> dict:
    s = pd.Series(values, dtype=float)
    return {"mean": float(s.mean()), "std": float(s.std()) if len(s) > 1 else None, "n": len(s)}


def comparisons(runs: pd.DataFrame) -> pd.DataFrame:
    """The ranked runs with their comparison columns, default hyperparameters only."""
    if runs.empty:
        return runs
    runs = runs[runs.hparams_source.isin(["", "default"])]
    runs = runs.assign(protocol=protocol_of(runs), current=current_code(runs))
    return runs[runs.protocol.isin(["paper", "total"])]


def claim_rows(runs: pd.DataFrame, claim: Claim) -> list[dict]:
    """One row per comparison holding both of the claim's methods: the difference (a - b for
    accuracy, b - a for the points lost at removal: positive means the paper is right), Welch's p,
    and for the removal claim GReg's smallest kept/pruned magnitude ratio at removal."""
    out = []
    for key, part in runs.groupby(COMPARISON, sort=False, dropna=False):
        a, b = _side(part, claim.a, claim.measure), _side(part, claim.b, claim.measure)
        if not a or not b:
            continue
        sa, sb = _summary(a), _summary(b)
        diff = sa["mean"] - sb["mean"] if claim.measure == "top1" else sb["mean"] - sa["mean"]
        p = welch(a, b)
        row = dict(zip(COMPARISON, key)) | {"speedup": float(part.speedup.mean()), "a": sa, "b": sb, "diff": diff,
                                            "p": p, "verdict": _verdict(diff, p)}
        if claim.measure == "removal":
            ratios = part[part.method == claim.a].mag_ratio.dropna()
            row["mag_ratio"] = float(ratios.mean()) if not ratios.empty else None
        out.append(row)
    return sorted(out, key=lambda r: (r["setting"], not r["current"], r["baseline_name"], r["numerics"],
                                      r["protocol"], r["speedup"]))


def _verdict(diff: float, p: float | None) -> str:
    if p is None:
        return "too few runs to test"
    if p >= 0.05:
        return "within noise"
    return "as the paper says" if diff > 0 else "against the paper"


def gap_rows(rows: list[dict]) -> list[dict]:
    """From one claim's rows (GAP's): per series (setting, baseline, precision, protocol, edition) with two
    or more targets, the gaps from the mildest to the strongest target and whether they grow ("yes", "no",
    or which targets have too few runs to say)."""
    series_keys = [k for k in COMPARISON if k not in ("ratios", "skip")]
    series: dict[tuple, list[dict]] = {}
    for r in rows:
        series.setdefault(tuple(r[k] for k in series_keys), []).append(r)
    out = []
    for key, part in series.items():
        if len(part) < 2:
            continue
        part = sorted(part, key=lambda r: r["speedup"])
        # A target with one run a side has no spread, so its gap says nothing yet: no verdict until it has two.
        thin = [str(r["ratios"]) for r in part if r["p"] is None]
        if thin:
            grows = "too few runs at " + ", ".join(thin) + " to say"
        else:
            gaps = [r["diff"] for r in part]
            grows = "yes" if all(later > earlier for earlier, later in zip(gaps, gaps[1:])) else "no"
        out.append(dict(zip(series_keys, key))
                   | {"steps": [(r["ratios"], r["speedup"], r["diff"], r["p"]) for r in part], "grows": grows})
    return out


def findings(runs: pd.DataFrame) -> dict:
    """Everything findings.html shows, from the ranked runs of every setting."""
    runs = comparisons(runs)
    claims = []
    for claim in CLAIMS:
        rows = claim_rows(runs, claim) if not runs.empty else []
        claims.append({"claim": claim, "rows": rows,
                       "untested": None if rows else f"no comparison holds runs of both {claim.a} and {claim.b}"})
    gaps = gap_rows(claim_rows(runs, GAP)) if not runs.empty else []
    return {"claims": claims, "gap": {"claim": GAP, "rows": gaps,
                                      "untested": None if gaps else f"no setting has {GAP.a} and {GAP.b} at two or "
                                                                    f"more targets under one baseline, precision and protocol"}}
