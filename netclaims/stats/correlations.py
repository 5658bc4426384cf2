"""Correlations: of independent pairs (Fisher-z interval, permutation p), and within units
summarized across units (per-unit ρ, stratified permutation p)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
from scipy import stats as sps

from netclaims._checks import ArrayLike
from netclaims.stats.estimate import (
    CONFIDENCE,
    RESAMPLES,
    Estimate,
    permutation_p,
    t_estimate,
    vector,
)
from netclaims.stats.means import mean


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
    a, b = vector(x, "x", min_n), vector(y, "y", min_n)
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
    p = permutation_p((a, b), fn, "pairings", seed, n_resamples)
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
    return t_estimate("slope", beta, se, n - 2, n, 0.0, f"OLS over {n} points")
