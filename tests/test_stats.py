"""Effect sizes, CIs, p-values and the claims' decision rule."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats as sps

from netclaims import stats
from netclaims.stats import (
    Estimate,
    Evidence,
    Outcome,
    Rule,
    correlations,
    judge,
    seed_mean,
    seed_paired,
)


def _est(value, lo, hi, n=5, p=0.01):
    return Estimate("effect", value, lo, hi, n, p)


@pytest.mark.parametrize(("rule", "estimate", "outcome"), [
    (Rule("greater"), _est(0.5, 0.1, 0.9), Outcome.PASS),
    (Rule("greater"), _est(-0.5, -0.9, -0.1), Outcome.FAIL),
    (Rule("greater"), _est(0.2, -0.1, 0.5), Outcome.INCONCLUSIVE),
    (Rule("greater", min_effect=1.1), _est(1.0, 0.5, 1.5), Outcome.INCONCLUSIVE),
    (Rule("greater", min_effect=1.1), _est(1.2, 0.5, 1.5), Outcome.PASS),
    (Rule("less", min_effect=-0.5), _est(-0.83, -0.95, -0.61), Outcome.PASS),
    (Rule("less", min_effect=-0.5), _est(-0.3, -0.6, -0.1), Outcome.INCONCLUSIVE),
    (Rule("less"), _est(0.3, 0.1, 0.6), Outcome.FAIL),
    (Rule("greater", reference=2.0), _est(2.5, 2.1, 3.0), Outcome.PASS),
    (Rule("greater", reference=2.0), _est(1.5, 1.2, 1.9), Outcome.FAIL),
    (Rule("greater", reference=-1.0, inclusive=True), _est(0.0, -1.0, 1.0), Outcome.PASS),
    (Rule("less", reference=0.2, inclusive=True), _est(0.0, -0.3, 0.2), Outcome.PASS),
    (Rule("within", band=(-0.3, 0.3)), _est(0.1, -0.2, 0.25), Outcome.PASS),
    (Rule("within", band=(-0.3, 0.3)), _est(0.1, -0.2, 0.45), Outcome.INCONCLUSIVE),
    (Rule("within", band=(-0.3, 0.3)), _est(0.6, 0.4, 0.8), Outcome.FAIL),
    (Rule("greater"), _est(math.nan, 0.1, 0.2), Outcome.ERROR),
    (Rule("greater"), _est(0.5, 0.9, 0.1), Outcome.ERROR),
])
def test_default_rule(rule, estimate, outcome):
    assert rule.judge(estimate) is outcome


def test_verdict_message_carries_numbers_and_rule():
    verdict = judge("SD-1", Estimate("rho", -0.83, -0.95, -0.61, 12, 0.001),
                    Rule("less", min_effect=-0.5), finding="memorizing nets more sensitive")
    text = verdict.summary()
    assert text.startswith("SD-1 memorizing nets more sensitive: rho=-0.83 [-0.95,-0.61] n=12")
    assert "needs CI < 0 and estimate <= -0.5 -> PASS" in text
    assert verdict.passed and verdict.to_dict()["outcome"] == "PASS"
    error = judge("SD-2", Estimate("rho", math.nan, math.nan, math.nan, 3), Rule("less"))
    assert error.outcome is Outcome.ERROR and "ERROR" in error.summary()


def test_rule_validation():
    with pytest.raises(ValueError, match="band"):
        Rule("within")
    with pytest.raises(ValueError, match="direction"):
        Rule("sideways")  # type: ignore[arg-type]


def test_means_are_student_t_intervals_and_tests():
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 1.0, 5)
    est = stats.mean(x)
    lo, hi = sps.t.interval(0.95, 4, loc=x.mean(), scale=sps.sem(x))
    assert (est.ci_low, est.ci_high) == (pytest.approx(lo), pytest.approx(hi))
    assert est.p_value == pytest.approx(sps.ttest_1samp(x, 0.0).pvalue) and est.n == 5
    shifted = stats.mean(x, reference=0.5)
    assert shifted.p_value == pytest.approx(sps.ttest_1samp(x, 0.5).pvalue)
    assert shifted.null == 0.5 and "t-test p against 0.5" in shifted.method


def test_mean_differences_paired_and_welch_match_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 1.0, 6), rng.normal(0.0, 2.0, 9)
    welch = stats.mean_difference(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert welch.p_value == pytest.approx(ref.pvalue) and welch.n == 15
    ci = ref.confidence_interval(0.95)
    assert (welch.ci_low, welch.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    paired = stats.mean_difference(a[:4], b[:4], paired=True)
    ref = sps.ttest_rel(a[:4], b[:4])
    ci = ref.confidence_interval(0.95)
    assert paired.p_value == pytest.approx(ref.pvalue)
    assert (paired.ci_low, paired.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    with pytest.raises(ValueError, match="equal sizes"):
        stats.mean_difference(a, b, paired=True)


def test_correlations_have_fisher_intervals_and_permutation_p():
    rng = np.random.default_rng(1)
    x = rng.normal(size=30)
    y = x + rng.normal(scale=0.5, size=30)
    est = stats.correlation(x, y, n_resamples=2000)
    assert est.value == pytest.approx(sps.spearmanr(x, y).statistic)
    se = math.sqrt((1 + est.value**2 / 2) / 27)
    assert est.ci_low == pytest.approx(math.tanh(math.atanh(est.value) - 1.959964 * se),
                                       rel=1e-5)
    assert est.ci_low < est.value < est.ci_high and est.p_value < 0.01
    kendall = stats.correlation(x, y, method="kendall", n_resamples=500)
    assert kendall.value == pytest.approx(sps.kendalltau(x, y, variant="b").statistic, abs=0.02)
    se = math.sqrt(0.437 / 26)
    assert kendall.ci_high == pytest.approx(math.tanh(math.atanh(kendall.value)
                                                      + 1.959964 * se), rel=1e-5)
    noise = stats.correlation(x, rng.normal(size=30), n_resamples=2000)
    assert noise.p_value > 0.05 and noise.ci_low < 0 < noise.ci_high
    with pytest.raises(ValueError, match="constant"):
        stats.correlation(x, np.ones(30))
    with pytest.raises(ValueError, match="at least 4"):
        stats.correlation(x[:3], y[:3])
    assert stats.rank_correlation([1, 2, 3], [3, 5, 4]) == pytest.approx(0.5)


def test_slope_matches_linregress_and_effect_sizes():
    x = np.arange(10.0)
    y = 2 * x + np.random.default_rng(2).normal(scale=0.1, size=10)
    est, ref = stats.slope(x, y), sps.linregress(x, y)
    assert est.value == pytest.approx(ref.slope) and est.p_value == pytest.approx(ref.pvalue)
    assert est.ci_high - est.value == pytest.approx(sps.t.ppf(0.975, 8) * ref.stderr)
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 1.0, 2.0, 3.0])
    assert stats.cohens_d(a, b) == pytest.approx(1 / np.std(a, ddof=1))
    assert stats.hedges_g(a, b) == pytest.approx(stats.cohens_d(a, b) * (1 - 3 / (4 * 8 - 9)))


def test_values_without_spread_decide_nothing():
    est = stats.mean([2.0, 2.0, 2.0])
    assert est.ci_low == est.ci_high == 2.0 and est.p_value is None
    verdict = judge("X-1", est, Rule("greater"))
    assert verdict.outcome is Outcome.INCONCLUSIVE and "no width" in verdict.reason
    # three tiny values of one sign: a bootstrap called this PASS with p = 0.25
    tiny = judge("X-1", seed_mean([1e-9, 2e-9, 3e-9], statistic="d"), Rule("greater"))
    assert tiny.outcome is Outcome.INCONCLUSIVE and tiny.ci_low < 0


def test_pass_and_fail_need_the_p_value_to_agree_when_it_tests_the_reference():
    narrow = Estimate("d", 0.5, 0.1, 0.9, 5, 0.2)  # an interval and a test that disagree
    assert Rule("greater").decide(narrow) == (
        Outcome.INCONCLUSIVE, "the interval decides but p = 0.2 does not")
    assert Rule("less").judge(Estimate("d", 0.5, 0.1, 0.9, 5, 0.2)) is Outcome.INCONCLUSIVE
    assert Rule("greater").judge(replace(narrow, p_value=0.01)) is Outcome.PASS
    # a p-value against 0 says nothing about a rule against 0.05: the interval decides
    assert Rule("greater", reference=0.05).judge(narrow) is Outcome.PASS
    assert Rule("within", band=(0.0, 1.0)).judge(narrow) is Outcome.PASS


def test_same_seed_same_numbers():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=12), rng.normal(size=12)
    assert stats.correlation(x, y, seed=7, n_resamples=999) == stats.correlation(
        x, y, seed=7, n_resamples=999)


def test_the_jackknife_of_a_mean_is_the_t_interval():
    values = np.array([1.0, 2.0, 3.0, 10.0])
    est = stats.jackknife(lambda idx: float(values[idx].mean()), 4, name="mean")
    t = stats.mean(values)
    assert (est.value, est.n) == (pytest.approx(t.value), 4)
    assert (est.ci_low, est.ci_high) == (pytest.approx(t.ci_low), pytest.approx(t.ci_high))
    assert est.p_value == pytest.approx(t.p_value) and est.statistic == "mean"

    def ratio_of_means(idx: np.ndarray) -> float:  # not a mean of per-unit values
        return float(values[idx].mean() / values.mean())

    ratio = stats.jackknife(ratio_of_means, 4, name="ratio")
    assert ratio.value == pytest.approx(1.0) and ratio.ci_low < 1.0 < ratio.ci_high
    assert "jackknife over 4 units" in ratio.method


def test_the_jackknife_rejects_too_few_units_and_undefined_statistics():
    with pytest.raises(ValueError, match="at least 3"):
        stats.jackknife(lambda idx: 0.0, 2, name="x")
    with pytest.raises(ValueError, match="undefined without one"):
        stats.jackknife(lambda idx: 1.0 if len(idx) == 5 else float("nan"), 5, name="x")


def test_seed_mean_and_paired_name_the_statistic_and_keep_the_values():
    evidence = seed_mean([0.2, 0.3, 0.25], statistic="gap", details={"note": 1})
    verdict = judge("X-1", evidence, Rule("greater"), finding="a gap")
    assert verdict.statistic == "gap" and verdict.estimate == pytest.approx(0.25)
    assert verdict.outcome is Outcome.PASS
    assert verdict.details == {"per_seed": [0.2, 0.3, 0.25], "note": 1}
    paired = judge("X-2", seed_paired([1.0, 2.0, 3.0], [1.5, 2.6, 3.4], statistic="a - b"),
                   Rule("greater"))
    assert paired.estimate == pytest.approx(-0.5) and paired.outcome is Outcome.FAIL
    assert paired.details == {"a": [1.0, 2.0, 3.0], "b": [1.5, 2.6, 3.4]}
    with pytest.raises(ValueError, match="equal sizes"):
        seed_paired([1.0, 2.0], [1.0, 2.0, 3.0], statistic="d")


def test_a_rule_s_further_conditions_are_reported_by_the_evidence():
    rule = Rule("greater", min_effect=0.5, also=("hit rate > chance",))
    assert rule.describe() == "CI > 0 and estimate >= 0.5; hit rate > chance"
    strong = Estimate("rho", 0.8, 0.6, 0.9, 12)
    met = judge("X-1", Evidence(strong, checks={"hit rate > chance": True}), rule)
    unmet = judge("X-1", Evidence(strong, checks={"hit rate > chance": False}), rule)
    assert met.outcome is Outcome.PASS and met.reason == ""
    assert unmet.outcome is Outcome.INCONCLUSIVE
    assert unmet.reason == "not met: hit rate > chance"
    weak = judge("X-1", Evidence(Estimate("rho", -0.8, -0.9, -0.6, 12),
                                 checks={"hit rate > chance": False}), rule)
    assert weak.outcome is Outcome.FAIL  # a failed condition never softens a FAIL
    with pytest.raises(ValueError, match="they must match"):
        judge("X-1", strong, rule)  # the condition was not reported
    with pytest.raises(ValueError, match="they must match"):
        judge("X-1", Evidence(strong, checks={"other": True}), Rule("greater"))
    with pytest.raises(TypeError, match="also="):
        Rule("greater", also="hit rate > chance")  # type: ignore[arg-type]


@pytest.mark.parametrize("paired", [True, False])
def test_mean_cis_do_not_move_with_rounding(paired):
    """A 1-ulp change of the inputs moves an interval of 3 values by ulps, not by a fraction
    of its width."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        a, b = rng.normal(0.3, 0.02, 3), rng.normal(0.25, 0.02, 3)
        nudged = np.nextafter(a, a + rng.choice([-1.0, 1.0], 3))
        for one, other in ((stats.mean(a), stats.mean(nudged)),
                           (stats.mean_difference(a, b, paired=paired),
                            stats.mean_difference(nudged, b, paired=paired))):
            width = one.ci_high - one.ci_low
            assert abs(one.ci_low - other.ci_low) <= 1e-12 * width
            assert abs(one.ci_high - other.ci_high) <= 1e-12 * width
            assert one.value == pytest.approx(other.value, abs=1e-15)


def test_p_values_test_the_rule_s_reference_where_the_estimate_allows():
    gains = [2.3, 2.4, 2.35]
    verdict = judge("X-1", stats.mean(gains), Rule("greater", reference=2.0))
    assert verdict.p_value == pytest.approx(sps.ttest_1samp(gains, 2.0).pvalue)
    assert "t-test p against 2," in verdict.method and verdict.outcome is Outcome.PASS
    ratio = stats.jackknife(lambda i: float(np.mean(np.array([0.5, 0.6, 0.7, 0.55])[i])), 4,
                            name="r", log=True)
    assert ratio.null == 1.0 and ratio.against(0.55).p_value > ratio.p_value  # nearer 0.59
    # a permutation p-value tests only its own null
    rho = stats.mean_correlation([(np.arange(4), np.array([1.0, 2.0, 4.0, 3.0]))] * 3)
    assert rho.against(0.2) is rho


def test_an_inconclusive_mean_says_how_many_seeds_would_decide_it():
    values = [0.1, 0.5, -0.05]
    verdict = judge("X-1", stats.mean(values), Rule("greater"))
    assert verdict.outcome is Outcome.INCONCLUSIVE
    needed = int(verdict.reason.split("about ")[1].split(" seeds")[0])
    # at that n, the same mean and sd give an interval that excludes 0; one fewer does not
    sd, m = np.std(values, ddof=1), np.mean(values)
    assert m - sps.t.ppf(0.975, needed - 1) * sd / math.sqrt(needed) > 0
    assert m - sps.t.ppf(0.975, needed - 2) * sd / math.sqrt(needed - 1) <= 0


@pytest.mark.parametrize(("rule", "estimate", "outcome"), [
    (Rule("greater"), _est(0.5, 0.0, 0.9), Outcome.INCONCLUSIVE),  # touching, not inclusive
    (Rule("greater", inclusive=True), _est(0.5, 0.0, 0.9), Outcome.PASS),
    (Rule("less", reference=0.2, inclusive=True), _est(0.0, -0.3, 0.2), Outcome.PASS),
    (Rule("less", reference=0.2, inclusive=True), _est(0.0, -0.3, 0.2 + 1e-12),
     Outcome.INCONCLUSIVE),
    (Rule("greater", min_effect=0.5), _est(0.5, 0.1, 0.9), Outcome.PASS),  # reaches exactly
    (Rule("greater", min_effect=0.5), _est(0.5 - 1e-12, 0.1, 0.9), Outcome.INCONCLUSIVE),
    (Rule("less"), _est(0.5, 0.0, 0.9), Outcome.INCONCLUSIVE),  # lower bound on the line
    (Rule("less"), _est(0.5, 1e-12, 0.9), Outcome.FAIL),
    (Rule("within", band=(-0.3, 0.3)), _est(0.0, -0.3, 0.3), Outcome.PASS),  # edges count
    (Rule("within", band=(-0.3, 0.3)), _est(0.5, 0.3, 0.7), Outcome.INCONCLUSIVE),
    (Rule("within", band=(-0.3, 0.3)), _est(0.5, 0.3 + 1e-12, 0.7), Outcome.FAIL),
])
def test_rule_boundaries(rule, estimate, outcome):
    assert rule.judge(estimate) is outcome


def test_an_unstable_jackknife_is_not_bias_corrected():
    """A statistic that jumps when any one seed is left out (as a ratio does whose
    denominator nearly vanishes): the bias correction would move the interval off the value
    by more than its own error, so it is not applied."""
    def jumpy(idx: np.ndarray) -> float:
        return 1.0 if len(idx) == 3 else 2.0 + 0.1 * float(idx[0])

    est = stats.jackknife(jumpy, 3, name="r")
    assert est.ci_low <= est.value <= est.ci_high and "bias > se" in est.method
    smooth = stats.jackknife(lambda i: float(np.array([1.0, 1.2, 0.9])[i].mean()), 3, name="m")
    assert "bias > se" not in smooth.method


# ----------------------------------------------------------------- paths a mutation run found


def test_mean_correlation_monte_carlo_p_agrees_with_the_exact_p(monkeypatch):
    rng = np.random.default_rng(3)
    samples = [(np.arange(5.0), rng.permutation(5) + 0.3 * np.arange(5)) for _ in range(2)]
    exact = stats.mean_correlation(samples)
    monkeypatch.setattr(correlations, "EXACT_PERMUTATIONS", 0)  # force the seeded resamples
    sampled = stats.mean_correlation(samples, n_resamples=4000)
    assert 0.05 < exact.p_value < 0.95
    assert 0 < sampled.p_value <= 1 and abs(sampled.p_value - exact.p_value) < 0.04


def test_pearson_interval_is_fisher_z_with_se_one_over_root_n_minus_3():
    x = np.arange(12.0)
    y = x + np.random.default_rng(0).normal(0, 3, 12)
    est = stats.correlation(x, y, method="pearson", n_resamples=99)
    z, half = math.atanh(est.value), 1.959963984540054 / math.sqrt(12 - 3)
    assert est.ci_low == pytest.approx(math.tanh(z - half))
    assert est.ci_high == pytest.approx(math.tanh(z + half))


def test_kendall_needs_five_pairs_for_its_interval():
    with pytest.raises(ValueError, match="at least 5"):
        stats.correlation([1, 2, 3, 4], [1, 3, 2, 4], method="kendall")


def test_an_unstable_jackknife_spans_the_t_interval_around_the_plain_value():
    ratios = np.array([1.55, 0.08, -0.84])  # 1/mean near 0/0: bias (6.7) larger than se (3.2)
    est = stats.jackknife(lambda idx: 1.0 / ratios[idx].mean(), 3, name="1/mean")
    loo = np.array([1.0 / np.delete(ratios, i).mean() for i in range(3)])
    se = math.sqrt(2 / 3 * ((loo - loo.mean()) ** 2).sum())
    t = stats_t_quantile(2)
    value = 1.0 / ratios.mean()
    centre = 3 * value - 2 * loo.mean()
    assert abs(centre - value) > se  # unstable: the interval spans both centres
    assert est.ci_low == pytest.approx(min(centre, value) - t * se)
    assert est.ci_high == pytest.approx(max(centre, value) + t * se)


def stats_t_quantile(df: int) -> float:
    from scipy import stats as sps

    return float(sps.t.ppf(0.975, df))


def test_granulated_tau_interval_is_the_percentile_of_group_resamples():
    import pandas as pd

    from netclaims.metrics import group_taus

    rng = np.random.default_rng(0)
    rows = [{"a": a, "b": b, "c": c, "m": rng.normal(), "acc": rng.normal()}
            for a in (0, 1) for b in (0, 1) for c in range(4)]
    frame = pd.DataFrame(rows)
    est = stats.granulated_tau(frame, "m", "acc", ["a", "b"], n_resamples=999)
    taus = {k: np.array(v) for k, v in group_taus(frame, "m", "acc", ["a", "b"]).items() if v}
    draw_rng = np.random.default_rng(0)
    picks = {k: draw_rng.integers(0, t.size, (999, t.size)) for k, t in taus.items()}
    draws = np.mean([taus[k][picks[k]].mean(axis=1) for k in taus], axis=0)
    assert (est.ci_low, est.ci_high) == pytest.approx(tuple(np.quantile(draws, [0.025, 0.975])))


def test_cohens_d_and_hedges_g_by_hand():
    a, b = [1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0]
    pooled = math.sqrt((3 * np.var(a, ddof=1) + 3 * np.var(b, ddof=1)) / 6)
    assert stats.cohens_d(a, b) == pytest.approx(-2.0 / pooled)
    assert stats.hedges_g(a, b) == pytest.approx(-2.0 / pooled * (1 - 3 / (4 * 8 - 9)))


def test_values_equal_up_to_rounding_are_a_zero_width_sample():
    nearly = [0.1 + 0.2, 0.3, 0.30000000000000004 * (1 + 1e-15)]
    est = stats.mean(nearly)
    assert est.ci_low == est.ci_high  # no spread made of rounding errors
    assert judge("X-1", est, Rule("greater")).outcome is Outcome.INCONCLUSIVE


def test_units_to_decide_is_the_smallest_n_whose_t_interval_excludes_the_value():
    est = stats.mean([0.3, 1.1, 0.9, 1.7])
    sd = float(np.std([0.3, 1.1, 0.9, 1.7], ddof=1))
    needed = est.test.units_to_decide(0.0)
    half_width = [sps.t.ppf(0.975, m - 1) * sd / math.sqrt(m) for m in (needed - 1, needed)]
    assert half_width[1] < est.value <= half_width[0]
    one = stats.mean([0.5, 1.5, 1.0])  # an effect of exactly 1 is decided too
    assert one.test.units_to_decide(0.0) is not None
