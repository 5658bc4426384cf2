"""What every effect is: an :class:`Estimate` (value, 95% CI, n, p-value, how each was
obtained) and the t-test behind it, with the helpers the estimators share."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np
from scipy import stats as sps

from netclaims._checks import ArrayLike, as_tensor

CONFIDENCE = 0.95


RESAMPLES = 9999


class Outcome(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    ERROR = "ERROR"


@dataclass(frozen=True)
class TTest:
    """What a t-based interval was built from, so its test can be taken against any value:
    ``t = (centre − g(v)) / se`` on ``df`` degrees of freedom, ``g`` the log with ``log``."""

    centre: float
    se: float
    df: float
    log: bool = False

    def p_against(self, value: float) -> float:
        return float(2 * sps.t.sf(abs(self.centre - self._scale(value)) / self.se, self.df))

    def _scale(self, value: float) -> float:
        return math.log(value) if self.log else value

    def units_to_decide(self, value: float, limit: int = 1000) -> int | None:
        """How many independent units (seeds) an interval built like this one would need to
        exclude ``value`` if the effect and the per-unit spread stayed as observed (None when
        the effect is 0 or more than ``limit`` would be needed)."""
        n = self.df + 1
        sd, effect = self.se * math.sqrt(n), abs(self.centre - self._scale(value))
        if effect == 0:
            return None
        for m in range(2, limit + 1):
            if t_quantile(m - 1) * sd / math.sqrt(m) < effect:
                return m
        return None


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its 95% confidence interval, sample size and p-value.

    ``method`` says how the CI and p-value were obtained (e.g. ``"Student t over 3 values,
    df 2; t-test p against 0, two-sided"``); ``null`` is the value the p-value tests, and
    ``test`` (t-based estimates) lets :meth:`against` move it to a rule's reference.
    """

    statistic: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    p_value: float | None = None
    method: str = ""
    null: float = 0.0
    test: TTest | None = None

    @property
    def finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.value, self.ci_low, self.ci_high))

    def against(self, reference: float) -> Estimate:
        """The estimate with its p-value testing ``reference`` (a gain against 2, not 0),
        where its test allows; otherwise unchanged."""
        if self.test is None or reference == self.null or (self.test.log and reference <= 0):
            return self
        return replace(self, p_value=self.test.p_against(reference), null=reference,
                       method=self.method.replace(f"against {self.null:g}",
                                                  f"against {reference:g}"))


def vector(x: ArrayLike, name: str, min_n: int = 1) -> np.ndarray:
    return as_tensor(x, name, ndim=1, min_rows=min_n).double().cpu().numpy()


def t_quantile(df: float, confidence: float = CONFIDENCE) -> float:
    return float(sps.t.ppf(0.5 + confidence / 2, df))


def is_constant(values: np.ndarray) -> bool:
    """Whether ``values`` are equal up to rounding (a mean of equal values computed in
    another order may differ in its last bits)."""
    return float(np.ptp(values)) <= 1e-12 * float(np.max(np.abs(values)))


def t_estimate(name: str, value: float, se: float, df: float, n: int, null: float,
                how: str, confidence: float = CONFIDENCE) -> Estimate:
    """``value ± t(df) · se`` and the two-sided t-test p against ``null``. A zero standard
    error (every value equal) gives a zero-width interval and no p-value: the spread is
    unknown, and the rule reads such an interval as undecided."""
    if se == 0 or not math.isfinite(se):
        return Estimate(name, value, value, value, n, None,
                        f"{how}; no spread (every value equal): interval undefined", null)
    q = t_quantile(df, confidence)
    test = TTest(value, se, df)
    return Estimate(name, value, value - q * se, value + q * se, n, test.p_against(null),
                    f"{how}, df {df:.3g}; t-test p against {null:g}, two-sided", null, test)


def permutation_p(data: tuple[np.ndarray, ...], statistic: Callable, kind: str, seed: int,
                   n_resamples: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sps.permutation_test(data, statistic, permutation_type=kind, vectorized=True,
                                   n_resamples=n_resamples, alternative="two-sided",
                                   rng=np.random.default_rng(seed))
    return float(res.pvalue)


def order_free_mean(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """The mean of the sorted values: every reordering of one multiset sums in the same
    order, so an estimate does not move with the order its values came in."""
    return np.mean(np.sort(a, axis=axis), axis=axis)
