"""Centered kernel alignment (Kornblith et al. 2019) and its minibatch estimator (Nguyen et al.
2021).

Numerical rules (docs/library.md): features are centered in float64 before any Gram matrix or
cross-product is formed, whatever the input dtype, so adding a large constant to float32 or
bfloat16 features changes nothing; HSIC is accumulated in float64; results are never clamped
(debiased CKA can be negative); a constant representation raises instead of giving a number.
Inputs with more than two axes are flattened to ``(n, features)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations_with_replacement

import numpy as np
import torch

from netclaims._checks import ArrayLike, as_tensor, check_choice, check_positive, check_same_length

KERNELS = ("linear", "rbf")
GRAM_BUDGET_BYTES = 2 * 1024**3


def _centered(x: ArrayLike, name: str, *, rescale: bool = False) -> torch.Tensor:
    """``(n, ...)`` -> centered float64 ``(n, features)``; raises for a constant one or one
    without features. ``rescale``: values so large that sums of their fourth powers would
    overflow float64 are scaled down (for a full-batch estimator, which is invariant to
    isotropic scaling; minibatch sums are not, per batch)."""
    t = as_tensor(x, name, ndim=tuple(range(2, 8)), min_rows=2)
    t = t.reshape(t.shape[0], -1).to(torch.float64)
    if t.shape[1] == 0:
        raise ValueError(f"{name} has no features (shape {tuple(t.shape)}): CKA needs at "
                         "least one")
    t = t - t.mean(dim=0, keepdim=True)
    largest = float(t.abs().max())
    if not largest > 0:
        raise ValueError(f"{name} is a constant representation (zero variance in every "
                         "feature): CKA is undefined for it")
    return t / largest if rescale and largest > _SAFE_MAGNITUDE else t


_SAFE_MAGNITUDE = 1e50
"""Centered values above this are rescaled: CKA sums products of four of them."""


def _n_checked(x: torch.Tensor, y: torch.Tensor, minimum: int, why: str) -> int:
    n = check_same_length(x=x, y=y)
    if n < minimum:
        raise ValueError(f"{why} needs at least {minimum} samples, got {n}")
    return n


def rbf_gram(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """RBF Gram matrix of centered float64 features with ``sigma^2 = threshold^2 · median``
    of the squared pairwise distances (median over all n² entries, the mean of the two middle
    ones when n² is even, as ``np.median`` in Kornblith et al.'s ``gram_rbf``; torch's median
    would take the lower one)."""
    check_positive(threshold, "threshold")
    sq = (x * x).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)).clamp_min(0.0)
    d2.fill_diagonal_(0.0)
    median = float(np.median(d2.detach().cpu().numpy()))
    if median <= 0:
        raise ValueError("the median squared distance is 0 (most samples coincide): the RBF "
                         "bandwidth rule is undefined for this representation")
    return torch.exp(-d2 / (2.0 * threshold**2 * median))


def center_gram(gram: torch.Tensor, *, debiased: bool = False) -> torch.Tensor:
    """Doubly center a Gram matrix (``H K H``), or U-center it when ``debiased``
    (Székely & Rizzo 2014: zero the diagonal, subtract row and column means with the
    ``n - 2`` and ``(n - 1)(n - 2)`` corrections, zero the diagonal again; needs n >= 4)."""
    return _center_gram_(gram.to(torch.float64).clone(), debiased)


def _center_gram_(k: torch.Tensor, debiased: bool) -> torch.Tensor:
    """In-place :func:`center_gram` of a float64 Gram matrix the caller owns."""
    n = k.shape[0]
    if not debiased:
        k.sub_(k.mean(0, keepdim=True))
        return k.sub_(k.mean(1, keepdim=True))
    if n < 4:
        raise ValueError(f"debiased (U-centered) estimators need n >= 4 samples, got {n}")
    k.fill_diagonal_(0.0)
    rows = k.sum(1) / (n - 2)
    total = float(k.sum()) / ((n - 1) * (n - 2))
    k.sub_(rows[:, None]).sub_(rows[None, :]).add_(total)
    k.fill_diagonal_(0.0)
    return k


def _unbiased_hsic_numerator(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``n (n - 3)`` × the unbiased HSIC (Song et al. 2012) of the linear kernels of centered
    features, from cross-products (no n×n matrix): ``||Yᵀ X||² - n/(n-2) Σ_i |x_i|²|y_i|²
    + (Σ|x_i|²)(Σ|y_i|²) / ((n-1)(n-2))``."""
    n = x.shape[0]
    dx, dy = (x * x).sum(1), (y * y).sum(1)
    if x.shape[1] * y.shape[1] <= n * (x.shape[1] + y.shape[1]):
        cross = ((y.T @ x) ** 2).sum()
    else:
        cross = ((x @ x.T) * (y @ y.T)).sum()
    return cross - n / (n - 2) * (dx @ dy) + dx.sum() * dy.sum() / ((n - 1) * (n - 2))


def _ratio(xy: torch.Tensor, xx: torch.Tensor, yy: torch.Tensor, what: str) -> float:
    terms = torch.stack([torch.as_tensor(t, dtype=torch.float64) for t in (xy, xx, yy)])
    if not bool(torch.isfinite(terms).all()):
        raise ValueError(f"{what}: the HSIC terms overflowed float64 ({terms.tolist()}); "
                         "the inputs' magnitudes are out of range")
    if not (float(xx) > 0 and float(yy) > 0):
        raise ValueError(f"{what}: the self-similarity term is not positive "
                         f"({float(xx):.3g}, {float(yy):.3g}); the estimate is undefined "
                         "for these inputs (too few samples or a degenerate representation)")
    return float(xy / torch.sqrt(xx * yy))


def linear_cka(x: ArrayLike, y: ArrayLike, *, debiased: bool = False) -> float:
    """Linear CKA between two representations of the same ``n`` samples.

    Formula (Kornblith et al. 2019, eq. 5): with column-centered ``X`` and ``Y``,
    ``CKA = ||Yᵀ X||_F² / (||Xᵀ X||_F ||Yᵀ Y||_F)``. With ``debiased=True`` the HSIC terms
    are the unbiased estimator (Song et al. 2012; U-centered Gram matrices), which needs
    ``n >= 4`` and can be negative. Estimator: full batch, float64, never clamped.

    Args:
        x: ``(n, features_x)`` (extra axes are flattened); y: ``(n, features_y)``.
    """
    xc, yc = _centered(x, "x", rescale=True), _centered(y, "y", rescale=True)
    _n_checked(xc, yc, 4 if debiased else 2, "CKA")
    if debiased:
        num = _unbiased_hsic_numerator
        return _ratio(num(xc, yc), num(xc, xc), num(yc, yc), "debiased linear CKA")
    xy = ((yc.T @ xc) ** 2).sum()
    xx = ((xc.T @ xc) ** 2).sum()
    yy = ((yc.T @ yc) ** 2).sum()
    return _ratio(xy, xx, yy, "linear CKA")


def rbf_cka(x: ArrayLike, y: ArrayLike, *, threshold: float = 0.5,
            debiased: bool = False) -> float:
    """CKA with RBF kernels (Kornblith et al. 2019).

    ``K_ij = exp(-|x_i - x_j|² / (2 σ²))`` with ``σ² = threshold² · median |x_i - x_j|²``
    (median over all n² entries, threshold 0.5 by default), so the result is invariant to
    isotropic scaling and orthogonal transformations. ``CKA = <Kc, Lc> / (|Kc| |Lc|)`` with
    doubly centered (or, ``debiased``, U-centered) Gram matrices; float64; never clamped.
    """
    xc, yc = _centered(x, "x", rescale=True), _centered(y, "y", rescale=True)
    _n_checked(xc, yc, 4 if debiased else 2, "CKA")
    k = center_gram(rbf_gram(xc, threshold), debiased=debiased)
    l_ = center_gram(rbf_gram(yc, threshold), debiased=debiased)
    return _ratio((k * l_).sum(), (k * k).sum(), (l_ * l_).sum(), "RBF CKA")


def hsic1(x: ArrayLike, y: ArrayLike) -> float:
    """Unbiased HSIC of linear kernels (Song et al. 2012; Nguyen et al. 2021's ``HSIC₁``)
    for one batch: the Gram diagonals are zeroed, ``n >= 4``; features centered in float64
    first (the estimator is invariant to it, the float arithmetic is not)."""
    xc, yc = _centered(x, "x"), _centered(y, "y")
    n = _n_checked(xc, yc, 4, "HSIC₁")
    return float(_unbiased_hsic_numerator(xc, yc) / (n * (n - 3)))


def _batch_sizes(batches: Sequence[torch.Tensor], name: str) -> int:
    sizes = {int(b.shape[0]) for b in batches}
    if len(sizes) > 1:
        raise ValueError(f"{name} batches have unequal sizes {sorted(sizes)}; minibatch CKA "
                         "needs equal batches (drop the last, smaller batch)")
    size = sizes.pop()
    if size <= 3:
        raise ValueError(f"minibatch CKA needs batches of at least 4 samples, got {size}")
    return size


def minibatch_cka(xs: Sequence[ArrayLike], ys: Sequence[ArrayLike]) -> float:
    """Minibatch linear CKA (Nguyen, Raghu & Kornblith 2021, ``efficient_CKA.py``).

    ``CKA = Σ_i HSIC₁(K_i, L_i) / sqrt(Σ_i HSIC₁(K_i, K_i) · Σ_i HSIC₁(L_i, L_i))`` over
    ``k`` batches of equal size (> 3), with ``HSIC₁`` the unbiased estimator. It converges
    to full-batch debiased CKA and is near 0 for independent representations at every
    batch size. float64 accumulation; never clamped.

    Args:
        xs, ys: equal-length sequences of ``(batch, features)`` arrays; batch ``i`` of
            ``xs`` and of ``ys`` hold the same samples.
    """
    x_batches, y_batches = list(xs), list(ys)  # a (batches, batch, features) tensor is a
    if len(x_batches) != len(y_batches):      # sequence too
        raise ValueError(f"xs has {len(x_batches)} batches but ys has {len(y_batches)}")
    if not x_batches:
        raise ValueError("minibatch_cka needs at least one batch")
    xc = [_centered(b, f"xs[{i}]") for i, b in enumerate(x_batches)]
    yc = [_centered(b, f"ys[{i}]") for i, b in enumerate(y_batches)]
    _batch_sizes(xc, "xs")
    _batch_sizes(yc, "ys")
    acc = torch.zeros(3, dtype=torch.float64)
    for i, (x, y) in enumerate(zip(xc, yc, strict=True)):
        check_same_length(**{f"xs[{i}]": x, f"ys[{i}]": y})
        num = _unbiased_hsic_numerator
        acc += torch.stack([num(x, y), num(x, x), num(y, y)])
    return _ratio(acc[0], acc[1], acc[2], "minibatch CKA")


class MinibatchCKA:
    """Streaming sink (see :func:`netclaims.units.stream`) accumulating ``HSIC₁`` for every
    pair of recorded layers, batch by batch; memory independent of the number of batches.

    Batches whose size differs from the first batch's (a loader's last batch) are dropped and
    counted in :attr:`dropped_batches`.
    """

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.batch_size: int | None = None
        self.batches = 0
        self.dropped_batches = 0
        self._hsic: dict[tuple[str, str], float] = {}

    def update(self, activations: Mapping[str, torch.Tensor], labels: object = None) -> None:
        reps = {k: _centered(v, k) for k, v in activations.items()}
        size = next(iter(reps.values())).shape[0]
        if self.batch_size is None:
            if size <= 3:
                raise ValueError(f"minibatch CKA needs batches of at least 4, got {size}")
            self.batch_size, self.keys = size, list(reps)
        if size != self.batch_size:
            self.dropped_batches += 1
            return
        for a, b in combinations_with_replacement(self.keys, 2):
            value = float(_unbiased_hsic_numerator(reps[a], reps[b]))
            self._hsic[(a, b)] = self._hsic.get((a, b), 0.0) + value
        self.batches += 1

    def matrix(self) -> tuple[list[str], np.ndarray]:
        """The layer names and the ``(layers, layers)`` minibatch CKA matrix."""
        if not self.batches:
            raise ValueError("MinibatchCKA has seen no complete batch")
        e = len(self.keys)
        out = np.empty((e, e))
        for i, a in enumerate(self.keys):
            for j, b in enumerate(self.keys):
                pair = (a, b) if (a, b) in self._hsic else (b, a)
                out[i, j] = _ratio(torch.tensor(self._hsic[pair]),
                                   torch.tensor(self._hsic[(a, a)]),
                                   torch.tensor(self._hsic[(b, b)]), "minibatch CKA")
        return list(self.keys), out


def _normalized_grams(reps: Sequence[ArrayLike], name: str, n: int, kernel: str,
                      threshold: float, debiased: bool) -> torch.Tensor:
    """Each representation's centered Gram matrix, flattened and scaled to unit norm:
    ``(E, n²)``; computed once per representation, written in place into one matrix.

    The linear Gram matrix of column-centered features is already doubly centered, so only
    the debiased estimator (U-centering) and the RBF kernel center it again.
    """
    out = torch.empty(len(reps), n * n, dtype=torch.float64)
    for i, r in enumerate(reps):
        xc = _centered(r, f"{name}[{i}]", rescale=True)
        if xc.shape[0] != n:
            raise ValueError(f"{name}[{i}] has {xc.shape[0]} samples, expected {n}")
        gram = out[i].view(n, n)
        if kernel == "linear":
            torch.mm(xc, xc.T, out=gram)
            if debiased:
                _center_gram_(gram, debiased=True)
        else:
            gram.copy_(rbf_gram(xc, threshold))
            _center_gram_(gram, debiased)
        norm2 = float(out[i] @ out[i])
        if not norm2 > 0:
            raise ValueError(f"{name}[{i}]: the self-similarity term is not positive; "
                             "CKA is undefined for it")
        out[i].div_(np.sqrt(norm2))
    return out


def _feature_terms(reps: Sequence[ArrayLike], name: str) -> list[torch.Tensor]:
    return [_centered(r, f"{name}[{i}]", rescale=True) for i, r in enumerate(reps)]


def cka_matrix(xs: Sequence[ArrayLike], ys: Sequence[ArrayLike] | None = None, *,
               kernel: str = "linear", threshold: float = 0.5,
               debiased: bool = False) -> np.ndarray:
    """CKA between every representation in ``xs`` and every one in ``ys`` (``xs`` itself
    when None): an ``(len(xs), len(ys))`` array.

    Used for heatmaps across checkpoints of one layer, or across layers. Each
    representation's centered Gram matrix is computed once, then all pairs come from one
    matrix product of the flattened, normalized Gram matrices, instead of recomputing a Gram
    matrix per pair. When the Gram matrices would exceed 2 GiB, linear CKA switches to
    cross-products of the centered features (still centering each representation once).
    All representations must describe the same ``n`` samples, in the same order.
    """
    check_choice(kernel, "kernel", KERNELS)
    same = ys is None
    ys = xs if ys is None else ys
    if not xs or not ys:
        raise ValueError("cka_matrix needs at least one representation on each side")
    n = int(torch.as_tensor(np.asarray(xs[0]) if not isinstance(xs[0], torch.Tensor)
                            else xs[0]).shape[0])
    if debiased and n < 4:
        raise ValueError(f"debiased CKA needs n >= 4 samples, got {n}")
    count = len(xs) + (0 if same else len(ys))
    if count * n * n * 8 <= GRAM_BUDGET_BYTES:
        gx = _normalized_grams(xs, "xs", n, kernel, threshold, debiased)
        gy = gx if same else _normalized_grams(ys, "ys", n, kernel, threshold, debiased)
        return (gx @ gy.T).numpy()
    if kernel != "linear":
        raise ValueError(f"{count} RBF Gram matrices of {n}×{n} exceed the memory budget; "
                         "use fewer samples or minibatch_cka")
    fx = _feature_terms(xs, "xs")
    fy = fx if same else _feature_terms(ys, "ys")
    for i, f in enumerate([*fx, *fy]):
        if f.shape[0] != n:
            raise ValueError(f"representation {i} has {f.shape[0]} samples, expected {n}")
    if debiased:
        self_x = [_unbiased_hsic_numerator(f, f) for f in fx]
        self_y = self_x if same else [_unbiased_hsic_numerator(f, f) for f in fy]
        cross = lambda a, b: _unbiased_hsic_numerator(a, b)  # noqa: E731
    else:
        self_x = [((f.T @ f) ** 2).sum() for f in fx]
        self_y = self_x if same else [((f.T @ f) ** 2).sum() for f in fy]
        cross = lambda a, b: ((b.T @ a) ** 2).sum()  # noqa: E731
    out = np.empty((len(fx), len(fy)))
    for i, a in enumerate(fx):
        for j, b in enumerate(fy):
            if same and j < i:
                out[i, j] = out[j, i]
                continue
            out[i, j] = _ratio(cross(a, b), self_x[i], self_y[j], "linear CKA")
    return out
