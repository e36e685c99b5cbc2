"""The paper's claims, each set against every comparison the store holds (``findings.html``).

A claim is tested on a *question*: one setting, precision, granularity, target, budget protocol and
edition of the training code (runs of older code are compared among themselves, never with
today's). Only each method's default hyperparameters enter (a tuned entry is another entry), and
only the two fair protocols (the paper's, and equal total training in samples): the legacy "total"
runs matched iterations across batch sizes, which is no equal budget.

The statistics follow the design of the runs, and scipy and statsmodels compute all of them:

- Within one baseline, runs of two methods with the same seed start from the same weights and
  fine-tune on the same batch order (the data streams are a function of purpose and seed), so they
  are *pairs*: where every seed pairs, the paired t-test (``ttest_rel``) and its 95 % interval of
  the mean difference; where they do not, Welch's test (``ttest_ind(equal_var=False)``).
- The baseline is a random factor: baselines differ more than seeds do, so a question with runs on
  several baselines is decided by a one-sample t-test on the per-baseline mean differences (n = the
  number of baselines); a question with one baseline says that its verdict is about that baseline.
- Every p on the page is adjusted with Holm's method over all the page's tests together, and every
  test states the smallest difference it could detect at 80 % power and alpha 0.05 (statsmodels'
  power classes, at the observed spread), so "not significant" is never read as "no difference".
- "The gap grows with the ratio" is a regression of the per-seed differences on the target's FLOPs
  speedup (statsmodels OLS), tested on its slope, not read off point estimates.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower

from methods.claims import CLAIMS, GAP, Claim
from suite.store.results import current_code, protocol_of

ALPHA, POWER = 0.05, 0.8
# What one question is: the columns that, with the baseline, make one table of a setting's page.
QUESTION = ["setting", "numerics", "granularity", "ratios", "skip", "protocol", "budget_samples", "current"]
# The random factor inside a question: the trained starting point.
BASELINE = ["baseline_key", "baseline_name"]
ONE_BASELINE = "one baseline: a verdict about this baseline, not the setting"
SAME_REMOVAL = " (the same runs' removal: it comes before fine-tuning)"


def protocol_text(protocol: str, samples) -> str:
    """A budget protocol as a page names it: ``paper``, or ``total`` with the samples every row got
    (one point of a budget curve)."""
    return f"{protocol}, {int(samples):,} samples" if protocol == "total" and pd.notna(samples) else protocol


def natural(name: str) -> tuple:
    """A baseline name's natural order: "baseline seed 2" before "baseline seed 10"; own files after."""
    return tuple((0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", name))


def comparison_groups(runs: pd.DataFrame, question: list[str] = QUESTION):
    """The grouping every test on the page follows, in this one place: per question (``question``'s
    columns), a dict of its key and the list of (baseline key dict, runs) it holds, baselines in
    their names' natural order (seed 0, 1, 2), as a reader counts them."""
    for key, part in runs.groupby(question, sort=False, dropna=False):  # NaN (no budget point) as None: equal to itself
        baselines = [(dict(zip(BASELINE, b)), bpart) for b, bpart in part.groupby(BASELINE, sort=False, dropna=False)]
        yield (
            dict(zip(question, (None if pd.isna(v) else v for v in key))),
            sorted(baselines, key=lambda b: natural(str(b[0]["baseline_name"]))),
        )


# ---------------------------------------------------------------------------- the tests
def _flat(values) -> bool:
    """No spread: identical values (L1 cuts the same filters of one baseline whatever the seed, so its
    points lost at removal repeat exactly)."""
    return len(set(values)) == 1


def _untested(name: str, n: str, diff: float, why: str) -> dict:
    return {"test": name, "n": n, "diff": diff, "lo": None, "hi": None, "p": None, "detectable": None, "why": why}


def _tested(name: str, n: str, diff: float, ci, p: float, detectable: float) -> dict:
    return {
        "test": name,
        "n": n,
        "diff": float(diff),
        "lo": float(ci[0]),
        "hi": float(ci[1]),
        "p": float(p),
        "detectable": float(detectable),
        "why": None,
    }


def _detectable_paired(sd: float, n: int) -> float:
    """The smallest mean difference a one-sample (or paired) t-test of n values with standard deviation
    ``sd`` detects at POWER and ALPHA, two-sided: statsmodels' effect size times the SD."""
    return float(TTestPower().solve_power(effect_size=None, nobs=n, alpha=ALPHA, power=POWER)) * sd


def paired_test(a: list[float], b: list[float]) -> dict:
    """a - b over pairs (same baseline, same seed): ``ttest_rel``, its 95 % interval of the mean
    difference, and the smallest difference detectable at the observed SD of the differences."""
    d = np.subtract(a, b)
    name, n = "paired t", f"n={len(d)}"
    if len(d) < 2:
        return _untested(name, n, float(d.mean()), "one pair: too few runs to test")
    if _flat(np.round(d, 9)):  # identical differences: no spread, no t
        return _untested(name, n, float(d.mean()), "the differences have no spread: no test")
    r = stats.ttest_rel(a, b)
    return _tested(
        name,
        n,
        d.mean(),
        r.confidence_interval(1 - ALPHA),
        r.pvalue,
        _detectable_paired(float(np.std(d, ddof=1)), len(d)),
    )


def welch_test(a: list[float], b: list[float]) -> dict:
    """a - b over unpaired runs: Welch's ``ttest_ind(equal_var=False)`` with its 95 % interval, and the
    smallest difference ``TTestIndPower`` detects at the pooled SD of the two sides.

    One side without spread is common (see ``_flat``): Welch's test is then the one-sample t-test of
    the other side against that constant, computed as such because scipy's variance of identical
    floats is rounding noise and warns of catastrophic cancellation on every page render."""
    name, n = "Welch t", f"n={len(a)} vs {len(b)}"
    diff = float(np.mean(a) - np.mean(b))
    if len(a) < 2 or len(b) < 2:
        return _untested(name, n, diff, "fewer than two runs a side: too few runs to test")
    if _flat(a) and _flat(b):
        return _untested(name, n, diff, "no spread on either side: no test")
    if _flat(a) or _flat(b):
        spread, constant = (b, a[0]) if _flat(a) else (a, b[0])
        r = stats.ttest_1samp(spread, constant)
        lo, hi = r.confidence_interval(1 - ALPHA)
        ci = (constant - hi, constant - lo) if _flat(a) else (lo - constant, hi - constant)
    else:
        r = stats.ttest_ind(a, b, equal_var=False)
        ci = r.confidence_interval(1 - ALPHA)
    var = [0.0 if _flat(x) else float(np.var(x, ddof=1)) for x in (a, b)]
    pooled = math.sqrt(((len(a) - 1) * var[0] + (len(b) - 1) * var[1]) / (len(a) + len(b) - 2))
    effect = TTestIndPower().solve_power(
        effect_size=None, nobs1=len(a), ratio=len(b) / len(a), alpha=ALPHA, power=POWER
    )
    return _tested(name, n, diff, ci, r.pvalue, float(effect) * pooled)


def across_baselines(diffs: list[float]) -> dict:
    """The baseline as a random factor: a one-sample t-test of the per-baseline mean differences
    against 0 (n = the number of baselines), its 95 % interval and detectable difference."""
    name, n = "one-sample t across baselines", f"n={len(diffs)} baselines"
    mean = float(np.mean(diffs))
    if _flat(np.round(diffs, 9)):
        return _untested(name, n, mean, "the baselines' differences have no spread: no test")
    r = stats.ttest_1samp(diffs, 0.0)
    return _tested(
        name,
        n,
        mean,
        r.confidence_interval(1 - ALPHA),
        r.pvalue,
        _detectable_paired(float(np.std(diffs, ddof=1)), len(diffs)),
    )


def slope_test(x: list[float], y: list[float], a_side: list[bool] | None = None) -> dict:
    """How a - b changes per 1x of FLOPs speedup, by OLS (statsmodels): with ``a_side`` None, ``y``
    are paired differences and the slope of y on x is tested; otherwise ``y`` are single runs, ``a_side``
    says which method each is, and the method x speedup interaction is tested (the unpaired analogue).
    The detectable slope is the one whose t (on the residual degrees of freedom) reaches POWER:
    statsmodels' effect size for df + 1 observations, times sqrt(df + 1), times the slope's SE."""
    x = np.asarray(x, dtype=float)
    if a_side is None:
        name, design = "OLS slope of paired differences", sm.add_constant(x)
    else:
        is_a = np.asarray(a_side, dtype=float)
        name, design = "OLS method x speedup interaction", np.column_stack([np.ones_like(x), is_a, x, is_a * x])
    n = f"n={len(y)} runs" if a_side is not None else f"n={len(y)} pairs"
    if len(set(x)) < 2 or len(y) <= design.shape[1]:
        return _untested(name, n, float("nan"), "too few runs to fit a slope")
    fit = sm.OLS(np.asarray(y, dtype=float), design).fit()
    k = design.shape[1] - 1  # the slope (paired) or the interaction (unpaired) is the last column
    if not fit.bse[k] > 0:
        return _untested(name, n, float(fit.params[k]), "the differences lie on a line: no test")
    effect = TTestPower().solve_power(effect_size=None, nobs=fit.df_resid + 1, alpha=ALPHA, power=POWER)
    return _tested(
        name,
        n,
        fit.params[k],
        fit.conf_int(ALPHA)[k],
        fit.pvalues[k],
        float(effect) * math.sqrt(fit.df_resid + 1) * fit.bse[k],
    )


# ---------------------------------------------------------------------------- the runs
DEFAULT_SOURCES = ("", "default")  # hparams_source of a run with its method's default hyperparameters


def fair_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The ranked runs under the two fair protocols, with their comparison columns (protocol, and
    whether today's training code trained them)."""
    runs = runs.assign(protocol=protocol_of(runs), current=current_code(runs))
    return runs[runs.protocol.isin(["paper", "total"])]


def comparisons(runs: pd.DataFrame) -> pd.DataFrame:
    """The ranked runs with their comparison columns, default hyperparameters only."""
    if runs.empty:
        return runs
    return fair_runs(runs[runs.hparams_source.isin(DEFAULT_SOURCES)])


def _side(part: pd.DataFrame, method: str, measure: str) -> pd.DataFrame:
    """One method's runs in a baseline as (seed, weights, value): top-1, or points lost at removal."""
    rows = part[part.method == method]
    value = rows.top1 if measure == "top1" else rows.acc_before_removal - rows.acc_after_removal
    return pd.DataFrame({"seed": rows.seed, "weights": rows.baseline_sha256.fillna(""), "value": value}).dropna(
        subset=["value"]
    )


def pairs(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame | None:
    """a's and b's runs matched by seed, when every seed pairs: each seed once a side, the same seeds
    on both, and each pair started from the same baseline weights; else None."""
    if a.seed.duplicated().any() or b.seed.duplicated().any() or set(a.seed) != set(b.seed):
        return None
    joined = a.merge(b, on="seed", suffixes=("_a", "_b")).sort_values("seed")
    return joined if (joined.weights_a == joined.weights_b).all() else None


def _summary(values) -> dict:
    s = pd.Series(list(values), dtype=float)
    return {"mean": float(s.mean()), "std": float(s.std()) if len(s) > 1 else None, "n": len(s)}


def _baseline_result(base: dict, part: pd.DataFrame, claim: Claim) -> dict | None:
    """One baseline's comparison of the claim's methods, oriented so that positive is what the paper
    says (a - b in top-1; b - a in points lost at removal), paired where every seed pairs."""
    a, b = _side(part, claim.a, claim.measure), _side(part, claim.b, claim.measure)
    if a.empty or b.empty:
        return None
    better, worse = ("a", "b") if claim.measure == "top1" else ("b", "a")
    matched = pairs(a, b)
    if matched is not None:
        test = paired_test(matched[f"value_{better}"].tolist(), matched[f"value_{worse}"].tolist())
    else:
        sides = {"a": a.value.tolist(), "b": b.value.tolist()}
        test = welch_test(sides[better], sides[worse])
    out = base | {
        "a": _summary(a.value),
        "b": _summary(b.value),
        "test": test,
        "paired": matched is not None,
        "speedup": float(part.speedup.mean()),
        "matched": matched,
        "a_runs": a,
        "b_runs": b,
    }
    if claim.column is not None and f"m:{claim.column}" in part:  # what the claim's method shows of its mechanism
        values = part[part.method == claim.a][f"m:{claim.column}"].dropna()
        out["mag_ratio"] = float(values.mean()) if not values.empty else None
    return out


def claim_rows(runs: pd.DataFrame, claim: Claim) -> list[dict]:
    """One row per question holding both of the claim's methods: its baselines' comparisons and the
    row's test (the one baseline's own, or the test across baselines)."""
    out = []
    for question, baselines in comparison_groups(runs):
        per = [r for r in (_baseline_result(base, part, claim) for base, part in baselines) if r is not None]
        if not per:
            continue
        test = per[0]["test"] if len(per) == 1 else across_baselines([r["test"]["diff"] for r in per])
        out.append(
            question
            | {
                "speedup": float(np.mean([r["speedup"] for r in per])),
                "baselines": per,
                "protocol_text": protocol_text(question["protocol"], question["budget_samples"]),
                "test": test,
                "scope": ONE_BASELINE if len(per) == 1 else None,
            }
        )
    out = sorted(
        out,
        key=lambda r: (
            r["setting"],
            not r["current"],
            r["numerics"],
            r["protocol"],
            r["budget_samples"] if pd.notna(r["budget_samples"]) else 0,
            r["speedup"],
        ),
    )
    return _one_per_removal(out) if claim.measure == "removal" else out


def _one_per_removal(rows: list[dict]) -> list[dict]:
    """Removal comes before fine-tuning: the runs of two budget points whose own training is the same
    (default hyperparameters: the paper protocol and total:1x, 2x... of one target) lose exactly the
    same points, and testing that one measurement once per point would count it as evidence twice (in
    "holds in k of n" and in Holm's family). Rows whose every baseline holds the very same values
    (seed by seed, both methods) are kept once, named by all their budget points."""
    kept: dict[tuple, dict] = {}
    for row in rows:
        values = tuple(
            (b["baseline_name"], tuple(sorted(map(tuple, b[side][["seed", "value"]].to_numpy().tolist()))))
            for b in row["baselines"]
            for side in ("a_runs", "b_runs")
        )
        key = (row["setting"], row["numerics"], row["granularity"], row["ratios"], row["skip"], row["current"], values)
        if key in kept:
            first = kept[key]
            first["protocol_text"] = first["protocol_text"].removesuffix(SAME_REMOVAL) + f"; {row['protocol_text']}"
            first["protocol_text"] += SAME_REMOVAL
        else:
            kept[key] = row
    return list(kept.values())


def _baseline_slope(per_target: list[dict]) -> dict:
    """One baseline's gap against FLOPs speedup over its targets: paired differences where every target
    pairs, else the runs themselves with the interaction term."""
    if all(r["paired"] for r in per_target):
        x = [r["speedup"] for r in per_target for _ in range(len(r["matched"]))]
        y = [d for r in per_target for d in r["matched"].value_a - r["matched"].value_b]
        return slope_test(x, y)
    x, y, side = [], [], []
    for r in per_target:
        for runs, is_a in ((r["a_runs"], True), (r["b_runs"], False)):
            x += [r["speedup"]] * len(runs)
            y += runs.value.tolist()
            side += [is_a] * len(runs)
    return slope_test(x, y, side)


def gap_rows(rows: list[dict]) -> list[dict]:
    """From GAP's rows: per series (a question without its target) with two or more targets, each
    baseline's slope of the gap on the FLOPs speedup, and the series' test (that slope with one
    baseline, else across the baselines' slopes)."""
    series_keys = [k for k in QUESTION if k not in ("ratios", "skip")]
    series: dict[tuple, dict[str, list]] = {}
    for r in rows:
        for b in r["baselines"]:
            series.setdefault(tuple(r[k] for k in series_keys), {}).setdefault(b["baseline_key"], []).append(
                b | {"ratios": r["ratios"], "skip": r["skip"]}
            )
    out = []
    for key, by_baseline in series.items():
        per = []
        for targets in by_baseline.values():
            if len(targets) < 2:
                continue
            targets = sorted(targets, key=lambda t: t["speedup"])
            per.append(
                {
                    "baseline_name": targets[0]["baseline_name"],
                    "baseline_key": targets[0]["baseline_key"],
                    "test": _baseline_slope(targets),
                    "steps": [(t["ratios"], t["speedup"], t["test"]["diff"]) for t in targets],
                }
            )
        if not per:
            continue
        fitted = [p for p in per if math.isfinite(p["test"]["diff"])]  # baselines whose slope could be fitted
        test = across_baselines([p["test"]["diff"] for p in fitted]) if len(fitted) > 1 else (fitted or per)[0]["test"]
        head = dict(zip(series_keys, key))
        out.append(
            head
            | {
                "baselines": per,
                "test": test,
                "protocol_text": protocol_text(head["protocol"], head["budget_samples"]),
                "scope": ONE_BASELINE if len(fitted) <= 1 else None,
            }
        )
    return out


# ---------------------------------------------------------------------------- the words
def _p(p: float | None) -> str:
    if p is None:
        return "-"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def holm(tests: list[dict]) -> None:
    """Adds ``p_adj`` to every test that has a p: Holm's adjustment over all of them together."""
    tested = [t for t in tests if t["p"] is not None]
    if tested:
        adjusted = multipletests([t["p"] for t in tested], alpha=ALPHA, method="holm")[1]
        for t, p in zip(tested, adjusted):
            t["p_adj"] = float(p)
    for t in tests:
        t.setdefault("p_adj", None)
        t["p_text"], t["p_adj_text"] = _p(t["p"]), _p(t["p_adj"])
        t["significant"] = t["p_adj"] is not None and t["p_adj"] < ALPHA


def verdict(claim: Claim, t: dict) -> str:
    """A test's sentence: who beats whom by how much (95 % interval, Holm-adjusted p) when it is
    significant after Holm; otherwise "not significant" with n and the smallest detectable difference."""
    if t["p"] is None:
        return t["why"]
    unit = "points per 1x FLOPs speedup" if claim is GAP else "points"
    if not t["significant"]:
        return f"not significant ({t['n']}; could detect >= {t['detectable']:.2f} {unit})"
    sign = 1 if t["diff"] > 0 else -1
    lo, hi = sorted((sign * t["lo"], sign * t["hi"]))
    size = f"{abs(t['diff']):.2f} [{lo:.2f}, {hi:.2f}]"
    paper = "as the paper says" if sign > 0 else "against the paper"
    if claim is GAP:
        return f"the gap {'grows' if sign > 0 else 'shrinks'} by {size} {unit} (p_adj {t['p_adj_text']}; {paper})"
    win, lose = (claim.a, claim.b) if sign > 0 else (claim.b, claim.a)
    if claim.measure == "removal":
        return f"{win} loses {size} fewer points at removal than {lose} (p_adj {t['p_adj_text']}; {paper})"
    return f"{win} beats {lose} by {size} (p_adj {t['p_adj_text']}; {paper})"


def sentence(claim: Claim, rows: list[dict]) -> str:
    """What the stored runs say about one claim, in one sentence with its numbers, today's training
    code first (what a reader of the newest runs wants): each of its rows with the difference, its
    interval, n, the adjusted p and, across baselines, on how many each method was ahead. Then the
    older editions in one clause: in how many tested comparisons the claim holds (and the opposite
    holds) after Holm, the range of differences, what the rest could have detected, and how many
    rest on one baseline."""
    if not rows:
        return f"{claim.short}: not tested, no comparison holds both {claim.a} and {claim.b}."
    unit = "points per 1x FLOPs speedup" if claim is GAP else "points"
    current = [r for r in rows if r["current"] and r["test"]["p"] is not None]
    older = [r for r in rows if not r["current"]]
    parts = []
    if current:
        shown = "; ".join(_current_text(r, claim, unit) for r in current[:_CURRENT_SHOWN])
        more = f" and {len(current) - _CURRENT_SHOWN} more on findings.html" if len(current) > _CURRENT_SHOWN else ""
        # the count first, so that the verdict reads before the numbers behind it
        parts.append(f"today's training code: {_holds(claim, [r['test'] for r in current])}: {shown}{more}")
        if claim.measure == "removal":
            lost = [b["a"]["mean"] for r in current for b in r["baselines"]]
            low, high = f"{min(lost):.1f}", f"{max(lost):.1f}"
            span = low if low == high else f"{low} to {high}"
            parts.append(f"{claim.a} itself still loses {span} points at removal there")
    untested = sum(r["current"] and r["test"]["p"] is None for r in rows)
    if current and untested:
        parts.append(f"{untested} more of today's not yet testable (findings.html says why)")
    elif untested:  # runs of today's code, none of them testable yet (one seed a side)
        parts.append(
            f"today's training code: {_noun(untested, 'comparison')}, not yet testable (findings.html says why)"
        )
    elif not current:  # the gap's rows are series of two or more targets: runs at one target make none
        parts.append(f"no {'series' if claim is GAP else 'runs'} of today's training code")
    if older:
        parts.append(f"older training code: {_tally(claim, older, unit)}")
    return f"{claim.short}: " + "; ".join(parts) + "."


_CURRENT_SHOWN = 4  # rows of today's code a summary sentence names one by one


def _tally(claim: Claim, rows: list[dict], unit: str) -> str:
    """Rows counted: in how many the claim holds after Holm and the opposite, the differences' range,
    what the rest could detect, how many rest on one baseline."""
    tested = [r["test"] for r in rows if r["test"]["p"] is not None]
    quiet = [t["detectable"] for t in tested if not t["significant"]]
    diffs = [r["test"]["diff"] for r in rows if math.isfinite(r["test"]["diff"])] or [math.nan]
    text = (
        f"{_holds(claim, tested)}, "
        f"{'slopes' if claim is GAP else 'differences'} {min(diffs):+.2f} to {max(diffs):+.2f} {unit}"
    )
    if quiet:
        text += f", the {len(quiet)} not significant could detect only >= {min(quiet):.2f}" + (
            f" to {max(quiet):.2f}" if len(quiet) > 1 else ""
        )
    single = sum(r["scope"] is not None for r in rows)
    if single:
        text += f", {single} of {len(rows)} on one baseline"
    return text


def _holds(claim: Claim, tested: list[dict]) -> str:
    """In how many of these tests the claim holds after Holm, and in how many the opposite does."""
    pro = sum(t["significant"] and t["diff"] > 0 for t in tested)
    con = sum(t["significant"] and t["diff"] < 0 for t in tested)
    noun = "series" if claim is GAP else "comparisons"
    return f"holds in {pro} of {len(tested)} tested {noun} after Holm, the opposite in {con}"


def _current_text(row: dict, claim: Claim, unit: str) -> str:
    """One row of today's code in a summary sentence: where, the difference with its interval, the
    number of baselines or seeds behind it, the adjusted p (and, not significant, the smallest
    difference the design could detect), and across baselines which method was ahead on how many
    (baselines differ more than seeds: a reader should see whether they agree)."""
    t = row["test"]
    interval = f" [{t['lo']:+.2f}, {t['hi']:+.2f}]" if math.isfinite(t["lo"]) else ""
    target = (row.get("ratios") or "") + (" skip " + row["skip"] if row.get("skip") else "")  # none: a series
    where = f"{row['setting']}{' ' + target if target else ''}, {row['protocol_text']}"
    # the design behind n, as the issue's wording asks: seeds of one baseline are not baselines, and
    # "not significant" says what the design could have seen
    n = t["n"] + ("" if row["scope"] is None else f"{'' if claim is GAP else ' seeds'}, one baseline")
    verdict = "significant" if t["significant"] else f"not significant, could detect >= {t['detectable']:.2f}"
    text = f"{where} {t['diff']:+.2f}{interval} {unit} ({n}, p_adj {t['p_adj_text']}, {verdict}"
    diffs = [b["test"]["diff"] for b in row.get("baselines", []) if math.isfinite(b["test"]["diff"])]
    if claim is not GAP and len(diffs) > 1:
        ahead = {claim.a: sum(d > 0 for d in diffs), claim.b: sum(d < 0 for d in diffs)}
        if claim.measure == "removal":  # positive: a loses fewer points
            words = [f"{m} loses fewer on {_count(k, len(diffs))}" for m, k in ahead.items() if k]
        else:
            words = [f"{m} ahead on {_count(k, len(diffs))}" for m, k in ahead.items() if k]
        text += "; " + ", ".join(words)
    return text + ")"


def _noun(k: int, noun: str) -> str:
    return f"{k} {noun}{'s' if k != 1 else ''}"


def _count(k: int, n: int) -> str:
    return "every baseline" if k == n else f"{k} of {n} baselines"


def findings(runs: pd.DataFrame) -> dict:
    """Everything findings.html shows, from the ranked runs of every setting: per claim its rows and
    sentence, the gap's series, and the generated summary (one sentence per claim)."""
    runs = comparisons(runs)
    claims = []
    for claim in CLAIMS:
        rows = claim_rows(runs, claim) if not runs.empty else []
        claims.append(
            {
                "claim": claim,
                "rows": rows,
                "untested": None if rows else f"no comparison holds runs of both {claim.a} and {claim.b}",
            }
        )
    gaps = gap_rows(claim_rows(runs, GAP)) if not runs.empty else []
    gap = {
        "claim": GAP,
        "rows": gaps,
        "untested": None
        if gaps
        else f"no setting has {GAP.a} and {GAP.b} at two or more targets under one baseline, precision and protocol",
    }
    sections = [*claims, gap]
    holm([r["test"] for c in sections for r in c["rows"]])
    for c in sections:
        for r in c["rows"]:
            r["verdict"] = verdict(c["claim"], r["test"])
        c["sentence"] = sentence(c["claim"], c["rows"])
    return {
        "claims": claims,
        "gap": gap,
        "sections": sections,
        "summary": [c["sentence"] for c in sections],
        "tests": sum(r["test"]["p"] is not None for c in sections for r in c["rows"]),
    }


def setting_summary(found: dict, setting: str) -> list[str]:
    """The summary's sentences from one setting's rows alone, for the top of its page: the tests and
    their Holm adjustment stay findings.html's (over every test there), so a number reads the same on
    both pages. A claim with no row in this setting is left out."""
    out = []
    for c in found["sections"]:
        rows = [r for r in c["rows"] if r["setting"] == setting]
        if rows:
            out.append(sentence(c["claim"], rows))
    return out
