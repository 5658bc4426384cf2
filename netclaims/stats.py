"""Effect sizes, confidence intervals, p-values and the verdict rule of ``CLAIMS.md``.

Every effect comes as an :class:`Estimate` (value, 95% CI, n, p-value and how each was
obtained); a :class:`Rule` (the catalogue's predicted direction, reference value and minimum
effect) turns it into a :class:`Verdict`: PASS when the whole CI lies on the predicted side and
the point estimate reaches the minimum effect, FAIL when the whole CI lies on the other side,
INCONCLUSIVE otherwise, ERROR when the numbers are not finite.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Literal

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
class Estimate:
    """A point estimate with its 95% confidence interval, sample size and p-value.

    ``method`` says how the CI and p-value were obtained (e.g. ``"bootstrap BCa, 9999
    resamples, seed 0; permutation p, two-sided"``).
    """

    statistic: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    p_value: float | None = None
    method: str = ""

    @property
    def finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.value, self.ci_low, self.ci_high))


def _vector(x: ArrayLike, name: str, min_n: int = 1) -> np.ndarray:
    v = as_tensor(x, name, ndim=1, min_rows=min_n).double().cpu().numpy()
    return v


def _ci(data: tuple[np.ndarray, ...], statistic: Callable, *, paired: bool, seed: int,
        n_resamples: int) -> tuple[float, float, str]:
    """Bootstrap CI through ``scipy.stats.bootstrap`` (BCa, falling back to percentile when
    BCa is undefined); a statistic that does not vary across resamples gives a point CI."""
    value = float(statistic(*data, axis=-1))
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sps.bootstrap(data, statistic, paired=paired, vectorized=True,
                                n_resamples=n_resamples, confidence_level=CONFIDENCE,
                                method=method, rng=np.random.default_rng(seed))
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            return lo, hi, f"bootstrap {method}, {n_resamples} resamples, seed {seed}"
        spread = np.asarray(res.bootstrap_distribution)
        if np.all(spread == spread.flat[0]):
            return value, value, "bootstrap (degenerate: every resample gives the same value)"
    raise ValueError("the bootstrap CI is undefined for these data")


def _permutation_p(data: tuple[np.ndarray, ...], statistic: Callable, kind: str, seed: int,
                   n_resamples: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sps.permutation_test(data, statistic, permutation_type=kind, vectorized=True,
                                   n_resamples=n_resamples, alternative="two-sided",
                                   rng=np.random.default_rng(seed))
    return float(res.pvalue)


# --------------------------------------------------------------------------- statistics


def _mean_diff(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return _mean(a, axis) - _mean(b, axis)


def _mean(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """The mean of the sorted values. Every reordering of one multiset then sums in the
    same order, so a resample that reorders the sample has the sample's value bit for bit;
    BCa's bias correction (the share of resamples below the estimate, ties counted half)
    would otherwise flip with rounding: with 3 seeds 6 of 27 resamples are reorderings, and
    a 1-ulp change of the inputs moved the CI by up to a fifth of its width."""
    return np.mean(np.sort(a, axis=axis), axis=axis)


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
    x, y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
    sx = np.sign(x[..., :, None] - x[..., None, :])
    sy = np.sign(y[..., :, None] - y[..., None, :])
    n = x.shape[-1]
    return (sx * sy).sum(axis=(-1, -2)) / (n * (n - 1))


def _slope(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    xc = x - x.mean(axis=axis, keepdims=True)
    yc = y - y.mean(axis=axis, keepdims=True)
    den = (xc * xc).sum(axis=axis)
    return np.where(den > 0, (xc * yc).sum(axis=axis) / np.where(den > 0, den, 1.0), 0.0)


CORRELATIONS: dict[str, Callable] = {"spearman": _spearman, "pearson": _pearson,
                                     "kendall": _kendall}


def mean_difference(a: ArrayLike, b: ArrayLike, *, paired: bool = False, seed: int = 0,
                    n_resamples: int = RESAMPLES) -> Estimate:
    """``mean(a) - mean(b)`` with a bootstrap CI (paired resampling when ``paired``) and a
    permutation p-value (sign flips when paired, label shuffles otherwise)."""
    x, y = _vector(a, "a", 2), _vector(b, "b", 2)
    if paired and x.size != y.size:
        raise ValueError(f"paired samples need equal sizes, got {x.size} and {y.size}")
    data = (x, y)
    lo, hi, how = _ci(data, _mean_diff, paired=paired, seed=seed, n_resamples=n_resamples)
    kind = "samples" if paired else "independent"
    p = _permutation_p(data, _mean_diff, kind, seed, n_resamples)
    return Estimate("mean difference", float(_mean_diff(x, y)), lo, hi,
                    int(x.size if paired else x.size + y.size), p,
                    f"{how}; permutation p ({kind}), two-sided")


def mean(values: ArrayLike, *, reference: float = 0.0, seed: int = 0,
         n_resamples: int = RESAMPLES) -> Estimate:
    """Mean of ``values`` with a bootstrap CI and a sign-flip permutation p-value for
    ``mean == reference``."""
    x = _vector(values, "values", 2)
    lo, hi, how = _ci((x,), _mean, paired=False, seed=seed, n_resamples=n_resamples)
    centered = x - reference
    p = _permutation_p((centered, np.zeros_like(centered)), _mean_diff, "samples", seed,
                       n_resamples)
    return Estimate("mean", float(_mean(x)), lo, hi, int(x.size), p,
                    f"{how}; sign-flip permutation p against {reference}, two-sided")


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


def correlation(x: ArrayLike, y: ArrayLike, *, method: str = "spearman",
                ci: Literal["bootstrap", "fisher"] = "bootstrap", seed: int = 0,
                n_resamples: int = RESAMPLES) -> Estimate:
    """Rank or linear correlation with a CI and a permutation p-value.

    ``ci="bootstrap"`` resamples pairs (a resample where one variable is constant counts as
    0 association); ``ci="fisher"`` is analytic: ``tanh(atanh(r) ± 1.96 · se)`` with
    ``se = sqrt((1 + r²/2)/(n - 3))`` for Spearman (Bonett & Wright 2000), ``1/sqrt(n - 3)``
    for Pearson; it needs n >= 4 and is not offered for Kendall.
    """
    if method not in CORRELATIONS:
        raise ValueError(f"method must be one of {list(CORRELATIONS)}, got {method!r}")
    a, b = _vector(x, "x", 3), _vector(y, "y", 3)
    if a.size != b.size:
        raise ValueError(f"x has {a.size} values but y has {b.size}")
    if np.all(a == a[0]) or np.all(b == b[0]):
        raise ValueError("a correlation with a constant variable is undefined")
    fn = CORRELATIONS[method]
    r = float(fn(a, b))
    if ci == "fisher":
        if method == "kendall" or a.size < 4:
            raise ValueError("the Fisher CI needs Spearman or Pearson and n >= 4")
        se = math.sqrt((1 + r * r / 2) / (a.size - 3)) if method == "spearman" \
            else 1 / math.sqrt(a.size - 3)
        z = math.atanh(max(min(r, 1 - 1e-12), -1 + 1e-12))
        q = sps.norm.ppf(0.5 + CONFIDENCE / 2)
        lo, hi, how = math.tanh(z - q * se), math.tanh(z + q * se), "Fisher z"
    elif ci == "bootstrap":
        lo, hi, how = _ci((a, b), fn, paired=True, seed=seed, n_resamples=n_resamples)
    else:
        raise ValueError(f"ci must be 'bootstrap' or 'fisher', got {ci!r}")
    p = _permutation_p((a, b), fn, "pairings", seed, n_resamples)
    return Estimate(f"{method} rho" if method != "kendall" else "kendall tau", r, lo, hi,
                    int(a.size), p, f"{how}; permutation p (pairings), two-sided")


def slope(x: ArrayLike, y: ArrayLike, *, seed: int = 0, n_resamples: int = RESAMPLES) -> Estimate:
    """Least-squares slope of ``y`` on ``x`` with a pairs-bootstrap CI and a permutation
    p-value."""
    a, b = _vector(x, "x", 3), _vector(y, "y", 3)
    if a.size != b.size:
        raise ValueError(f"x has {a.size} values but y has {b.size}")
    if np.all(a == a[0]):
        raise ValueError("x is constant: the slope is undefined")
    lo, hi, how = _ci((a, b), _slope, paired=True, seed=seed, n_resamples=n_resamples)
    p = _permutation_p((a, b), _slope, "pairings", seed, n_resamples)
    return Estimate("slope", float(_slope(a, b)), lo, hi, int(a.size), p,
                    f"{how}; permutation p (pairings), two-sided")


def resampled(statistic: Callable[[np.ndarray], float], n: int, *, name: str,
              seed: int = 0, n_resamples: int = 1999) -> Estimate:
    """An estimate whose CI comes from resampling ``n`` independent units (training seeds)
    with replacement, for statistics that are not a vectorized function of one array (e.g.
    a width gain computed on the mean-over-seeds curve). ``statistic(indices)`` gets the
    indices of the units in a resample (``arange(n)`` for the point estimate), sorted: a
    resample is a multiset, so the statistic is evaluated once per distinct multiset (with 3
    seeds there are only 10). The CI is the percentile interval. No p-value."""
    if n < 2:
        raise ValueError(f"resampling needs at least 2 units, got {n}")
    value = float(statistic(np.arange(n)))
    rng = np.random.default_rng(seed)
    known: dict[tuple[int, ...], float] = {}

    def evaluate(idx: np.ndarray) -> float:
        key = tuple(np.sort(idx).tolist())
        if key not in known:
            known[key] = float(statistic(np.array(key)))
        return known[key]

    draws = np.array([evaluate(rng.integers(0, n, n)) for _ in range(n_resamples)], float)
    finite = draws[np.isfinite(draws)]
    if finite.size < n_resamples / 2:
        raise ValueError(f"{name}: the statistic is undefined on {n_resamples - finite.size} "
                         f"of {n_resamples} resamples")
    alpha = (1 - CONFIDENCE) / 2
    lo, hi = np.quantile(finite, [alpha, 1 - alpha])
    dropped = n_resamples - finite.size
    note = f", {dropped} undefined resamples dropped" if dropped else ""
    return Estimate(name, value, float(lo), float(hi), n, None,
                    f"bootstrap percentile over {n} units, {n_resamples} resamples, "
                    f"seed {seed}{note}")


def bootstrap_ci(data: Sequence[ArrayLike], statistic: Callable[..., np.ndarray], *,
                 paired: bool = False, seed: int = 0,
                 n_resamples: int = RESAMPLES) -> tuple[float, float]:
    """95% CI of ``statistic(*data, axis=-1)`` (a vectorized statistic) via
    ``scipy.stats.bootstrap``."""
    arrays = tuple(_vector(d, f"data[{i}]", 2) for i, d in enumerate(data))
    lo, hi, _ = _ci(arrays, statistic, paired=paired, seed=seed, n_resamples=n_resamples)
    return lo, hi


def permutation_pvalue(data: Sequence[ArrayLike], statistic: Callable[..., np.ndarray], *,
                       permutation_type: str = "independent", seed: int = 0,
                       n_resamples: int = RESAMPLES) -> float:
    """Two-sided permutation p-value of a vectorized ``statistic`` via
    ``scipy.stats.permutation_test`` (``independent``, ``samples`` or ``pairings``)."""
    arrays = tuple(_vector(d, f"data[{i}]", 2) for i, d in enumerate(data))
    return _permutation_p(arrays, statistic, permutation_type, seed, n_resamples)


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
        if not estimate.finite or estimate.ci_low > estimate.ci_high:
            return Outcome.ERROR
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
        if self.outcome is Outcome.ERROR and not math.isfinite(self.estimate):
            return f"{head}: {self.reason or 'no finite estimate'} -> ERROR"
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
    missing = [c for c in rule.also if c not in evidence.checks]
    unknown = [c for c in evidence.checks if c not in rule.also]
    if missing or unknown:
        raise ValueError(f"claim {claim_id}: its rule names the conditions {list(rule.also)} "
                         f"and its evidence reports {list(evidence.checks)}; they must match")
    estimate = evidence.estimate
    outcome = rule.judge(estimate)
    reason = ""
    if outcome is Outcome.ERROR:
        reason = ("non-finite estimate or CI" if not estimate.finite
                  else "the CI's lower bound exceeds its upper bound")
    unmet = [c for c in rule.also if not evidence.checks[c]]
    if outcome is Outcome.PASS and unmet:
        outcome, reason = Outcome.INCONCLUSIVE, "not met: " + "; ".join(unmet)
    return Verdict(claim_id=claim_id, finding=finding, statistic=estimate.statistic,
                   estimate=estimate.value, ci_low=estimate.ci_low, ci_high=estimate.ci_high,
                   n=estimate.n, p_value=estimate.p_value, rule=rule.describe(),
                   outcome=outcome, method=estimate.method, reason=reason,
                   details=dict(evidence.details))


def seed_mean(values: ArrayLike, *, statistic: str, details: dict | None = None) -> Evidence:
    """Evidence from per-seed effects: their mean (:func:`mean`: bootstrap CI over the
    seeds), named ``statistic``, with the per-seed values kept in the details."""
    per_seed = np.asarray(values, dtype=float).tolist()
    return Evidence(replace(mean(per_seed), statistic=statistic),
                    {"per_seed": per_seed, **(details or {})})


def seed_paired(a: ArrayLike, b: ArrayLike, *, statistic: str,
                details: dict | None = None) -> Evidence:
    """Evidence from per-seed values of two conditions: the paired mean difference
    ``a − b`` (:func:`mean_difference` with ``paired=True``), named ``statistic``, with both
    sides kept in the details."""
    x, y = np.asarray(a, dtype=float).tolist(), np.asarray(b, dtype=float).tolist()
    est = replace(mean_difference(x, y, paired=True), statistic=statistic)
    return Evidence(est, {"a": x, "b": y, **(details or {})})
