"""Rank agreement between a generalization measure and generalization: Kendall τ-a, the
granulated Kendall coefficient and the PGDL conditional-mutual-information score (Jiang et al.
2020, "Fantastic generalization measures", sections 3 and 4)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from netclaims._checks import ArrayLike, as_tensor


def _vector(x: ArrayLike, name: str) -> np.ndarray:
    return as_tensor(x, name, ndim=1).double().cpu().numpy()


def kendall_tau(a: ArrayLike, b: ArrayLike) -> float:
    """Kendall τ-a: ``1/(n(n-1)) Σ_{i≠j} sign(a_i - a_j) · sign(b_i - b_j)``.

    A tie in either variable contributes 0 and stays in the denominator (Jiang et al. 2020;
    Carbonnelle's code drops joint ties from the denominator instead). Needs n >= 2.
    """
    x, y = _vector(a, "a"), _vector(b, "b")
    if x.size != y.size:
        raise ValueError(f"a has {x.size} values but b has {y.size}")
    n = x.size
    if n < 2:
        raise ValueError("Kendall τ needs at least two values")
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])
    return float((sx * sy).sum() / (n * (n - 1)))


def _check_frame(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the frame; it has {list(frame.columns)}")
    if frame.empty:
        raise ValueError("the frame has no models")


def granulated_kendall(frame: pd.DataFrame, measure: str, target: str,
                       axes: Sequence[str]) -> dict[str, float | None]:
    """Granulated Kendall coefficient (Jiang et al. 2020, section 3).

    For each hyperparameter axis ``i``: group the models (rows of ``frame``) that agree on
    every other axis, skip groups with a single model, and average τ-a between ``measure``
    and ``target`` over the groups: ``ψ_i``. The ``"total"`` is the mean of ``ψ_i`` over the
    axes. An axis that takes a single value (no group with two models) is ignored: its entry
    is ``None`` and it does not enter the total. ``target`` is the column ranked against
    (Carbonnelle et al. use test accuracy, higher is better; Jiang et al. the gap).
    """
    result: dict[str, float | None] = {
        axis: float(np.mean(taus)) if taus else None
        for axis, taus in group_taus(frame, measure, target, axes).items()}
    used = [v for v in result.values() if v is not None]
    if not used:
        raise ValueError(f"no axis among {axes} varies within a group of models")
    result["total"] = float(np.mean(used))
    return result


def group_taus(frame: pd.DataFrame, measure: str, target: str,
               axes: Sequence[str]) -> dict[str, list[float]]:
    """Per hyperparameter axis, τ-a between ``measure`` and ``target`` within each group of
    models that agree on every other axis and differ on this one: the terms whose means are
    the granulated coefficient's ``ψ_i`` (a bootstrap resamples these groups)."""
    _check_frame(frame, [measure, target, *axes])
    for col in (measure, target):
        _vector(frame[col].to_numpy(dtype=float), col)
    m, t = frame[measure].to_numpy(float), frame[target].to_numpy(float)
    return {axis: [kendall_tau(m[rows], t[rows]) for rows in groups]
            for axis, groups in _axis_groups(frame, axes).items()}


def _axis_groups(frame: pd.DataFrame, axes: Sequence[str]) -> dict[str, list[np.ndarray]]:
    """Per axis, the row positions of each group of two or more models that agree on every
    other axis and differ on this one."""
    axes = list(axes)
    if not axes:
        raise ValueError("granulated_kendall needs at least one hyperparameter axis")
    _check_frame(frame, axes)
    positions = frame.reset_index(drop=True)
    out = {}
    for axis in axes:
        others = [a for a in axes if a != axis]
        groups = positions.groupby(others, dropna=False) if others else [((), positions)]
        out[axis] = [g.index.to_numpy() for _, g in groups
                     if len(g) > 1 and g[axis].nunique() > 1]
    return out


def _pair_weights(frame: pd.DataFrame, axes: Sequence[str]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The total granulated τ is linear in the concordances of pairs of models in a group:
    ``Σ_pairs w · sign(Δmeasure) · sign(Δtarget)`` with ``w = 1 / (axes · groups of the
    axis · pairs of the group)``. Returns the pairs' rows ``(i, j)`` and weights."""
    groups = {a: g for a, g in _axis_groups(frame, axes).items() if g}
    if not groups:
        raise ValueError(f"no axis among {list(axes)} varies within a group of models")
    first, second, weight = [], [], []
    for axis_groups in groups.values():
        for rows in axis_groups:
            pairs = list(combinations(rows.tolist(), 2))
            first += [i for i, _ in pairs]
            second += [j for _, j in pairs]
            weight += [1.0 / (len(groups) * len(axis_groups) * len(pairs))] * len(pairs)
    return np.array(first), np.array(second), np.array(weight)


def _two_sided(observed: float, null: np.ndarray) -> float:
    return float((1 + np.sum(np.abs(null) >= abs(observed) - 1e-12)) / (1 + null.size))


def granulated_permutation_p(frame: pd.DataFrame, measure: str, target: str,
                             axes: Sequence[str], *, minus: str | None = None,
                             resamples: int = 1999, seed: int = 0) -> float:
    """Two-sided permutation p-value of the total granulated τ of ``measure`` against
    ``target`` (``resamples`` seeded shuffles, ``p = (1 + #{|τ*| ≥ |τ|}) / (1 +
    resamples)``), scored on the same groups of models.

    Alone, against no association: the measure's values shuffled across the models. With
    ``minus``, the difference of the two measures' totals against no difference: each
    model's ranks under the two measures (ranked over the zoo, which keeps every order
    within a group) swapped with probability ½ — the paired test of two measures that relate
    to the target alike."""
    i, j, w = _pair_weights(frame, axes)
    _check_frame(frame, [measure, target] + ([minus] if minus else []))
    t = _vector(frame[target].to_numpy(dtype=float), target)
    concord = w * np.sign(t[i] - t[j])
    rng = np.random.default_rng(seed)

    def totals(values: np.ndarray) -> np.ndarray:
        return (np.sign(values[..., i] - values[..., j]) * concord).sum(axis=-1)

    m = _vector(frame[measure].to_numpy(dtype=float), measure)
    if minus is None:
        shuffled = np.stack([rng.permutation(m) for _ in range(resamples)])
        return _two_sided(float(totals(m)), totals(shuffled))
    r1 = pd.Series(m).rank().to_numpy()
    r2 = pd.Series(_vector(frame[minus].to_numpy(dtype=float), minus)).rank().to_numpy()
    swap = rng.random((resamples, m.size)) < 0.5
    null = totals(np.where(swap, r2, r1)) - totals(np.where(swap, r1, r2))
    return _two_sided(float(totals(r1) - totals(r2)), null)


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def pgdl_score(frame: pd.DataFrame, measure: str, target: str,
               axes: Sequence[str]) -> float:
    """Conditional-mutual-information score of the PGDL competition (Jiang et al. 2020,
    section 4).

    Over ordered pairs of models (self-pairs included) that share the values of a pair of
    hyperparameters ``S``, ``V_m = sign(Δ measure)`` and ``V_g = sign(Δ target)``; the score
    for ``S`` is ``I(V_m; V_g | S) / H(V_g | S)``, and the result the minimum over pairs of
    hyperparameters (single axes when only one is given). 0: no information; 1: ``V_m``
    determines ``V_g``.
    """
    axes = list(axes)
    _check_frame(frame, [measure, target, *axes])
    m = _vector(frame[measure].to_numpy(dtype=float), measure)
    g = _vector(frame[target].to_numpy(dtype=float), target)
    conditions = list(combinations(axes, 2)) if len(axes) >= 2 else [(a,) for a in axes]
    if not conditions:
        raise ValueError("pgdl_score needs at least one hyperparameter axis")
    scores = []
    for cond in conditions:
        mi = h = 0.0
        total = 0
        strata = frame.groupby(list(cond), dropna=False).indices.values()
        for idx in strata:
            vm = np.sign(m[idx][:, None] - m[idx][None, :]).ravel().astype(int) + 1
            vg = np.sign(g[idx][:, None] - g[idx][None, :]).ravel().astype(int) + 1
            joint = np.bincount(vm * 3 + vg, minlength=9).astype(float)
            weight = vm.size
            h_g = _entropy(joint.reshape(3, 3).sum(0))
            mi_s = _entropy(joint.reshape(3, 3).sum(1)) + h_g - _entropy(joint)
            mi += weight * mi_s
            h += weight * h_g
            total += weight
        if h <= 0:
            raise ValueError(f"{target} does not vary within the strata of {cond}")
        scores.append((mi / total) / (h / total))
    return float(min(scores))
