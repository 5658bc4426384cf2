"""Means and differences over independent units (seeds), with Student-t intervals; standardized
differences; the least-squares slope."""

from __future__ import annotations

import math

import numpy as np

from netclaims._checks import ArrayLike
from netclaims.stats.estimate import Estimate, is_constant, order_free_mean, t_estimate, vector


def mean(values: ArrayLike, *, reference: float = 0.0) -> Estimate:
    """Mean of ``values`` (independent units, e.g. one effect per training seed) with the
    Student-t interval ``mean ± t(n−1) · s/√n`` and the one-sample t-test p against
    ``reference``. Exact for normal values at any n ≥ 2; with 3 seeds t(2) = 4.30, so only
    effects several standard errors wide are decided (``docs/statistics.md``)."""
    x = vector(values, "values", 2)
    return _t_of_mean("mean", x, reference, f"Student t over {x.size} values")


def _t_of_mean(name: str, x: np.ndarray, null: float, how: str) -> Estimate:
    """The one-sample t estimate of the mean of independent values ``x``."""
    n = int(x.size)
    sd = 0.0 if is_constant(x) else float(np.std(x, ddof=1))
    return t_estimate(name, float(order_free_mean(x)), sd / math.sqrt(n), n - 1, n, null, how)


def mean_difference(a: ArrayLike, b: ArrayLike, *, paired: bool = False) -> Estimate:
    """``mean(a) − mean(b)``: paired, the t interval and test of the per-pair differences;
    unpaired, Welch's interval and test (unequal variances, Welch–Satterthwaite df)."""
    x, y = vector(a, "a", 2), vector(b, "b", 2)
    if paired:
        if x.size != y.size:
            raise ValueError(f"paired samples need equal sizes, got {x.size} and {y.size}")
        return _t_of_mean("mean difference", np.sort(x - y), 0.0,
                          f"paired Student t over {x.size} pairs")
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1)) if se > 0 else 1.0
    return t_estimate("mean difference", float(order_free_mean(x) - order_free_mean(y)), se, df,
                       int(x.size + y.size), 0.0, f"Welch t over {x.size} + {y.size} values")


def cohens_d(a: ArrayLike, b: ArrayLike, *, hedges: bool = False) -> float:
    """Standardized mean difference ``(mean(a) - mean(b)) / pooled sd``; with ``hedges``
    multiplied by the small-sample correction ``1 - 3 / (4 (na + nb) - 9)`` (Hedges' g)."""
    x, y = vector(a, "a", 2), vector(b, "b", 2)
    na, nb = x.size, y.size
    pooled = math.sqrt(((na - 1) * x.var(ddof=1) + (nb - 1) * y.var(ddof=1)) / (na + nb - 2))
    if pooled == 0:
        raise ValueError("both samples are constant: the standardized difference is undefined")
    d = (x.mean() - y.mean()) / pooled
    return float(d * (1 - 3 / (4 * (na + nb) - 9)) if hedges else d)


def hedges_g(a: ArrayLike, b: ArrayLike) -> float:
    """Hedges' g: Cohen's d with the small-sample bias correction."""
    return cohens_d(a, b, hedges=True)


