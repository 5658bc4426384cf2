"""Effect sizes, CIs, p-values and the CLAIMS.md decision rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from netclaims import stats
from netclaims.stats import Estimate, Evidence, Outcome, Rule, judge, seed_mean, seed_paired


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


def test_mean_difference_ci_covers_truth_and_p_detects_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 40), rng.normal(0.0, 1.0, 40)
    est = stats.mean_difference(a, b, n_resamples=2000)
    assert est.ci_low < a.mean() - b.mean() < est.ci_high
    assert est.ci_low > 0 and est.p_value < 0.01 and est.n == 80
    same = stats.mean_difference(a, a + rng.normal(0, 1e-9, 40), paired=True,
                                 n_resamples=2000)
    assert abs(same.value) < 1e-8 and same.p_value > 0.05


def test_correlations_match_scipy_and_fisher_interval():
    rng = np.random.default_rng(1)
    x = rng.normal(size=30)
    y = x + rng.normal(scale=0.5, size=30)
    est = stats.correlation(x, y, n_resamples=2000)
    assert est.value == pytest.approx(sps.spearmanr(x, y).statistic)
    assert est.ci_low < est.value < est.ci_high and est.p_value < 0.01
    fisher = stats.correlation(x, y, ci="fisher", n_resamples=500)
    se = math.sqrt((1 + est.value**2 / 2) / 27)
    assert fisher.ci_low == pytest.approx(math.tanh(math.atanh(est.value) - 1.959964 * se),
                                          rel=1e-5)
    kendall = stats.correlation(x, y, method="kendall", n_resamples=500)
    assert kendall.value == pytest.approx(sps.kendalltau(x, y, variant="b").statistic, abs=0.02)
    with pytest.raises(ValueError, match="constant"):
        stats.correlation(x, np.ones(30))


def test_slope_and_effect_sizes():
    x = np.arange(10.0)
    y = 2 * x + np.random.default_rng(2).normal(scale=0.1, size=10)
    est = stats.slope(x, y, n_resamples=1000)
    assert est.value == pytest.approx(2.0, abs=0.05) and est.ci_low > 1.8
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 1.0, 2.0, 3.0])
    assert stats.cohens_d(a, b) == pytest.approx(1 / np.std(a, ddof=1))
    assert stats.hedges_g(a, b) == pytest.approx(stats.cohens_d(a, b) * (1 - 3 / (4 * 8 - 9)))


def test_degenerate_bootstrap_gives_point_interval():
    est = stats.mean([2.0, 2.0, 2.0], n_resamples=200)
    assert est.ci_low == est.ci_high == 2.0


def test_same_seed_same_numbers():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=12), rng.normal(size=12)
    assert stats.correlation(x, y, seed=7, n_resamples=999) == stats.correlation(
        x, y, seed=7, n_resamples=999)


def test_generic_bootstrap_and_permutation_helpers():
    x = np.arange(20.0)
    lo, hi = stats.bootstrap_ci([x], lambda a, axis=-1: np.median(a, axis=axis),
                                n_resamples=500)
    assert lo <= np.median(x) <= hi
    p = stats.permutation_pvalue([x, x + 100], lambda a, b, axis=-1: np.mean(a, axis=axis)
                                 - np.mean(b, axis=axis), n_resamples=500)
    assert p < 0.01


def test_resampled_estimate_over_units():
    values = np.array([1.0, 2.0, 3.0, 10.0])

    def ratio_of_means(idx: np.ndarray) -> float:  # not a vectorized statistic
        return float(values[idx].mean() / values.mean())

    est = stats.resampled(ratio_of_means, 4, name="ratio", n_resamples=999)
    assert est.value == pytest.approx(1.0) and est.n == 4 and est.p_value is None
    assert est.ci_low < 1.0 < est.ci_high and est.ci_high <= 10.0 / values.mean()
    assert est == stats.resampled(ratio_of_means, 4, name="ratio", n_resamples=999)
    assert "999 resamples" in est.method
    calls = []
    stats.resampled(lambda idx: calls.append(idx.tolist()) or float(values[idx].sum()), 3,
                    name="sum", n_resamples=999)
    # the point estimate, then once per distinct multiset of 3 units (there are 10)
    assert len(calls) <= 11 and all(c == sorted(c) for c in calls)


def test_resampled_rejects_too_few_units_and_mostly_undefined_statistics():
    with pytest.raises(ValueError, match="at least 2"):
        stats.resampled(lambda idx: 0.0, 1, name="x")

    def undefined_unless_all_distinct(idx: np.ndarray) -> float:
        return 1.0 if len(set(idx.tolist())) == len(idx) else float("nan")

    with pytest.raises(ValueError, match="undefined"):
        stats.resampled(undefined_unless_all_distinct, 5, name="x", n_resamples=200)


def test_seed_mean_and_paired_name_the_statistic_and_keep_the_values():
    evidence = seed_mean([0.2, 0.3, 0.25], statistic="gap", details={"note": 1})
    verdict = judge("X-1", evidence, Rule("greater"), finding="a gap")
    assert verdict.statistic == "gap" and verdict.estimate == pytest.approx(0.25)
    assert verdict.outcome is Outcome.PASS
    assert verdict.details == {"per_seed": [0.2, 0.3, 0.25], "note": 1}
    paired = judge("X-2", seed_paired([1.0, 2.0, 3.0], [1.5, 2.5, 3.5], statistic="a - b"),
                   Rule("greater"))
    assert paired.estimate == pytest.approx(-0.5) and paired.outcome is Outcome.FAIL
    assert paired.details == {"a": [1.0, 2.0, 3.0], "b": [1.5, 2.5, 3.5]}
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
    """A 1-ulp change of the inputs moves a BCa interval of 3 values by ulps, not by a
    fraction of its width (as it did while reorderings of the sample summed differently)."""
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
