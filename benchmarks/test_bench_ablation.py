"""A 20-point cumulative ablation curve on a conv net: netclaims runs the layers below the
ablated one once per batch and replicates the batch per mask; the naive way runs 20 full
forward passes with a hook."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks.conftest import best_of
from netclaims.metrics import ablation_curve
from netclaims.units import ablation, intervene

POINTS, SAMPLES, LENGTH = 20, 4000, 40


class ConvNet(nn.Module):
    """Single-directions style 1-D conv net: four conv/ReLU layers, then a dense head."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = 1
        for _ in range(4):
            layers += [nn.Conv1d(prev, channels, 5, padding=2), nn.ReLU()]
            prev = channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels * LENGTH, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = ConvNet().eval()
    x = torch.randn(SAMPLES, 1, LENGTH)
    y = model(x).argmax(1)  # labels the model gets right, so the curve is informative
    return model, x, y


def _naive(model, x, y, layer, order, fractions):
    units = order.numel()
    out = []
    with torch.no_grad():
        for f in fractions:
            with intervene(model, {layer: ablation(units, order[:round(f * units)])}):
                preds = torch.cat([model(b).argmax(1) for b in x.split(256)])
            out.append(float((preds == y).double().mean()))
    return np.array(out)


def test_ablation_curve_20_points(benchmark, report, setup):
    model, x, y = setup
    layer = "features.7"
    fractions = np.linspace(0, 1, POINTS)
    order = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    curve = benchmark.pedantic(
        ablation_curve, args=(model, x, y, [layer]),
        kwargs={"fractions": fractions, "orderings": {layer: order}, "mask_chunk": 20},
        rounds=3, iterations=1)
    ours_s = benchmark.stats.stats.min
    naive = {}
    naive_s = best_of(lambda: naive.setdefault(
        "v", _naive(model, x, y, layer, order, fractions)), repeats=2)
    np.testing.assert_allclose(curve.values[0], naive["v"], atol=2 / SAMPLES)
    report("netclaims_seconds", ours_s)
    report("naive_20_forward_seconds", naive_s)
    report("time_ratio_vs_20_forwards", ours_s / naive_s)
    assert ours_s / naive_s <= 0.5
