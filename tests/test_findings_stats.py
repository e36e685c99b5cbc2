"""findings.html's statistics on small fixtures of stored results: every number is checked against
scipy and statsmodels called here directly (or a textbook value), never against the page's own code."""

import html
import json
import re
import statistics

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower

from suite.pages.findings import ONE_BASELINE, findings, holm
from suite.pages.leaderboard import ranked, render
from suite.pages.matrix import best_matrix
from suite.store.results import load_runs

GREG1 = [75.40, 74.10, 76.90]  # three seeds of one baseline
L1 = [74.00, 73.20, 75.30]  # paired differences +1.40, +0.90, +1.60


def _today(method: str) -> str:
    from methods import registry
    from suite.store.fingerprint import training_code

    return training_code(type(registry.get(method)))


def _store(root, runs: list[dict]):
    """Writes each run as a stored result (and an empty config) under root/setting/method/<n>/."""
    for k, r in enumerate(runs):
        rec = {
            "setting": "tiny",
            "status": "done",
            "eval_split": "test",
            "ratios": "0.5",
            "protocol": "paper",
            "granularity": "filter",
            "baseline_key": "b1",
            "baseline_seed": 0,
            "baseline_sha256": "w1",
            "baseline_top1": 90.0,
            "speedup": 2.0,
            "hparams_source": "default",
            "hparams": {},
            "params": 1000,
            "baseline_params": 2000,
            "latency_speedup": 1.5,
            "budget": {
                "samples": 1000,
                "samples_x_train": 1.0,
                "train_macs": 1e9,
                "reg_iters": 0,
                "finetune_epochs": 1.0,
            },
            "finished_at": f"2026-12-01 10:{k % 60:02d} UTC",
            "acc_before_removal": 85.0,
            "acc_after_removal": 40.0,
        } | r
        rec.setdefault("training_code", _today(rec["method"]))
        folder = root / rec["setting"] / rec["method"] / f"run{k}"
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps(rec))
        (folder / "config.json").write_text("{}")
    return ranked(load_runs(root))


def _runs(method: str, values: list[float], seeds=(0, 1, 2), **extra) -> list[dict]:
    return [{"method": method, "seed": s, "top1": v} | extra for s, v in zip(seeds, values)]


def _claim(found: dict, key: str) -> dict:
    return next(c for c in found["claims"] if c["claim"].key == key)


def test_pairs_by_seed_use_the_paired_t_test_and_its_interval(tmp_path):
    found = findings(_store(tmp_path, _runs("greg1", GREG1) + _runs("l1", L1)))
    (row,) = _claim(found, "greg1-vs-l1")["rows"]
    t = row["test"]
    expected = stats.ttest_rel(GREG1, L1)
    ci = expected.confidence_interval(0.95)
    assert t["test"] == "paired t" and t["n"] == "n=3"
    assert t["diff"] == pytest.approx(statistics.mean([1.4, 0.9, 1.6]), abs=1e-9)
    assert t["p"] == pytest.approx(expected.pvalue, rel=1e-9)
    assert (t["lo"], t["hi"]) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9))
    # the textbook paired t: mean difference over its standard error, n - 1 degrees of freedom
    d = np.subtract(GREG1, L1)
    textbook = 2 * stats.t.sf(d.mean() / (d.std(ddof=1) / np.sqrt(3)), 2)
    assert t["p"] == pytest.approx(textbook, rel=1e-9)
    # unpaired, the same numbers would give another p: the pairing is what was tested
    assert abs(t["p"] - stats.ttest_ind(GREG1, L1, equal_var=False).pvalue) > 0.1
    # the smallest difference detectable at 80 % power: statsmodels' effect size at n=3 times the SD of differences
    sd = float(np.std(d, ddof=1))
    detectable = TTestPower().solve_power(effect_size=None, nobs=3, alpha=0.05, power=0.8) * sd
    assert t["detectable"] == pytest.approx(detectable, rel=1e-6)
    assert TTestPower().power(effect_size=t["detectable"] / sd, nobs=3, alpha=0.05) == pytest.approx(0.8, abs=1e-4)
    assert row["scope"] == ONE_BASELINE


@pytest.mark.parametrize("case", ["seed missing", "other weights"])
def test_runs_that_do_not_pair_fall_back_to_welch(tmp_path, case):
    """A seed only one side has, or a pair whose baseline weights differ: Welch's test, its interval,
    and the detectable difference from TTestIndPower at the pooled SD."""
    l1 = (
        _runs("l1", L1, seeds=(0, 1, 3))
        if case == "seed missing"
        else _runs("l1", L1[:2]) + _runs("l1", L1[2:], seeds=(2,), baseline_sha256="w-other")
    )
    found = findings(_store(tmp_path, _runs("greg1", GREG1) + l1))
    t = _claim(found, "greg1-vs-l1")["rows"][0]["test"]
    expected = stats.ttest_ind(GREG1, L1, equal_var=False)
    ci = expected.confidence_interval(0.95)
    assert t["test"] == "Welch t"
    assert t["p"] == pytest.approx(expected.pvalue, rel=1e-9)
    assert (t["lo"], t["hi"]) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9))
    pooled = np.sqrt((np.var(GREG1, ddof=1) + np.var(L1, ddof=1)) / 2)  # equal n: the mean of the variances
    effect = TTestIndPower().solve_power(effect_size=None, nobs1=3, ratio=1.0, alpha=0.05, power=0.8)
    assert t["detectable"] == pytest.approx(effect * pooled, rel=1e-6)


def test_holm_adjusts_over_every_test_on_the_page(tmp_path):
    """Three paired tests (GReg-1 vs L1, GReg-2 vs GReg-1, removal): each p adjusted with Holm over
    all three, as statsmodels gives it from the scipy p values computed here."""
    greg2 = [75.90, 74.20, 77.60]
    lost_g1 = [10.0, 14.0, 11.0]  # GReg-1's points lost at removal; L1 loses 45.0 on every seed
    runs = _runs("greg1", GREG1) + _runs("l1", L1, acc_after_removal=40.0) + _runs("greg2", greg2)
    for r, lost in zip(runs[:3], lost_g1):
        r["acc_after_removal"] = 85.0 - lost
    found = findings(_store(tmp_path, runs))
    raw = [
        stats.ttest_rel(GREG1, L1).pvalue,
        stats.ttest_rel(greg2, GREG1).pvalue,
        stats.ttest_rel([45.0] * 3, lost_g1).pvalue,
    ]
    adjusted = multipletests(raw, alpha=0.05, method="holm")[1]
    got = [_claim(found, k)["rows"][0]["test"] for k in ("greg1-vs-l1", "greg2-vs-greg1", "removal")]
    assert [t["p"] for t in got] == pytest.approx(raw, rel=1e-9)
    assert [t["p_adj"] for t in got] == pytest.approx(list(adjusted), rel=1e-9)
    assert found["tests"] == 3
    # and Holm's step-down by hand: sorted p times (m - rank), kept non-decreasing, capped at 1
    tests = [{"p": p} for p in (0.01, 0.04, 0.03)]
    holm(tests)
    assert [t["p_adj"] for t in tests] == pytest.approx([0.03, 0.06, 0.06])


def test_each_point_of_a_budget_curve_is_its_own_question(tmp_path):
    """Equal-sample runs at two budgets (the same seeds twice) are two comparisons, each paired; never
    one pool of six runs a side."""

    def at(samples, shift):
        budget = {
            "budget": {"samples": samples, "total_samples_target": samples, "reg_iters": 0, "finetune_epochs": 1.0},
            "protocol": "total",
        }
        return _runs("greg1", [v + shift for v in GREG1], **budget) + _runs("l1", L1, **budget)

    found = findings(_store(tmp_path, at(1000, 0.0) + at(4000, 1.0)))
    rows = _claim(found, "greg1-vs-l1")["rows"]
    assert [r["protocol_text"] for r in rows] == ["total, 1,000 samples", "total, 4,000 samples"]
    assert [r["test"]["test"] for r in rows] == ["paired t", "paired t"]
    assert [r["test"]["p"] for r in rows] == pytest.approx(
        [stats.ttest_rel(GREG1, L1).pvalue, stats.ttest_rel(np.add(GREG1, 1.0), L1).pvalue]
    )


@pytest.mark.parametrize("other_removal", [False, True])
def test_removal_shared_by_two_budget_points_is_tested_once(tmp_path, other_removal):
    """Removal comes before fine-tuning: the paper-protocol runs and the equal-sample runs of the same
    own training lose the very same points, one measurement, tested once (one row named by both
    points, one test in Holm's family); runs whose removal differs are two rows."""
    lost_g1 = [10.0, 14.0, 11.0]  # GReg-1's points lost at removal; L1 loses 45.0 on every seed
    total = {
        "budget": {"samples": 4000, "total_samples_target": 4000, "reg_iters": 0, "finetune_epochs": 1.0},
        "protocol": "total",
    }
    runs = []
    for extra, shift in (({}, 0.0), (total, 2.0 if other_removal else 0.0)):
        greg1 = _runs("greg1", GREG1, **extra)
        for r, lost in zip(greg1, lost_g1):
            r["acc_after_removal"] = 85.0 - lost - shift
        runs += greg1 + _runs("l1", L1, **extra)
    found = findings(_store(tmp_path, runs))
    rows = _claim(found, "removal")["rows"]
    if other_removal:
        assert [r["protocol_text"] for r in rows] == ["paper", "total, 4,000 samples"]
        assert found["tests"] == 4
        return
    assert [r["protocol_text"] for r in rows] == [
        "paper; total, 4,000 samples (the same runs' removal: it comes before fine-tuning)"
    ]
    assert rows[0]["test"]["p"] == pytest.approx(stats.ttest_rel([45.0] * 3, lost_g1).pvalue, rel=1e-9)
    assert found["tests"] == 3  # GReg-1 vs L1 at each point, removal once


def test_the_baseline_is_a_random_factor(tmp_path):
    """Two baselines at one question: the row is a one-sample t-test on the two per-baseline mean
    paired differences (n = 2 baselines), each baseline's difference is listed, and the row is not
    called a one-baseline verdict."""
    other = [74.00, 73.00, 74.50]  # GReg-1 on baseline b2; L1 below it by 0.2, 0.5, 0.1
    second = {"baseline_key": "b2", "baseline_seed": 1, "baseline_sha256": "w2"}
    runs = (
        _runs("greg1", GREG1)
        + _runs("l1", L1)
        + _runs("greg1", other, **second)
        + _runs("l1", [73.80, 72.50, 74.40], **second)
    )
    found = findings(_store(tmp_path, runs))
    (row,) = _claim(found, "greg1-vs-l1")["rows"]
    per = [statistics.mean([1.4, 0.9, 1.6]), statistics.mean([0.2, 0.5, 0.1])]
    assert sorted(b["test"]["diff"] for b in row["baselines"]) == pytest.approx(sorted(per))
    assert all(b["paired"] for b in row["baselines"])
    expected = stats.ttest_1samp(per, 0.0)
    ci = expected.confidence_interval(0.95)
    t = row["test"]
    assert t["n"] == "n=2 baselines" and t["p"] == pytest.approx(expected.pvalue, rel=1e-9)
    assert (t["lo"], t["hi"]) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9))
    detectable = TTestPower().solve_power(effect_size=None, nobs=2, alpha=0.05, power=0.8) * np.std(per, ddof=1)
    assert t["detectable"] == pytest.approx(detectable, rel=1e-6)
    assert row["scope"] is None
    # the fixture's premise (scipy on the test's own numbers, not the code): read on its own seeds, the
    # first baseline alone would be "significant"
    assert stats.ttest_rel(GREG1, L1).pvalue < 0.05


def test_wording_switches_with_holm(tmp_path):
    """Significant after Holm: who beats whom, by how much, with the interval and adjusted p.
    Otherwise "not significant" with n and the detectable difference, never "within noise"; a raw
    p below 0.05 that Holm lifts above it reads "not significant" too."""
    clear = findings(_store(tmp_path / "a", _runs("greg1", [80.0, 80.2, 79.9]) + _runs("l1", [76.0, 76.1, 75.95])))
    t = _claim(clear, "greg1-vs-l1")["rows"][0]["test"]
    assert t["p_adj"] < 0.05
    verdict = _claim(clear, "greg1-vs-l1")["rows"][0]["verdict"]
    ci = stats.ttest_rel([80.0, 80.2, 79.9], [76.0, 76.1, 75.95]).confidence_interval(0.95)
    assert verdict == f"greg1 beats l1 by 4.02 [{ci.low:.2f}, {ci.high:.2f}] (p_adj 1.2e-04; as the paper says)"
    reverse = findings(_store(tmp_path / "b", _runs("greg1", [76.0, 76.1, 75.95]) + _runs("l1", [80.0, 80.2, 79.9])))
    assert _claim(reverse, "greg1-vs-l1")["rows"][0]["verdict"].startswith("l1 beats greg1 by 4.02 [")
    assert "against the paper" in _claim(reverse, "greg1-vs-l1")["rows"][0]["verdict"]

    greg1 = [r | {"acc_after_removal": after} for r, after in zip(_runs("greg1", GREG1), (40.0, 41.0, 43.0))]
    found = findings(_store(tmp_path / "c", greg1 + _runs("l1", L1) + _runs("greg2", [75.5, 74.0, 77.1])))
    assert found["tests"] == 3
    row = _claim(found, "greg1-vs-l1")["rows"][0]
    assert row["test"]["p"] < 0.05 <= row["test"]["p_adj"]  # significant alone, not after Holm over the page
    assert row["verdict"] == f"not significant (n=3; could detect >= {row['test']['detectable']:.2f} points)"
    out = tmp_path / "site"
    render(tmp_path / "c", out)
    page = html.unescape(re.sub(r"<[^>]+>", " ", (out / "findings.html").read_text()))
    assert "within noise" not in page and row["verdict"] in page and ONE_BASELINE in page
    # the runs are of today's training code: the sentence names that row with scipy's interval
    # and, not significant, what 3 seeds of one baseline could detect (statsmodels, at the SD of the pairs)
    ci = stats.ttest_rel(GREG1, L1).confidence_interval(0.95)
    sd = np.std(np.subtract(GREG1, L1), ddof=1)
    detectable = TTestPower().solve_power(effect_size=None, nobs=3, alpha=0.05, power=0.8) * sd
    summary = (
        f"GReg-1 beats L1: today's training code: holds in 0 of 1 tested comparisons after Holm, the opposite in 0: "
        f"tiny 0.5, paper +1.30 [{ci.low:+.2f}, {ci.high:+.2f}] points "
        f"(n=3 seeds, one baseline, p_adj {row['test']['p_adj_text']}, not significant, could detect >= "
        f"{detectable:.2f})."
    )
    assert summary in re.sub(r"\s+", " ", page)
    assert summary in re.sub(r"\s+", " ", html.unescape((out / "index.html").read_text()))


def test_the_summary_leads_with_today_s_code_and_says_whether_the_baselines_agree(tmp_path):
    """Today's row first, with the one-sample t across baselines (scipy) and on how many baselines
    each method was ahead, the baselines by seed; the older edition's rows after it, counted (here one comparison that
    holds after Holm: GReg-1 4 points above L1 on every seed)."""
    second = {"baseline_key": "b2", "baseline_seed": 1, "baseline_sha256": "w2"}
    third = {"baseline_key": "b3", "baseline_seed": 2, "baseline_sha256": "w3"}
    old = {"training_code": "0" * 16}
    runs = (
        _runs("greg1", [70.0, 71.0, 72.0], **third)  # +0.5, +0.4, +0.6: greg1 ahead (stored first)
        + _runs("l1", [69.5, 70.6, 71.4], **third)
        + _runs("greg1", GREG1)  # paired differences +1.40, +0.90, +1.60: greg1 ahead
        + _runs("l1", L1)
        + _runs("greg1", [74.0, 73.0, 74.5], **second)  # -0.2, -0.5, -0.1: l1 ahead
        + _runs("l1", [74.2, 73.5, 74.6], **second)
        + _runs("greg1", [80.0, 80.2, 79.9], **old)
        + _runs("l1", [76.0, 76.1, 75.95], **old)
    )
    found = findings(_store(tmp_path, runs))
    (claim,) = [c for c in found["claims"] if c["claim"].key == "greg1-vs-l1"]
    per = [statistics.mean([1.4, 0.9, 1.6]), statistics.mean([-0.2, -0.5, -0.1]), statistics.mean([0.5, 0.4, 0.6])]
    one = stats.ttest_1samp(per, 0.0)
    ci = one.confidence_interval(0.95)
    today = next(r for r in claim["rows"] if r["current"])
    assert today["test"]["p"] == pytest.approx(one.pvalue, rel=1e-9)
    # listed as a reader counts them, whatever order the store holds them in
    assert [b["baseline_name"] for b in today["baselines"]] == [f"baseline seed {k}" for k in (0, 1, 2)]
    older = next(r for r in claim["rows"] if not r["current"])
    assert older["test"]["significant"] and not today["test"]["significant"]
    # what three baselines could detect: statsmodels at the SD of the per-baseline means
    detectable = TTestPower().solve_power(effect_size=None, nobs=3, alpha=0.05, power=0.8) * np.std(per, ddof=1)
    assert claim["sentence"] == (
        f"GReg-1 beats L1: today's training code: holds in 0 of 1 tested comparisons after Holm, the opposite in 0: "
        f"tiny 0.5, paper {statistics.mean(per):+.2f} "
        f"[{ci.low:+.2f}, {ci.high:+.2f}] points (n=3 baselines, p_adj {today['test']['p_adj_text']}, "
        f"not significant, could detect >= {detectable:.2f}; greg1 ahead on 2 of 3 baselines, l1 ahead on 1 of 3 baselines); older training code: "
        f"holds in 1 of 1 tested comparisons after Holm, the opposite in 0, differences +4.02 to +4.02 points, "
        f"1 of 1 on one baseline."
    )


def test_the_gap_grows_is_a_test_on_the_slope_of_the_differences(tmp_path):
    """Paired differences at two targets, regressed on the FLOPs speedup: the slope and its p are
    scipy's linregress of the per-seed differences; point estimates that grow decide nothing alone."""
    mild = _runs("greg1", [80.3, 80.1, 80.6]) + _runs("l1", [80.0, 80.0, 80.0])  # +0.3, +0.1, +0.6
    strong = _runs("greg1", [70.9, 70.2, 71.0], ratios="0.9", speedup=6.0) + _runs(
        "l1", [70.0, 70.0, 70.2], ratios="0.9", speedup=6.0
    )  # +0.9, +0.2, +0.8
    found = findings(_store(tmp_path, mild + strong))
    (row,) = found["gap"]["rows"]
    x, d = [2.0] * 3 + [6.0] * 3, [0.3, 0.1, 0.6, 0.9, 0.2, 0.8]
    fit = stats.linregress(x, d)
    t = row["test"]
    assert t["diff"] == pytest.approx(fit.slope, rel=1e-9) and t["p"] == pytest.approx(fit.pvalue, rel=1e-9)
    half = stats.t.ppf(0.975, 4) * fit.stderr
    assert (t["lo"], t["hi"]) == (pytest.approx(fit.slope - half, rel=1e-9), pytest.approx(fit.slope + half, rel=1e-9))
    assert [s[2] for s in row["baselines"][0]["steps"]] == pytest.approx(
        [1 / 3, 19 / 30]
    )  # the gap grows on point estimates
    assert t["p_adj"] >= 0.05 and row["verdict"].startswith("not significant (n=6 pairs; could detect >= ")


def test_the_index_matrix_shows_todays_code_and_names_an_older_edition(tmp_path):
    """Today's runs only where a setting has them (the older edition and the legacy iteration-matched
    total runs are left out); a setting without them shows its newest edition and says so."""
    runs = (
        _runs("greg1", GREG1)
        + _runs("l1", L1)
        + _runs("l1", [60.0, 60.0, 60.0], training_code="old", finished_at="2026-12-02 10:00 UTC")
        + _runs(
            "l1", [50.0, 50.0, 50.0], protocol="total", budget={"reg_iters": 0, "finetune_epochs": 1.0}
        )  # legacy: no samples
        + _runs("l1", [70.0, 71.0, 72.0], setting="other", training_code="old-a", finished_at="2026-11-01 10:00 UTC")
        + _runs("l1", [66.0, 67.0, 68.0], setting="other", training_code="old-b", finished_at="2026-11-20 10:00 UTC")
    )
    tables = {t["setting"]: t for t in best_matrix(_store(tmp_path, runs))}
    tiny = tables["tiny"]
    assert tiny["today"] and [c["protocol"] for c in tiny["columns"]] == ["paper"]
    assert tiny["cells"]["l1"] == {0: f"{statistics.mean(L1):.2f} ± {statistics.stdev(L1):.2f} (3)"}
    other = tables["other"]
    assert not other["today"] and other["cells"]["l1"] == {0: "67.00 ± 1.00 (3)"}  # old-b, the newest edition
    out = tmp_path / "site"
    render(tmp_path, out)
    index = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", (out / "index.html").read_text())))
    assert "no runs of today's training code" in index and "50.00" not in index and "60.00" not in index


def test_the_index_matrix_averages_the_baselines_every_method_of_a_column_shares(tmp_path):
    """Baselines are a random factor: a column over two baselines shows the mean of the two
    baseline means and their std across baselines; a method missing from a baseline takes it out of
    the column for every method; methods on no common baseline show the baseline most have."""
    b2 = {"baseline_key": "b2", "baseline_seed": 1}
    greg1_b2, l1_b2 = [77.0, 78.0, 76.5], [76.0, 74.5, 75.5]
    runs = _runs("greg1", GREG1) + _runs("l1", L1) + _runs("greg1", greg1_b2, **b2) + _runs("l1", l1_b2, **b2)
    (table,) = best_matrix(_store(tmp_path / "two", runs))
    for method, first, second in (("greg1", GREG1, greg1_b2), ("l1", L1, l1_b2)):
        means = [statistics.mean(first), statistics.mean(second)]
        want = f"{statistics.mean(means):.2f} ± {statistics.stdev(means):.2f} (6 runs; 2 baselines)"
        assert table["cells"][method] == {0: want}
    assert table["baseline"] == "baseline seeds 0, 1"

    # random on the first baseline only: the column is that baseline's, for every method
    (table,) = best_matrix(_store(tmp_path / "three", runs + _runs("random", [70.0, 71.0, 72.0])))
    assert table["cells"]["greg1"] == {0: f"{statistics.mean(GREG1):.2f} ± {statistics.stdev(GREG1):.2f} (3)"}
    assert table["cells"]["random"] == {0: "71.00 ± 1.00 (3)"} and table["baseline"] == "baseline seed 0"

    # no baseline in common: the one most methods have (here a tie: the first seed), with only them
    disjoint = _runs("greg1", GREG1) + _runs("l1", l1_b2, **b2)
    (table,) = best_matrix(_store(tmp_path / "apart", disjoint))
    assert list(table["cells"]) == ["greg1"] and table["baseline"] == "baseline seed 0"


def test_a_setting_page_opens_with_its_own_sentences_adjusted_over_the_whole_findings_page(tmp_path):
    """Each setting's page says what its runs show, claim by claim, with the numbers of findings.html:
    its rows alone, but Holm's adjustment over every test there (the other setting's too), so a p
    reads the same on both pages. A claim without a row in the setting is left out; a claim whose
    rows of today's code cannot be tested yet says so rather than "no runs"."""
    other_greg1, other_l1 = [70.0, 72.5, 71.0], [69.0, 70.0, 70.5]
    store = _store(
        tmp_path,
        _runs("greg1", GREG1)
        + _runs("l1", L1)
        + _runs("greg1", other_greg1, setting="other")
        + _runs("l1", other_l1, setting="other")
        + _runs("greg2", [71.0], seeds=(0,), setting="other"),  # one seed: GReg-2 vs GReg-1 untestable
    )
    assert set(store.setting) == {"tiny", "other"}
    render(tmp_path, tmp_path / "site")

    def summary(page: str) -> str:
        text = (tmp_path / "site" / f"{page}.html").read_text()
        (box,) = re.findall(r'<div class="summary">(.*?)</div>', text, re.S)
        return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", box)))

    raw = [stats.ttest_rel(a, b).pvalue for a, b in ((GREG1, L1), (other_greg1, other_l1))]
    p_tiny, p_other = multipletests(raw, alpha=0.05, method="holm")[1]
    assert p_tiny != pytest.approx(raw[0])  # the adjustment counts the other setting's test
    tiny, other = summary("tiny"), summary("other")
    diff_tiny = statistics.mean(GREG1) - statistics.mean(L1)
    holds = int(p_tiny < 0.05)  # greg1 is ahead in GREG1, L1: the claim holds if significant after Holm
    assert (
        f"GReg-1 beats L1: today's training code: holds in {holds} of 1 tested comparisons after Holm, "
        f"the opposite in 0: tiny 0.5, paper {diff_tiny:+.2f} ["
    ) in tiny
    assert f"(n=3 seeds, one baseline, p_adj {p_tiny:.3f}, " in tiny and "other 0.5" not in tiny
    assert f"(n=3 seeds, one baseline, p_adj {p_other:.3f}, " in other and "tiny 0.5" not in other
    assert "GReg-2 beats GReg-1" not in tiny  # no greg2 in that setting
    assert "GReg-2 beats GReg-1: today's training code: 1 comparison, not yet testable" in other
    findings_page = html.unescape((tmp_path / "site" / "findings.html").read_text())
    assert f"p_adj {p_tiny:.3f}" in findings_page and f"p_adj {p_other:.3f}" in findings_page
