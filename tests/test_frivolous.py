"""Prunability, redundancy, gain, and the frivolous-units paper's exact constructions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from netclaims.metrics import (
    ablation_curve,
    prunable_fraction,
    redundant_fraction,
    widen_last_hidden,
    width_gain,
)
from netclaims.units import collect

FRACTIONS = np.linspace(0, 1, 7)


def test_prunable_interpolates_first_crossing():
    y = [1.0, 0.95, 0.9, 0.6, 0.85, 0.2, 0.1]
    # first r with y_r >= 0.8 > y_{r+1} is r = 2: between (1/3, 0.9) and (1/2, 0.6)
    expected = 2 / 6 + (0.9 - 0.8) * (1 / 6) / (0.9 - 0.6)
    assert prunable_fraction(FRACTIONS, y) == pytest.approx(expected)


def test_prunable_never_below_is_one_and_best_of_draws():
    assert prunable_fraction(FRACTIONS, np.ones(7)) == 1.0
    draws = np.array([[1, 0.7, 0.5, 0.4, 0.3, 0.2, 0.1], [1, 1, 0.9, 0.5, 0.3, 0.2, 0.1]])
    assert prunable_fraction(FRACTIONS, draws) == pytest.approx(
        prunable_fraction(FRACTIONS, draws[1]))
    assert prunable_fraction(FRACTIONS, [0.5, 0.4, 0.3, 0.2, 0.1, 0, 0]) == 0.0


def test_prunable_tolerance_and_shape_errors():
    y = [1.0, 0.9, 0.7, 0.5, 0.3, 0.1, 0.0]
    assert prunable_fraction(FRACTIONS, y, tolerance=0.5) > prunable_fraction(FRACTIONS, y)
    with pytest.raises(ValueError, match="points per curve"):
        prunable_fraction(FRACTIONS, y[:5])


def test_redundancy_counts_duplicates_strictly():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(500, 4)) * np.array([1.0, 1.2, 1.4, 1.6])  # smallest share 14%
    dup = np.concatenate([base, base], axis=1)
    assert redundant_fraction(base) == 0.0
    assert redundant_fraction(dup) == pytest.approx(4 / 8)
    assert redundant_fraction(np.ones((10, 3))) == 1.0


def test_redundancy_of_conv_maps_uses_positions_as_samples():
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(20, 3, 15))
    maps = np.concatenate([maps, maps[:, :1] * 2.0], axis=1)
    assert redundant_fraction(maps) == pytest.approx(1 / 4)


def test_width_gain():
    assert width_gain([0.25, 0.5, 1, 2, 4], [1, 2, 4, 8, 16]) == pytest.approx(2.0)
    assert width_gain([1, 2, 4], [0, 3, 9]) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="common ratio"):
        width_gain([1, 2, 8], [1, 2, 3])
    with pytest.raises(ValueError, match="common ratio"):
        width_gain([1, 1], [1, 2])
    with pytest.raises(ValueError, match="undefined"):
        width_gain([1, 2], [0, 0])


def test_width_gain_of_quadruplings_is_per_doubling():
    # a quantity that grows 3x per doubling grows 9x per quadrupling
    assert width_gain([0.25, 1, 4], [1, 9, 81]) == pytest.approx(3.0)
    full = [1, 3, 9, 27, 81]
    assert width_gain([0.25, 1, 4], full[::2]) == pytest.approx(
        width_gain([0.25, 0.5, 1, 2, 4], full))


def _narrow(seed: int = 0) -> tuple[nn.Linear, nn.Linear, torch.Tensor]:
    torch.manual_seed(seed)
    hidden, out = nn.Linear(24, 8).double(), nn.Linear(8, 3).double()
    with torch.no_grad():  # predictions that depend on every unit, not on the output bias
        out.weight.mul_(3.0)
        out.bias.zero_()
    return hidden, out, torch.randn(400, 24, dtype=torch.float64)


def _net(hidden: nn.Linear, out: nn.Linear) -> nn.Sequential:
    return nn.Sequential(hidden, nn.ReLU(), out).eval()


def _unchanged_curve(net: nn.Sequential, x: torch.Tensor) -> np.ndarray:
    curve = ablation_curve(net, x, torch.zeros(x.shape[0], dtype=torch.int64), ["1"],
                           fractions=FRACTIONS, orderings=3, measure="unchanged")
    return curve.values


@pytest.mark.parametrize("construction", ["duplicate", "orthogonal", "balanced"])
def test_constructions_compute_the_narrow_function(construction):
    hidden, out, x = _narrow()
    narrow = _net(hidden, out)
    wide = _net(*widen_last_hidden(hidden, out, construction, balance=50.0))
    torch.testing.assert_close(wide(x), narrow(x), rtol=0, atol=1e-11)


def test_constructions_move_prunability_and_redundancy_as_the_paper_says():
    hidden, out, x = _narrow()
    narrow = _net(hidden, out)
    nets = {c: _net(*widen_last_hidden(hidden, out, c, balance=50.0))
            for c in ("duplicate", "orthogonal", "balanced")}

    def prunable(net):  # units that can go, in units of the narrow layer
        return prunable_fraction(FRACTIONS, _unchanged_curve(net, x)) * \
            net[0].out_features / hidden.out_features

    def redundant(net):  # redundant units, counted
        return redundant_fraction(collect(net, x, ["1"])["1"]) * net[0].out_features

    base_p, base_r = prunable(narrow), redundant(narrow)
    assert prunable(nets["duplicate"]) > base_p and redundant(nets["duplicate"]) >= base_r + 7
    assert prunable(nets["orthogonal"]) > base_p and redundant(nets["orthogonal"]) < base_r + 2
    assert redundant(nets["balanced"]) >= base_r + 7
    assert prunable(nets["balanced"]) <= base_p


def test_constructions_on_a_trained_layer():
    """The paper's section-3 constructions (formerly claim FU-9, an exact check that cannot
    fail unless the code is broken) on a trained last hidden layer: same function, and (i)
    duplicates add prunable and exactly redundant units, (ii) independent extra units add
    prunable units and no redundant one, (iii) balanced duplicates add redundant units and
    lower the prunable fraction."""
    torch.manual_seed(0)
    x = torch.randn(600, 24, dtype=torch.float64)
    y = (x[:, :3].argmax(1) + (x[:, 3] > 0).long()) % 3
    hidden, out = nn.Linear(24, 16).double(), nn.Linear(16, 3).double()
    net = _net(hidden, out).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    narrow = net.eval()
    assert float((narrow(x).argmax(1) == y).double().mean()) > 0.8  # it trained

    def profile(model):
        logits = model(x).detach()
        curve = ablation_curve(model, x, logits.argmax(-1), ["1"], fractions=FRACTIONS,
                               orderings=3, measure="unchanged")
        units = collect(model, x, ["1"])["1"]
        count = units.shape[1]
        return (logits, prunable_fraction(curve.x, curve.values) * count,
                redundant_fraction(units, tolerance=1e-9) * count)

    logits, base_p, base_r = profile(narrow)
    wide = {c: profile(_net(*widen_last_hidden(hidden, out, c, inputs=x, seed=0)))
            for c in ("duplicate", "orthogonal", "balanced")}
    for construction, (wide_logits, _, _) in wide.items():
        torch.testing.assert_close(wide_logits, logits, rtol=0,
                                   atol=1e-9 * float(logits.abs().max()), msg=construction)
    assert wide["duplicate"][1] > base_p and wide["duplicate"][2] >= base_r + 16
    assert wide["orthogonal"][1] > base_p and wide["orthogonal"][2] <= base_r
    assert wide["balanced"][2] >= base_r + 16 and wide["balanced"][1] / 32 < base_p / 16


def test_orthogonal_construction_without_room_uses_independent_directions():
    torch.manual_seed(3)
    hidden, out = nn.Linear(8, 8).double(), nn.Linear(8, 3).double()
    x = torch.randn(300, 8, dtype=torch.float64)
    wide = _net(*widen_last_hidden(hidden, out, "orthogonal", inputs=x))
    torch.testing.assert_close(wide(x), _net(hidden, out)(x), rtol=0, atol=1e-12)
    extra = torch.relu(wide[0](x))[:, 8:]
    active = (extra > 0).double().mean(0)
    # biases at the median pre-activation: every extra unit is active on half the inputs
    torch.testing.assert_close(active, torch.full((8,), 0.5, dtype=torch.float64),
                               rtol=0, atol=1 / 300 + 1e-12)
    both = torch.relu(wide[0](x))
    assert torch.linalg.matrix_rank(both - both.mean(0)) == 16
    with pytest.raises(ValueError, match="features"):
        widen_last_hidden(hidden, out, "orthogonal", inputs=torch.randn(5, 7))
