"""Linear probes and decision-region similarity on dbViz planes (Somepalli et al. 2022,
``somepago/dbViz`` ``data.py``), used by the representation-dynamics claims (RD-7, RD-10)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from netclaims._checks import ArrayLike, as_labels, as_tensor, check_positive


def train_linear_probe(features: torch.Tensor, labels: ArrayLike, *, num_classes: int | None = None,
                       epochs: int = 20, lr: float = 1e-3, batch_size: int = 128,
                       seed: int = 0) -> nn.Linear:
    """A linear layer trained on frozen ``features`` ``(n, d)`` (extra axes flattened) with
    Adam and cross-entropy for a fixed number of ``epochs``; initialization and shuffling are
    seeded, so the same inputs give the same probe."""
    x = as_tensor(features, "features", ndim=tuple(range(2, 6)))
    x = x.reshape(x.shape[0], -1).float()
    y = as_labels(labels, n=x.shape[0], num_classes=num_classes)
    classes = num_classes or int(y.max()) + 1
    check_positive(lr, "lr")
    gen = torch.Generator().manual_seed(seed)
    probe = nn.Linear(x.shape[1], classes)
    bound = 1.0 / np.sqrt(x.shape[1])
    with torch.no_grad():
        probe.weight.uniform_(-bound, bound, generator=gen)
        probe.bias.uniform_(-bound, bound, generator=gen)
    opt = torch.optim.Adam(probe.parameters(), lr=lr)
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=gen)
        for start in range(0, x.shape[0], batch_size):
            idx = order[start:start + batch_size]
            opt.zero_grad()
            F.cross_entropy(probe(x[idx]), y[idx]).backward()
            opt.step()
    return probe.eval()


def dbviz_plane(x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor, *, resolution: int = 50,
                margin: float = 0.1) -> tuple[torch.Tensor, np.ndarray]:
    """Points of the plane through three inputs, as dbViz builds it.

    ``â = (x2 - x1)/|x2 - x1|``, ``b = x3 - x1``, ``b⊥ = b - (â·b) â`` normalized; anchors at
    ``(0, 0)``, ``(|x2 - x1|, 0)``, ``(â·b, b·b̂⊥)``; each axis spans the anchors' range
    extended by ``margin`` × its length, with ``resolution`` points; the points are
    ``x1 + u â + v b̂⊥``. Returns ``(resolution², *x1.shape)`` points and the ``(3, 2)`` anchor
    coordinates.
    """
    a = x2 - x1
    b = x3 - x1
    length = float(a.norm())
    if length == 0:
        raise ValueError("x1 and x2 coincide: the plane is undefined")
    a_hat = a / length
    b_perp = b - (a_hat.flatten() @ b.flatten()) * a_hat
    if float(b_perp.norm()) == 0:
        raise ValueError("the three inputs are collinear: the plane is undefined")
    b_hat = b_perp / b_perp.norm()
    b_flat = b.flatten()
    anchors = np.array([[0.0, 0.0], [length, 0.0],
                        [float(a_hat.flatten() @ b_flat), float(b_flat @ b_hat.flatten())]])
    axes = []
    for dim in range(2):
        lo, hi = anchors[:, dim].min(), anchors[:, dim].max()
        pad = margin * (hi - lo)
        axes.append(torch.linspace(lo - pad, hi + pad, resolution, dtype=x1.dtype))
    u, v = torch.meshgrid(axes[0], axes[1], indexing="ij")
    shape = (-1,) + (1,) * x1.ndim
    points = x1[None] + u.reshape(shape) * a_hat[None] + v.reshape(shape) * b_hat[None]
    return points, anchors


def sample_triplets(labels: ArrayLike, count: int, *, seed: int = 0) -> np.ndarray:
    """``count`` triplets of sample indices whose labels are three distinct classes."""
    y = as_labels(labels).numpy()
    classes = np.unique(y)
    if classes.size < 3:
        raise ValueError("triplets need at least three classes")
    rng = np.random.default_rng(seed)
    out = np.empty((count, 3), dtype=np.int64)
    for i in range(count):
        chosen = rng.choice(classes, size=3, replace=False)
        out[i] = [rng.choice(np.nonzero(y == c)[0]) for c in chosen]
    return out


def plane_predictions(predict: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor,
                      triplets: Sequence[Sequence[int]], *, resolution: int = 50) -> torch.Tensor:
    """Predicted classes of ``predict`` (inputs -> logits) on the dbViz plane of each triplet:
    ``(planes, resolution²)``. Compute once per checkpoint, then compare with
    :func:`decision_region_similarity`."""
    preds = []
    with torch.no_grad():
        for i, j, k in triplets:
            points, _ = dbviz_plane(inputs[i], inputs[j], inputs[k], resolution=resolution)
            preds.append(predict(points).argmax(-1).cpu())
    return torch.stack(preds)


def decision_region_similarity(predictions_a: torch.Tensor, predictions_b: torch.Tensor) -> float:
    """DRS: the fraction of plane points, pooled over planes, where two models predict the
    same class (from :func:`plane_predictions`). A model compared with itself scores 1."""
    if predictions_a.shape != predictions_b.shape:
        raise ValueError(f"prediction grids differ: {tuple(predictions_a.shape)} vs "
                         f"{tuple(predictions_b.shape)}")
    return float((predictions_a == predictions_b).double().mean())
