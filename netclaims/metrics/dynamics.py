"""Shapes of training curves and of checkpoint-similarity heatmaps: epoch-wise double descent
and "similarity blocks" (the representation-dynamics paper, sections 3.2-3.3)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from netclaims._checks import ArrayLike, as_tensor, check_positive


@dataclass(frozen=True)
class DoubleDescent:
    """Where an error curve shows a double descent most: the index ``peak``, the ``rise`` to
    it from the lowest error before it, the ``fall`` from it to the final error (negative
    when the error descends again) and the ``depth`` ``min(rise, −fall)``."""

    peak: int
    rise: float
    fall: float
    depth: float


def double_descent(error: ArrayLike) -> DoubleDescent:
    """Epoch-wise double descent of an error curve (test error over epochs or checkpoints).

    For every interior point ``p``: ``rise_p = e_p − min(e_0 … e_{p−1})`` and
    ``fall_p = e_last − e_p``; the depth is ``max_p min(rise_p, −fall_p)``. It is positive only
    when the error rises after a first minimum and falls again by the end (both parts of the
    phenomenon, Nakkiran et al. 2021 / the representation-dynamics paper Fig. 2g); a curve
    that only falls, only rises or is U-shaped gives a depth ≤ 0, so the statistic can fail.
    Plug-in on the given curve: smooth a noisy curve first (:func:`moving_average`).
    """
    e = as_tensor(error, "error", ndim=1).double().numpy()
    if e.size < 3:
        raise ValueError(f"a double descent needs at least 3 points, got {e.size}")
    best = DoubleDescent(-1, math.nan, math.nan, -math.inf)
    for p in range(1, e.size - 1):
        rise, fall = float(e[p] - e[:p].min()), float(e[-1] - e[p])
        if min(rise, -fall) > best.depth:
            best = DoubleDescent(p, rise, fall, min(rise, -fall))
    return best


def moving_average(values: ArrayLike, window: int) -> np.ndarray:
    """Centered moving average over ``window`` points (odd), the ends padded with the edge
    values so the curve keeps its length."""
    check_positive(window, "window")
    if window % 2 == 0:
        raise ValueError(f"window must be odd to be centered, got {window}")
    v = as_tensor(values, "values", ndim=1).double().numpy()
    padded = np.pad(v, window // 2, mode="edge")
    return np.convolve(padded, np.ones(window) / window, mode="valid")


@dataclass(frozen=True)
class BlockSplit:
    """The best split of a checkpoint sequence into two contiguous similarity blocks:
    ``start`` is the first checkpoint of the second block; ``contrast`` the mean similarity
    inside the blocks (off the diagonal) minus across them."""

    start: int
    contrast: float


def similarity_blocks(heatmap: ArrayLike, *, min_size: int = 2, skip: int = 0) -> BlockSplit:
    """The split of an ``(E, E)`` checkpoint-similarity heatmap (e.g. CKA between the
    checkpoints of one layer) into two contiguous blocks of at least ``min_size`` checkpoints
    that maximizes ``mean(inside, off-diagonal) − mean(across)``: the "similarity blocks" and
    the transition between them (representation-dynamics paper, section 3.3). A heatmap with a
    sharp transition has a large contrast; a smooth drift a small one.

    ``skip`` leaves the first checkpoints out (the returned ``start`` still indexes the whole
    heatmap): the onset of learning is a sharp change of its own, which the best split would
    otherwise find instead of a later transition.
    """
    full = as_tensor(heatmap, "heatmap", ndim=2).double().numpy()
    if full.shape[1] != full.shape[0]:
        raise ValueError(f"heatmap must be square, got shape {full.shape}")
    if not 0 <= skip < full.shape[0]:
        raise ValueError(f"skip must lie in [0, {full.shape[0]}), got {skip}")
    h = full[skip:, skip:]
    e = h.shape[0]
    if e < 2 * min_size:
        raise ValueError(f"two blocks of {min_size} need at least {2 * min_size} checkpoints, "
                         f"got {e}")
    off = ~np.eye(e, dtype=bool)
    best = BlockSplit(-1, -math.inf)
    for start in range(min_size, e - min_size + 1):
        inside = np.zeros((e, e), dtype=bool)
        inside[:start, :start] = inside[start:, start:] = True
        contrast = float(h[inside & off].mean() - h[~inside].mean())
        if contrast > best.contrast:
            best = BlockSplit(start + skip, contrast)
    return best


def early_stopping_epoch(epochs: ArrayLike, test_accuracy: ArrayLike,
                         fit_epoch: float) -> float:
    """The best early-stopping epoch: among the checkpoints after initialization and before
    ``fit_epoch`` (the first with 100% training accuracy), the one with the highest test
    accuracy (the first of ties); over every checkpoint after initialization when none lies
    before it (``fit_epoch`` NaN: the run never fits perfectly)."""
    e = as_tensor(epochs, "epochs", ndim=1).double().numpy()
    acc = as_tensor(test_accuracy, "test_accuracy", ndim=1).double().numpy()
    if e.shape != acc.shape:
        raise ValueError(f"epochs has {e.size} values but test_accuracy {acc.size}")
    trained = e > 0
    before = trained & (e < fit_epoch) if math.isfinite(fit_epoch) else trained
    keep = before if before.any() else trained
    if not keep.any():
        raise ValueError("no checkpoint after initialization")
    return float(e[keep][int(np.argmax(acc[keep]))])
