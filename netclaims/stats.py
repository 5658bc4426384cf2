"""Effect sizes, confidence intervals, p-values and the claims' verdict rule (docs/statistics.md).

Every effect comes as an :class:`Estimate` (value, 95% CI, n, p-value and how each was
obtained), with intervals valid at the few seeds a claim has (Student t over seeds, Fisher z
for correlations of independent pairs, the jackknife for statistics of the mean curve; their
levels are checked by simulation in ``tests/test_calibration.py``). A :class:`Rule` (the
catalogue's predicted direction, reference value and minimum effect) turns it into a
:class:`Verdict`: PASS when the whole CI lies on the predicted side, the p-value agrees and the
point estimate reaches the minimum effect, FAIL when the whole CI lies on the other side (and
the p-value agrees), INCONCLUSIVE otherwise, ERROR when the numbers are not finite.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

from netclaims._checks import ArrayLike, as_tensor
from netclaims.metrics.ranking import granulated_permutation_p, group_taus

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
            if _quantile(m - 1) * sd / math.sqrt(m) < effect:
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


def _vector(x: ArrayLike, name: str, min_n: int = 1) -> np.ndarray:
    return as_tensor(x, name, ndim=1, min_rows=min_n).double().cpu().numpy()


def _quantile(df: float, confidence: float = CONFIDENCE) -> float:
    return float(sps.t.ppf(0.5 + confidence / 2, df))


def _constant(values: np.ndarray) -> bool:
    """Whether ``values`` are equal up to rounding (a mean of equal values computed in
    another order may differ in its last bits)."""
    return float(np.ptp(values)) <= 1e-12 * float(np.max(np.abs(values)))


def _t_estimate(name: str, value: float, se: float, df: float, n: int, null: float,
                how: str, confidence: float = CONFIDENCE) -> Estimate:
    """``value ± t(df) · se`` and the two-sided t-test p against ``null``. A zero standard
    error (every value equal) gives a zero-width interval and no p-value: the spread is
    unknown, and the rule reads such an interval as undecided."""
    if se == 0 or not math.isfinite(se):
        return Estimate(name, value, value, value, n, None,
                        f"{how}; no spread (every value equal): interval undefined", null)
    q = _quantile(df, confidence)
    test = TTest(value, se, df)
    return Estimate(name, value, value - q * se, value + q * se, n, test.p_against(null),
                    f"{how}, df {df:.3g}; t-test p against {null:g}, two-sided", null, test)


def _permutation_p(data: tuple[np.ndarray, ...], statistic: Callable, kind: str, seed: int,
                   n_resamples: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sps.permutation_test(data, statistic, permutation_type=kind, vectorized=True,
                                   n_resamples=n_resamples, alternative="two-sided",
                                   rng=np.random.default_rng(seed))
    return float(res.pvalue)


def _mean(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """The mean of the sorted values: every reordering of one multiset sums in the same
    order, so an estimate does not move with the order its values came in."""
    return np.mean(np.sort(a, axis=axis), axis=axis)


# --------------------------------------------------------------------------- statistics


def mean(values: ArrayLike, *, reference: float = 0.0) -> Estimate:
    """Mean of ``values`` (independent units, e.g. one effect per training seed) with the
    Student-t interval ``mean ± t(n−1) · s/√n`` and the one-sample t-test p against
    ``reference``. Exact for normal values at any n ≥ 2; with 3 seeds t(2) = 4.30, so only
    effects several standard errors wide are decided (``docs/statistics.md``)."""
    x = _vector(values, "values", 2)
    return _t_of_mean("mean", x, reference, f"Student t over {x.size} values")


def _t_of_mean(name: str, x: np.ndarray, null: float, how: str) -> Estimate:
    """The one-sample t estimate of the mean of independent values ``x``."""
    n = int(x.size)
    sd = 0.0 if _constant(x) else float(np.std(x, ddof=1))
    return _t_estimate(name, float(_mean(x)), sd / math.sqrt(n), n - 1, n, null, how)


def mean_difference(a: ArrayLike, b: ArrayLike, *, paired: bool = False) -> Estimate:
    """``mean(a) − mean(b)``: paired, the t interval and test of the per-pair differences;
    unpaired, Welch's interval and test (unequal variances, Welch–Satterthwaite df)."""
    x, y = _vector(a, "a", 2), _vector(b, "b", 2)
    if paired:
        if x.size != y.size:
            raise ValueError(f"paired samples need equal sizes, got {x.size} and {y.size}")
        return _t_of_mean("mean difference", np.sort(x - y), 0.0,
                          f"paired Student t over {x.size} pairs")
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1)) if se > 0 else 1.0
    return _t_estimate("mean difference", float(_mean(x) - _mean(y)), se, df,
                       int(x.size + y.size), 0.0, f"Welch t over {x.size} + {y.size} values")


def cohens_d(a: ArrayLike, b: ArrayLike, *, hedges: bool = False) -> float:
    """Standardized mean difference ``(mean(a) - mean(b)) / pooled sd``; with ``hedges``
    multiplied by the small-sample correction ``1 - 3 / (4 (na + nb) - 9)`` (Hedges' g)."""
    x, y = _vector(a, "a", 2), _vector(b, "b", 2)
    na, nb = x.size, y.size
    pooled = math.sqrt(((na - 1) * x.var(ddof=1) + (nb - 1) * y.var(ddof=1)) / (na + nb - 2))
    if pooled == 0:
        raise ValueError("both samples are constant: the standardized difference is undefined")
    d = (x.mean() - y.mean()) / pooled
    return float(d * (1 - 3 / (4 * (na + nb) - 9)) if hedges else d)


def hedges_g(a: ArrayLike, b: ArrayLike) -> float:
    """Hedges' g: Cohen's d with the small-sample bias correction."""
    return cohens_d(a, b, hedges=True)


def _pearson(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    xc = x - x.mean(axis=axis, keepdims=True)
    yc = y - y.mean(axis=axis, keepdims=True)
    num = (xc * yc).sum(axis=axis)
    den = np.sqrt((xc * xc).sum(axis=axis) * (yc * yc).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return r


def _spearman(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return _pearson(sps.rankdata(x, axis=axis), sps.rankdata(y, axis=axis), axis=axis)


def _kendall(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """τ-a: (concordant − discordant) / (n(n−1)/2); a pair tied in either variable counts
    as neither."""
    x, y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
    sx = np.sign(x[..., :, None] - x[..., None, :])
    sy = np.sign(y[..., :, None] - y[..., None, :])
    n = x.shape[-1]
    return (sx * sy).sum(axis=(-1, -2)) / (n * (n - 1))


CORRELATIONS: dict[str, Callable] = {"spearman": _spearman, "pearson": _pearson,
                                     "kendall": _kendall}
FISHER_SE: dict[str, Callable[[float, int], float]] = {
    "spearman": lambda r, n: math.sqrt((1 + r * r / 2) / (n - 3)),  # Bonett & Wright 2000
    "pearson": lambda r, n: 1 / math.sqrt(n - 3),
    "kendall": lambda r, n: math.sqrt(0.437 / (n - 4)),  # Fieller, Hartley & Pearson 1957
}
FISHER_MIN_N = {"spearman": 4, "pearson": 4, "kendall": 5}


def _paired_vectors(x: ArrayLike, y: ArrayLike, min_n: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = _vector(x, "x", min_n), _vector(y, "y", min_n)
    if a.size != b.size:
        raise ValueError(f"x has {a.size} values but y has {b.size}")
    return a, b


def rank_correlation(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman ρ of two paired samples, without an interval (e.g. one value per network,
    to be summarized across networks)."""
    a, b = _paired_vectors(x, y, 2)
    if np.all(a == a[0]) or np.all(b == b[0]):
        raise ValueError("a correlation with a constant variable is undefined")
    return float(_spearman(a, b))


EXACT_PERMUTATIONS = 100_000
"""Up to this many within-unit orderings a permutation p-value is enumerated exactly."""


def _null_rhos(x: np.ndarray, y: np.ndarray, rng: np.random.Generator | None,
               n_resamples: int) -> np.ndarray:
    """Spearman ρ of ``x`` with every ordering of ``y`` (``rng`` None) or with
    ``n_resamples`` random ones."""
    if rng is None:
        orders = np.array(list(itertools.permutations(range(y.size))))
    else:
        orders = np.argsort(rng.random((n_resamples, y.size)), axis=1)
    return _spearman(np.broadcast_to(x, orders.shape), y[orders])


def mean_correlation(samples: Sequence[tuple[ArrayLike, ArrayLike]], *, seed: int = 0,
                     n_resamples: int = RESAMPLES) -> Estimate:
    """Mean over independent units (training seeds) of the Spearman ρ computed within each
    unit (e.g. over the layers, checkpoints or neurons of one network, which are not
    independent of each other), with the Student-t interval over the units and a stratified
    permutation p-value (``y`` shuffled within each unit): exact over every ordering while
    there are at most :data:`EXACT_PERMUTATIONS`, else from ``n_resamples`` seeded ones.
    With a handful of points per unit ρ takes few values and the t interval alone is too
    narrow; the p-value keeps the level."""
    pairs = [_paired_vectors(x, y, 3) for x, y in samples]
    if len(pairs) < 2:
        raise ValueError(f"a mean over units needs at least 2 of them, got {len(pairs)}")
    rhos = [rank_correlation(x, y) for x, y in pairs]
    observed = float(np.mean(rhos))
    exact = math.prod(math.factorial(x.size) for x, _ in pairs) <= EXACT_PERMUTATIONS
    rng = None if exact else np.random.default_rng(seed)
    nulls = [_null_rhos(x, y, rng, n_resamples) for x, y in pairs]
    if exact:
        total = nulls[0]
        for null in nulls[1:]:
            total = (total[:, None] + null[None, :]).ravel()
        p = float(np.mean(np.abs(total / len(pairs)) >= abs(observed) - 1e-12))
        how = "exact stratified permutation p"
    else:
        total = np.mean(nulls, axis=0)
        p = float((1 + np.sum(np.abs(total) >= abs(observed) - 1e-12)) / (1 + n_resamples))
        how = f"stratified permutation p ({n_resamples} resamples, seed {seed})"
    est = mean(rhos)
    return replace(est, statistic="mean spearman rho", p_value=p, test=None,
                   method=f"Student t over {len(rhos)} units of within-unit rho; {how} "
                          "(y shuffled within each unit), two-sided")


def correlation(x: ArrayLike, y: ArrayLike, *, method: str = "spearman", seed: int = 0,
                n_resamples: int = RESAMPLES) -> Estimate:
    """Rank or linear correlation of independent pairs, with the Fisher-z interval
    ``tanh(atanh(r) ± z · se)`` (se: Bonett & Wright for Spearman, ``1/√(n−3)`` for Pearson,
    Fieller et al. for Kendall) and a permutation p-value (pairings shuffled). Pairs that
    share a training run are not independent: correlate within each run and summarize the
    per-run values with :func:`mean`."""
    if method not in CORRELATIONS:
        raise ValueError(f"method must be one of {list(CORRELATIONS)}, got {method!r}")
    a, b = _paired_vectors(x, y, FISHER_MIN_N[method])
    if np.all(a == a[0]) or np.all(b == b[0]):
        raise ValueError("a correlation with a constant variable is undefined")
    fn = CORRELATIONS[method]
    r = float(fn(a, b))
    se = FISHER_SE[method](r, int(a.size))
    z = math.atanh(max(min(r, 1 - 1e-12), -1 + 1e-12))
    q = float(sps.norm.ppf(0.5 + CONFIDENCE / 2))
    p = _permutation_p((a, b), fn, "pairings", seed, n_resamples)
    return Estimate(f"{method} rho" if method != "kendall" else "kendall tau", r,
                    math.tanh(z - q * se), math.tanh(z + q * se), int(a.size), p,
                    f"Fisher z over {a.size} pairs; permutation p (pairings, "
                    f"{n_resamples} resamples, seed {seed}), two-sided")


def slope(x: ArrayLike, y: ArrayLike) -> Estimate:
    """Least-squares slope of ``y`` on ``x`` with the classical t interval (df n − 2) and the
    t-test p against a zero slope."""
    a, b = _paired_vectors(x, y, 3)
    if np.all(a == a[0]):
        raise ValueError("x is constant: the slope is undefined")
    xc, yc = a - a.mean(), b - b.mean()
    sxx = float((xc * xc).sum())
    beta = float((xc * yc).sum()) / sxx
    residual = yc - beta * xc
    n = int(a.size)
    se = math.sqrt(float((residual * residual).sum()) / (n - 2) / sxx)
    return _t_estimate("slope", beta, se, n - 2, n, 0.0, f"OLS over {n} points")


def jackknife(statistic: Callable[[np.ndarray], float], n: int, *, name: str,
              log: bool = False, confidence: float = CONFIDENCE) -> Estimate:
    """An estimate over ``n`` independent units (training seeds) for statistics that are not
    a mean of per-unit values (e.g. a width gain computed on the mean-over-seeds curve):
    ``statistic(indices)`` gets the indices of the units to use. The value is ``θ``, the
    statistic on all units; the interval is the jackknife's around its bias-corrected
    estimate, ``θ_J ± t(n−1) · se`` with ``θ_J = nθ − (n−1)θ̄₋`` and ``se² = (n−1)/n · Σ
    (θ₋ᵢ − θ̄₋)²`` over the leave-one-out values θ₋ᵢ (Efron & Tibshirani 1993, ch. 11):
    centred on θ, a gain of the mean curve at 3 seeds passed a null 1.5 times as often as
    its level. A correction larger than the standard error means the statistic is unstable
    across seeds (e.g. a ratio with a denominator near 0); the interval then spans both the
    interval around θ and the one around θ_J.
    With ``log`` the interval is taken on the log scale and mapped back (a positive ratio's
    interval is skewed). Its level at 3 and 5 seeds is checked by
    simulation in ``tests/test_calibration.py``. The p-value tests 0 (1 with ``log``)."""
    if n < 3:
        raise ValueError(f"the jackknife needs at least 3 units, got {n}")
    units = np.arange(n)
    raw = [float(statistic(units))] + [float(statistic(np.delete(units, i))) for i in range(n)]
    if not all(math.isfinite(v) and (v > 0 or not log) for v in raw):
        raise ValueError(f"{name}: the statistic is undefined{' or not positive' * log} "
                         f"without one of the {n} units")
    value, loo = (np.log(raw[0]), np.log(raw[1:])) if log else (raw[0], np.array(raw[1:]))
    spread = 0.0 if _constant(loo) else float(((loo - loo.mean()) ** 2).sum())
    se = math.sqrt((n - 1) / n * spread)
    centre = float(n * value - (n - 1) * loo.mean())
    est = _t_estimate(name, centre, se, n - 1, n, 0.0,
                      f"jackknife over {n} units{' (log scale)' * log}, bias-corrected",
                      confidence)
    if not abs(centre - value) <= se:  # unstable (a ratio near 0/0): span both centres
        plain = _t_estimate(name, float(value), se, n - 1, n, 0.0, "", confidence)
        p_values = [e.p_value for e in (est, plain) if e.p_value is not None]
        est = replace(est, ci_low=min(est.ci_low, plain.ci_low),
                      ci_high=max(est.ci_high, plain.ci_high),
                      p_value=max(p_values) if p_values else None, test=None,
                      method=est.method.replace("bias-corrected", "spanning the value and its "
                                                "bias correction (bias > se)"))
    if not log:
        return replace(est, value=raw[0])
    return replace(est, value=raw[0], ci_low=math.exp(est.ci_low),
                   ci_high=math.exp(est.ci_high), null=1.0,
                   method=est.method.replace("against 0", "against 1"),
                   test=None if est.test is None else replace(est.test, log=True))


def simultaneous(components: Mapping[str, Callable[[np.ndarray], float]], n: int,
                 combine: Callable[[Mapping[str, float]], float], *, name: str) -> Estimate:
    """An estimate of ``combine`` of several jackknifed quantities (e.g. the larger of two
    gains, the smallest over tasks), where ``combine`` is non-decreasing in every component.
    Each component gets its jackknife interval at confidence ``1 − 0.05/K`` (Bonferroni, K
    components), so all K hold at once with probability ≥ 95%, and then so does ``[combine
    (lower bounds), combine(upper bounds)]``. No p-value. (A jackknife of a maximum itself
    is too narrow: at 3 seeds it passed a null twice as often as its level.)"""
    k = len(components)
    level = 1 - (1 - CONFIDENCE) / k
    parts = {key: jackknife(fn, n, name=key, confidence=level)
             for key, fn in components.items()}
    return Estimate(name, float(combine({k_: e.value for k_, e in parts.items()})),
                    float(combine({k_: e.ci_low for k_, e in parts.items()})),
                    float(combine({k_: e.ci_high for k_, e in parts.items()})), n, None,
                    f"jackknife over {n} units of {k} components, each at {level:.4g} "
                    "(Bonferroni), combined bound by bound")


def granulated_tau(frame: pd.DataFrame, measure: str, target: str, axes: Sequence[str], *,
                   minus: str | None = None, seed: int = 0,
                   n_resamples: int = 1999) -> Estimate:
    """Total granulated Kendall τ of ``measure`` against ``target`` over a zoo of models
    (:func:`netclaims.metrics.granulated_kendall`), or its difference with ``minus``'s.

    CI: percentile bootstrap that resamples, per hyperparameter, the groups of models
    differing only in it (the same draws for both measures of a difference). With two models
    per group that interval is too narrow alone (a difference passed a null 9% of the time),
    so the estimate also carries a permutation p-value
    (:func:`netclaims.metrics.granulated_permutation_p`: the measure shuffled across models,
    or the two measures' ranks swapped per model), which the rule requires to agree; the
    level of both paths is checked by simulation on the smoke zoo's design in
    ``tests/test_calibration.py``."""
    measures = [measure] + ([minus] if minus else [])
    taus = {m: {a: np.array(t) for a, t in group_taus(frame, m, target, list(axes)).items()
                if t} for m in measures}
    used = list(taus[measure])
    if not used:
        raise ValueError(f"no axis among {list(axes)} varies within a group of models")

    rng = np.random.default_rng(seed)
    picks = {a: rng.integers(0, taus[measure][a].size, (n_resamples, taus[measure][a].size))
             for a in used}

    def totals(m: str) -> tuple[float, np.ndarray]:
        """The total, and its value in every resample of the groups."""
        return (float(np.mean([taus[m][a].mean() for a in used])),
                np.mean([taus[m][a][picks[a]].mean(axis=1) for a in used], axis=0))

    value, draws = totals(measure)
    if minus:
        other, other_draws = totals(minus)
        value, draws = value - other, draws - other_draws
    lo, hi = np.quantile(draws, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    p = granulated_permutation_p(frame, measure, target, axes, minus=minus,
                                 resamples=n_resamples, seed=seed)
    how = (f"bootstrap percentile over groups per hyperparameter, {n_resamples} resamples, "
           f"seed {seed}; permutation p ({n_resamples} resamples), two-sided")
    if minus:
        return Estimate(f"total tau({measure}) - total tau({minus})", value, float(lo),
                        float(hi), len(frame), p, f"paired {how} (ranks swapped per model)")
    return Estimate(f"granulated tau({measure}, {target})", value, float(lo), float(hi),
                    len(frame), p, f"{how} (measure shuffled across models)")


# --------------------------------------------------------------------------- verdicts


def _fmt(x: float) -> str:
    return f"{x:.3g}"


@dataclass(frozen=True)
class Rule:
    """A pre-registered decision rule from the catalogue, declared once in a claim's
    ``@claim(..., rule=...)``.

    ``direction="greater"``: the effect is predicted above ``reference``; ``"less"``: below;
    ``"within"``: inside ``band``. ``min_effect``: the point estimate must reach it (``>=`` for
    greater, ``<=`` for less). ``inclusive``: the CI may touch ``reference`` (rows written
    "≥" or "≤" with a bound). ``also``: further conditions the catalogue row names (e.g.
    "hit rate > chance"); the claim reports whether each held in :attr:`Evidence.checks`, and
    one that did not hold turns a PASS into INCONCLUSIVE.
    """

    direction: Literal["greater", "less", "within"]
    reference: float = 0.0
    min_effect: float | None = None
    band: tuple[float, float] | None = None
    inclusive: bool = False
    also: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.direction not in ("greater", "less", "within"):
            raise ValueError(f"direction must be greater, less or within, got {self.direction!r}")
        if self.direction == "within" and (self.band is None or self.band[0] > self.band[1]):
            raise ValueError("a 'within' rule needs band=(low, high) with low <= high")
        if isinstance(self.also, str):
            raise TypeError(f"Rule(also=...) takes a tuple of conditions, got the string "
                            f"{self.also!r}; write also=({self.also!r},)")

    def describe(self) -> str:
        if self.direction == "within":
            return f"CI within [{_fmt(self.band[0])}, {_fmt(self.band[1])}]"
        op = {"greater": ">=" if self.inclusive else ">",
              "less": "<=" if self.inclusive else "<"}[self.direction]
        text = f"CI {op} {_fmt(self.reference)}"
        if self.min_effect is not None:
            bound = ">=" if self.direction == "greater" else "<="
            text += f" and estimate {bound} {_fmt(self.min_effect)}"
        return "; ".join((text, *self.also))

    def judge(self, estimate: Estimate) -> Outcome:
        """The outcome of the rule on the estimate alone (without :attr:`also`)."""
        return self.decide(estimate)[0]

    def decide(self, estimate: Estimate) -> tuple[Outcome, str]:
        """The outcome on the estimate alone, and why it is not the interval's plain reading
        (empty when it is). A zero-width interval over several values (no spread) decides
        nothing; when the p-value tests the rule's reference, PASS and FAIL also need it
        below 0.05 (the interval and the test must agree)."""
        if not estimate.finite or estimate.ci_low > estimate.ci_high:
            reason = ("non-finite estimate or CI" if not estimate.finite
                      else "the CI's lower bound exceeds its upper bound")
            return Outcome.ERROR, reason
        outcome = self._read(estimate)
        if outcome is Outcome.INCONCLUSIVE:
            return outcome, ""
        if estimate.ci_low == estimate.ci_high and estimate.n > 1:
            return Outcome.INCONCLUSIVE, ("every value is the same: the interval has no "
                                          "width, so the spread is unknown")
        tests_reference = self.direction != "within" and estimate.null == self.reference
        p = estimate.p_value
        if tests_reference and p is not None and p >= 1 - CONFIDENCE:
            return Outcome.INCONCLUSIVE, f"the interval decides but p = {_fmt(p)} does not"
        return outcome, ""

    def _read(self, estimate: Estimate) -> Outcome:
        lo, hi, v = estimate.ci_low, estimate.ci_high, estimate.value
        if self.direction == "within":
            a, b = self.band
            if a <= lo and hi <= b:
                return Outcome.PASS
            return Outcome.FAIL if (hi < a or lo > b) else Outcome.INCONCLUSIVE
        ref = self.reference
        if self.direction == "greater":
            on_side = lo >= ref if self.inclusive else lo > ref
            other_side = hi < ref
            reaches = self.min_effect is None or v >= self.min_effect
        else:
            on_side = hi <= ref if self.inclusive else hi < ref
            other_side = lo > ref
            reaches = self.min_effect is None or v <= self.min_effect
        if on_side and reaches:
            return Outcome.PASS
        return Outcome.FAIL if other_side else Outcome.INCONCLUSIVE


@dataclass(frozen=True)
class Evidence:
    """What a claim measured, for the plugin to judge with the claim's rule: the
    :class:`Estimate` of its statistic, the data behind it (``details``, kept in the report)
    and whether each further condition its rule names (:attr:`Rule.also`) held."""

    estimate: Estimate
    details: dict = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """The judged result of one claim: numbers, the rule that produced the outcome, and a
    one-line message."""

    claim_id: str
    finding: str
    statistic: str
    estimate: float
    ci_low: float
    ci_high: float
    n: int
    p_value: float | None
    rule: str
    outcome: Outcome
    method: str = ""
    reason: str = ""
    details: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASS

    def summary(self) -> str:
        """``SD-1 finding: rho=-0.83 [-0.95,-0.61] n=12, needs CI < 0 ... -> PASS``."""
        head = f"{self.claim_id} {self.finding}".strip()
        if not math.isfinite(self.estimate):
            return f"{head}: {self.reason or 'no finite estimate'} -> {self.outcome}"
        numbers = (f"{self.statistic}={_fmt(self.estimate)} "
                   f"[{_fmt(self.ci_low)},{_fmt(self.ci_high)}] n={self.n}")
        if self.p_value is not None:
            numbers += f" p={_fmt(self.p_value)}"
        tail = f" ({self.reason})" if self.reason else ""
        return f"{head}: {numbers}, needs {self.rule} -> {self.outcome}{tail}"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["outcome"] = str(self.outcome)
        return out


def judge(claim_id: str, evidence: Evidence | Estimate, rule: Rule, *,
          finding: str = "") -> Verdict:
    """Apply ``rule`` to ``evidence`` (an :class:`Estimate` is evidence without details).
    Non-finite numbers give ERROR with the reason; a condition of :attr:`Rule.also` that
    did not hold turns a PASS into INCONCLUSIVE."""
    if isinstance(evidence, Estimate):
        evidence = Evidence(evidence)
    if rule.direction != "within":
        evidence = replace(evidence, estimate=evidence.estimate.against(rule.reference))
    missing = [c for c in rule.also if c not in evidence.checks]
    unknown = [c for c in evidence.checks if c not in rule.also]
    if missing or unknown:
        raise ValueError(f"claim {claim_id}: its rule names the conditions {list(rule.also)} "
                         f"and its evidence reports {list(evidence.checks)}; they must match")
    estimate = evidence.estimate
    outcome, reason = rule.decide(estimate)
    unmet = [c for c in rule.also if not evidence.checks[c]]
    if outcome is Outcome.PASS and unmet:
        outcome, reason = Outcome.INCONCLUSIVE, "not met: " + "; ".join(unmet)
    test = estimate.test
    if outcome is Outcome.INCONCLUSIVE and not reason and test is not None \
            and test.df == estimate.n - 1 and rule.direction != "within":
        needed = test.units_to_decide(rule.reference)
        reason = (f"at this effect and spread about {needed} seeds would decide it"
                  if needed and needed > estimate.n else reason)
    return Verdict(claim_id=claim_id, finding=finding, statistic=estimate.statistic,
                   estimate=estimate.value, ci_low=estimate.ci_low, ci_high=estimate.ci_high,
                   n=estimate.n, p_value=estimate.p_value, rule=rule.describe(),
                   outcome=outcome, method=estimate.method, reason=reason,
                   details=dict(evidence.details))


def seed_mean(values: ArrayLike, *, statistic: str, details: dict | None = None) -> Evidence:
    """Evidence from per-seed effects: their mean (:func:`mean`: Student-t interval over
    the seeds), named ``statistic``, with the per-seed values kept in the details."""
    per_seed = np.asarray(values, dtype=float).tolist()
    return Evidence(replace(mean(per_seed), statistic=statistic),
                    {"per_seed": per_seed, **(details or {})})


def seed_paired(a: ArrayLike, b: ArrayLike, *, statistic: str,
                details: dict | None = None) -> Evidence:
    """Evidence from per-seed values of two conditions: the paired mean difference
    ``a − b`` (:func:`mean_difference` with ``paired=True``: paired t), named
    ``statistic``, with both sides kept in the details."""
    x, y = np.asarray(a, dtype=float).tolist(), np.asarray(b, dtype=float).tolist()
    est = replace(mean_difference(x, y, paired=True), statistic=statistic)
    return Evidence(est, {"a": x, "b": y, **(details or {})})
