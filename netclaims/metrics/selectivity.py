"""Class selectivity, mutual information between units and class, class balance."""

from __future__ import annotations

import numpy as np
import torch

from netclaims._checks import ArrayLike, as_labels, as_tensor, check_finite


def selectivity_from_class_means(class_means: torch.Tensor, *, eps: float = 1e-6) -> torch.Tensor:
    """Selectivity index per unit from a ``(classes, units)`` matrix of class means.

    ``SI = (mu_max - mu_rest) / (mu_max + mu_rest + eps)`` with ``mu_max`` the largest class
    mean and ``mu_rest`` the mean of the other class means (Morcos et al. 2018, section 2.3;
    Leavitt & Morcos 2020). A unit whose class means are all zero (a dead unit) gets 0.
    Differentiable (``max`` takes the subgradient of the arg-max class).
    """
    if class_means.ndim != 2:
        raise ValueError(f"class_means must be (classes, units), got {tuple(class_means.shape)}")
    classes = class_means.shape[0]
    if classes < 2:
        raise ValueError("class selectivity needs at least two classes present")
    if bool((class_means < 0).any()):
        worst = float(class_means.min())
        raise ValueError(
            f"class selectivity is defined for non-negative activations (after a ReLU); "
            f"got a class mean of {worst:.4g}. Record the layer after its nonlinearity.")
    mu_max = class_means.max(dim=0).values
    mu_rest = (class_means.sum(dim=0) - mu_max) / (classes - 1)
    return (mu_max - mu_rest) / (mu_max + mu_rest + eps)


def class_selectivity(activations: ArrayLike, labels: ArrayLike, *,
                      eps: float = 1e-6) -> torch.Tensor:
    """Class selectivity index of each unit.

    Formula: class-conditional **means** ``mu_c`` over the samples of each class present in
    ``labels`` (means, not sums, so class counts do not bias the index), then
    ``SI = (mu_max - mu_rest) / (mu_max + mu_rest + eps)``, ``eps = 1e-6``.

    Paper: Morcos et al. 2018 (single directions), Leavitt & Morcos 2020 / the
    early-epochs paper. Estimator: plug-in on the given samples; classes absent from the
    batch are left out, so on a minibatch this is the regularizer's per-batch form. The
    computation is differentiable when ``activations`` requires grad.

    Args:
        activations: ``(n, units)``, non-negative (after the nonlinearity), spatially reduced.
        labels: ``(n,)`` integer class indices.

    Returns:
        ``(units,)`` tensor in ``[0, 1)``; dead units give 0.
    """
    grad = isinstance(activations, torch.Tensor) and activations.requires_grad
    if isinstance(activations, torch.Tensor) and grad:
        a = activations
        if a.ndim != 2:
            raise ValueError(f"activations must be (n, units), got shape {tuple(a.shape)}")
        check_finite(a.detach(), "activations")
    else:
        a = as_tensor(activations, "activations", ndim=2)
    y = as_labels(labels, n=a.shape[0]).to(a.device)
    si = _selectivity(a, y, eps)
    if not grad and not bool(torch.isfinite(si).all()):
        # class sums overflowed the input's precision (float16, or float32 near 1e38)
        si = _selectivity(a.double(), y, eps).to(a.dtype)
    return si


def _selectivity(a: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    classes, index = torch.unique(y, return_inverse=True)
    counts = torch.bincount(index, minlength=classes.numel()).to(a.dtype)
    sums = torch.zeros(classes.numel(), a.shape[1], dtype=a.dtype, device=a.device)
    sums = sums.index_add(0, index, a)
    return selectivity_from_class_means(sums / counts[:, None], eps=eps)


def live_units(activations: ArrayLike) -> torch.Tensor:
    """Which units are alive on a set of samples: ``(n, units)`` activations (after the
    nonlinearity, spatially reduced) → bool ``(units,)``, True where some sample activates
    the unit (a non-zero value).

    A unit never active on the evaluation set has no class means to compare and no effect to
    ablate: its selectivity, mutual information and importance are 0 by construction and say
    nothing about a finding. The claims leave such units out of per-unit means and
    correlations, place them at random in selectivity orderings
    (:func:`selectivity_order`), and report how many they left out (in the smoke suite a
    conv net without batch norm has 20–25% of them, its dense layer 46%).
    """
    return (as_tensor(activations, "activations", ndim=2) != 0).any(dim=0)


def selectivity_order(selectivity: ArrayLike, live: torch.Tensor, *,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Unit indices from the most to the least selective live unit, with the dead units
    (``live`` False) at random positions among them: ablated "most selective first", a dead
    unit is neither selective nor unselective, and ranking its SI of 0 last would make the
    selective order look harmless. Ties keep index order."""
    si = as_tensor(selectivity, "selectivity", ndim=1)
    alive = torch.as_tensor(live, dtype=torch.bool)
    if alive.shape != si.shape:
        raise ValueError(f"live has shape {tuple(alive.shape)}, selectivity {tuple(si.shape)}")
    ranked = alive.nonzero().squeeze(1)[si[alive].argsort(descending=True, stable=True)]
    dead = (~alive).nonzero().squeeze(1)
    slots = torch.zeros(si.numel(), dtype=torch.bool)
    slots[torch.randperm(si.numel(), generator=generator)[:dead.numel()]] = True
    order = torch.empty(si.numel(), dtype=torch.long)
    order[slots] = dead[torch.randperm(dead.numel(), generator=generator)]
    order[~slots] = ranked
    return order


def mean_class_selectivity(layer_activations: dict[str, torch.Tensor] | list[torch.Tensor],
                           labels: torch.Tensor, *, eps: float = 1e-6) -> torch.Tensor:
    """Differentiable mean selectivity over units of each layer, then over layers.

    The quantity the selectivity regularizer uses: ``loss = CE - alpha * mean_SI`` with
    ``alpha < 0`` pushing selectivity down (early-epochs paper, section 2.3).
    """
    tensors = list(layer_activations.values()) if isinstance(layer_activations, dict) \
        else list(layer_activations)
    if not tensors:
        raise ValueError("mean_class_selectivity needs at least one layer")
    per_layer = [class_selectivity(t, labels, eps=eps).mean() for t in tensors]
    return torch.stack(per_layer).mean()


def _equal_frequency_bins(a: np.ndarray, bins: int) -> np.ndarray:
    """Bin index per value, per column, with about ``n / bins`` values a bin; ties share a bin
    (so a column of zeros lands in a single bin)."""
    n = a.shape[0]
    order = np.sort(a, axis=0)
    out = np.empty(a.shape, dtype=np.int64)
    for j in range(a.shape[1]):
        rank = np.searchsorted(order[:, j], a[:, j], side="left")
        out[:, j] = np.minimum(rank * bins // n, bins - 1)
    return out


def _entropy_mm(counts: np.ndarray, n: int) -> np.ndarray:
    """Plug-in entropy (bits) with Miller–Madow correction, along the last axis."""
    p = counts / n
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log2(p), 0.0).sum(-1)
    occupied = (counts > 0).sum(-1)
    return h + (occupied - 1) / (2 * n * np.log(2))


def mutual_information(activations: ArrayLike, labels: ArrayLike, *,
                       bins: int = 10) -> torch.Tensor:
    """Mutual information (bits) between each unit's activation and the class.

    Estimator: the unit's values are discretized into ``bins`` equal-frequency bins (tied
    values share a bin), then ``I = H(X) + H(Y) - H(X, Y)`` with plug-in entropies, each
    Miller–Madow corrected (``+ (m - 1) / 2n`` for ``m`` occupied cells, in nats, converted to
    bits). The correction can make a near-zero estimate slightly negative; it is not clipped.
    A dead (constant) unit gives exactly 0. Paper: Morcos et al. 2018, section 2.3.

    Returns:
        ``(units,)`` float64 tensor.
    """
    a = as_tensor(activations, "activations", ndim=2).to(torch.float64).cpu().numpy()
    y = as_labels(labels, n=a.shape[0]).cpu().numpy()
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    n, units = a.shape
    _, y = np.unique(y, return_inverse=True)
    classes = int(y.max()) + 1
    x = _equal_frequency_bins(a, bins)
    h_y = _entropy_mm(np.bincount(y, minlength=classes)[None], n)[0]
    offsets = np.arange(units)[None, :]
    h_x = _entropy_mm(np.bincount((offsets * bins + x).ravel(),
                                  minlength=units * bins).reshape(units, bins), n)
    joint = np.bincount((offsets * bins * classes + x * classes + y[:, None]).ravel(),
                        minlength=units * bins * classes).reshape(units, bins * classes)
    h_xy = _entropy_mm(joint, n)
    constant = np.all(a == a[:1], axis=0)
    return torch.from_numpy(np.where(constant, 0.0, h_x + h_y - h_xy))


def class_balance(predictions: ArrayLike, *, top: int = 5) -> float:
    """Mean count of the ``top`` most frequently predicted classes.

    Early-epochs paper (SE-13): a model that over-represents a few classes on held-out data
    has a higher value. ``predictions`` are predicted class indices ``(n,)`` or logits
    ``(n, classes)`` (arg-max taken).
    """
    p = predictions if isinstance(predictions, torch.Tensor) else torch.as_tensor(
        np.asarray(predictions))
    if p.ndim == 2:
        p = as_tensor(p, "predictions", ndim=2).argmax(1)
    y = as_labels(p, "predictions")
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    counts = torch.bincount(y).sort(descending=True).values
    counts = torch.cat([counts, counts.new_zeros(max(0, top - counts.numel()))])
    return float(counts[:top].double().mean())

