"""Linear probes and decision-region similarity on dbViz planes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netclaims.metrics import (
    dbviz_plane,
    decision_region_similarity,
    plane_predictions,
    sample_triplets,
    train_linear_probe,
)


def test_plane_contains_the_three_anchors():
    gen = torch.Generator().manual_seed(0)
    x1, x2, x3 = (torch.randn(1, 12, generator=gen, dtype=torch.float64) for _ in range(3))
    points, anchors = dbviz_plane(x1, x2, x3, resolution=5, margin=0.0)
    assert points.shape == (25, 1, 12)
    assert anchors[1, 0] == pytest.approx(float((x2 - x1).norm()))
    # with no margin the grid corners include x1 (0, 0); every anchor lies in the plane
    flat = points.reshape(25, -1)
    assert torch.cdist(x1.reshape(1, -1), flat).min() < 1e-9
    basis = torch.linalg.svd(flat - flat.mean(0)).Vh[:2]
    for x in (x1, x2, x3):
        rel = (x.reshape(-1) - flat.mean(0))
        assert (rel - basis.T @ (basis @ rel)).norm() < 1e-9


def test_degenerate_planes_raise():
    x = torch.ones(4)
    with pytest.raises(ValueError, match="coincide"):
        dbviz_plane(x, x, x + 1)
    with pytest.raises(ValueError, match="collinear"):
        dbviz_plane(x, 2 * x, 3 * x)


def test_probe_is_seeded_and_learns_separable_classes():
    gen = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (300,), generator=gen)
    feats = torch.nn.functional.one_hot(y, 3).float() * 4 + torch.randn(300, 3, generator=gen)
    probe = train_linear_probe(feats, y, epochs=30, lr=1e-2)
    assert (probe(feats).argmax(1) == y).float().mean() > 0.95
    again = train_linear_probe(feats, y, epochs=30, lr=1e-2)
    assert torch.equal(probe.weight, again.weight)


def test_drs_self_is_one_and_differs_for_other_model():
    gen = torch.Generator().manual_seed(2)
    inputs = torch.randn(30, 5, generator=gen)
    labels = torch.arange(30) % 3
    triplets = sample_triplets(labels, 4, seed=0)
    assert all(len(set(labels[t].tolist())) == 3 for t in triplets)
    w1, w2 = torch.randn(5, 3, generator=gen), torch.randn(5, 3, generator=gen)
    p1 = plane_predictions(lambda z: z @ w1, inputs, triplets, resolution=10)
    p2 = plane_predictions(lambda z: z @ w2, inputs, triplets, resolution=10)
    assert p1.shape == (4, 100)
    assert decision_region_similarity(p1, p1) == 1.0
    assert decision_region_similarity(p1, p2) < 1.0
    with pytest.raises(ValueError, match="differ"):
        decision_region_similarity(p1, p2[:2])
    with pytest.raises(ValueError, match="three classes"):
        sample_triplets(np.array([0, 1, 0, 1]), 2)
