"""Ablation and noise curves, single-unit importance, L1 norms, sharpness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from netclaims.metrics import (
    ablation_curve,
    curve_auc,
    element_means,
    incoming_l1_norm,
    noise_curve,
    random_sharpness,
    single_unit_importance,
    unit_statistics,
)


def _trained_mlp(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(300, 6, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                          nn.Linear(16, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), x, y


@pytest.fixture(scope="module")
def trained():
    return _trained_mlp()


def test_curve_auc_rules():
    assert curve_auc([0, 0.5, 1], [1, 1, 1]) == pytest.approx(1.0)
    assert curve_auc([0, 1], [1, 0]) == pytest.approx(0.5)
    assert curve_auc([0.1, 1, 10], [1, 0.5, 0], log_x=True) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="from 0 to 1"):
        curve_auc([0.1, 1.0], [1, 1])
    with pytest.raises(ValueError, match="increasing"):
        curve_auc([0, 0.6, 0.5, 1], [1, 1, 1, 1])


def test_partial_auc_past_a_fraction():
    x, y = [0, 0.5, 1], [1.0, 1.0, 0.0]
    assert curve_auc(x, y, start=0.5) == pytest.approx(0.5)
    # start between grid points: y interpolated at 0.25 (1.0), area 0.25 + 0.25 over 0.75
    assert curve_auc(x, y, start=0.25) == pytest.approx((0.25 + 0.25) / 0.75)
    assert curve_auc(x, y, start=0.0) == curve_auc(x, y)
    with pytest.raises(ValueError, match="start"):
        curve_auc(x, y, start=1.0)


def test_per_position_ablation_curve_counts_positions():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(30, 4)).eval()
    x = torch.randn(50, 1, 10)
    y = model(x).argmax(1)
    by_position = ablation_curve(model, x, y, ["1"], measure="unchanged", per_position=True,
                                 fractions=[0, 0.5, 1], orderings=2)
    by_channel = ablation_curve(model, x, y, ["1"], measure="unchanged",
                                fractions=[0, 0.5, 1], orderings=2)
    assert by_position.values[:, 0].tolist() == [1.0, 1.0]
    np.testing.assert_array_equal(by_position.values[:, -1], by_channel.values[:, -1])


def test_ablation_curve_starts_at_intact_and_falls(trained):
    model, x, y = trained
    curve = ablation_curve(model, x, y, ["1", "3"], orderings=4, seed=1)
    assert curve.values.shape == (4, 11)
    intact = float((model(x).argmax(1) == y).double().mean())
    assert curve.baseline == pytest.approx(intact)
    np.testing.assert_allclose(curve.values[:, 0], intact)
    assert curve.normalized[:, 0] == pytest.approx(1.0)
    assert curve.values[:, -1].max() < intact - 0.2
    assert 0 < curve.auc < 1 and "intact" in curve.normalization
    again = ablation_curve(model, x, y, ["1", "3"], orderings=4, seed=1)
    np.testing.assert_array_equal(again.values, curve.values)


def test_curves_are_normalized_between_chance_and_the_intact_net(trained):
    """Ablating every unit leaves a constant prediction: the curve ends at 0 (chance), not at
    chance / intact accuracy."""
    model, x, y = trained
    curve = ablation_curve(model, x, y, ["3"], orderings=2)
    chance = float(torch.bincount(y).max()) / y.numel()
    assert curve.chance == pytest.approx(chance)
    np.testing.assert_allclose(curve.normalized,
                               (curve.values - chance) / (curve.baseline - chance))
    # with the last unit layer zeroed the output is the constant bias: one class for all
    constant = float((y == model[-1].bias.argmax()).double().mean())
    assert curve.normalized[:, -1] == pytest.approx((constant - chance) / (curve.baseline
                                                                          - chance))
    assert curve.normalized[:, -1].max() <= 1e-12
    with pytest.raises(ValueError, match="not above chance"):
        ablation_curve(model, x, torch.full_like(y, int(y.mode().values)), ["3"], orderings=1)


def test_explicit_ordering_and_mean_fill(trained):
    model, x, y = trained
    stats = unit_statistics(model, x, ["3"])
    order = torch.argsort(stats["3"].std, descending=True)
    zero = ablation_curve(model, x, y, ["3"], orderings={"3": order})
    mean = ablation_curve(model, x, y, ["3"], orderings={"3": order},
                          fill={"3": stats["3"].mean.float()})
    assert zero.values.shape == (1, 11)
    assert not np.array_equal(zero.values, mean.values)
    with pytest.raises(ValueError, match="permutations"):
        ablation_curve(model, x, y, ["3"], orderings={"3": torch.zeros(16, dtype=torch.long)})


def test_unchanged_measure_is_one_at_zero_ablation(trained):
    model, x, y = trained
    curve = ablation_curve(model, x, y, ["1"], measure="unchanged", orderings=2)
    assert curve.baseline == 1.0 and np.all(curve.values[:, 0] == 1.0)


def test_noise_curve_degrades_with_scale(trained):
    model, x, y = trained
    stds = {k: v.std for k, v in unit_statistics(model, x, ["1", "3"]).items()}
    curve = noise_curve(model, x, y, ["1", "3"], stds, scales=np.logspace(-2, 1.5, 6),
                        repeats=2)
    assert curve.values.shape == (2, 6) and curve.x_axis == "log10 scale"
    assert curve.values[:, 0].min() > curve.values[:, -1].max()


def test_single_unit_importance_matches_one_at_a_time(trained):
    model, x, y = trained
    importance = single_unit_importance(model, x, y, "3")
    assert importance.shape == (16,)
    loss = nn.functional.cross_entropy
    with torch.no_grad():
        base = loss(model(x).double(), y)
        h = torch.relu(model[2](torch.relu(model[0](x))))
    for unit in (0, 7):
        h2 = h.clone()
        h2[:, unit] = 0
        with torch.no_grad():
            expected = loss(model[4](h2).double(), y) - base
        assert float(importance[unit]) == pytest.approx(float(expected), abs=1e-5)


def test_incoming_l1_norm():
    conv = nn.Conv1d(3, 4, 5)
    torch.testing.assert_close(incoming_l1_norm(conv), conv.weight.abs().sum((1, 2)).double())
    with pytest.raises(ValueError, match="no weight"):
        incoming_l1_norm(nn.ReLU())


def test_random_sharpness_flatter_for_smaller_loss_sensitivity(trained):
    model, x, y = trained
    before = [p.clone() for p in model.parameters()]
    sigma = random_sharpness(model, x, y, draws=2, iterations=10)
    assert 0 < sigma < 2.0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    looser = random_sharpness(model, x, y, deviation=1.0, draws=2, iterations=10)
    assert looser > sigma
    assert random_sharpness(model, x, y, draws=2, iterations=10) == sigma


def test_mean_ablation_clamps_each_element_of_a_feature_map_to_its_own_mean():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(30, 2)).eval()
    x = torch.randn(50, 1, 10)
    means = element_means(model, x, ["1"])["1"]
    assert means.shape == (3, 10)
    torch.testing.assert_close(means, torch.relu(model[0](x)).mean(0), rtol=1e-5, atol=1e-6)
    # fully ablated to the per-element means, every input gives the mean-field output
    curve = ablation_curve(model, x, torch.zeros(50, dtype=torch.long), ["1"],
                           fractions=[0.0, 1.0], orderings=1, fill={"1": means},
                           measure="unchanged")
    constant = model[3](means.flatten()[None]).argmax(-1)
    assert curve.values[0, 1] == pytest.approx(float((model(x).argmax(-1) == constant)
                                                     .double().mean()))
    dense = element_means(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), torch.randn(9, 4), ["1"])
    assert dense["1"].shape == (3,)


def test_per_element_means_of_token_features_are_laid_out_as_the_layer_holds_them():
    class Tokens(nn.Module):  # (batch, tokens, features), units over the features
        def __init__(self) -> None:
            super().__init__()
            self.proj, self.act, self.head = nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)
            self.act.netclaims_unit_axis = -1

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.act(self.proj(x)).mean(1))

    torch.manual_seed(1)
    model, x = Tokens().eval(), torch.randn(30, 5, 4)
    means = element_means(model, x, ["act"])["act"]
    assert means.shape == (6, 5)  # units first, as collected
    torch.testing.assert_close(means, torch.relu(model.proj(x)).mean(0).T)
    curve = ablation_curve(model, x, torch.zeros(30, dtype=torch.long), ["act"],
                           fractions=[0.0, 1.0], orderings=1, fill={"act": means},
                           measure="unchanged")
    constant = model.head(means.T.mean(0)[None]).argmax(-1)
    assert curve.values[0, 1] == pytest.approx(float((model(x).argmax(-1) == constant)
                                                     .double().mean()))


def test_ablation_with_batch_statistics_leaves_the_running_averages_alone():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    model.train()
    for _ in range(5):  # give the running averages something to hold
        model(torch.randn(64, 6) * 3 + 1)
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(100, 6)
    y = torch.zeros(100, dtype=torch.long)
    running = ablation_curve(model, x, y, ["2"], orderings=2, seed=0, measure="unchanged")
    batch = ablation_curve(model, x, y, ["2"], orderings=2, seed=0, measure="unchanged",
                           batch_statistics=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert not model.training and not model[1].training and model[1].momentum == 0.1
    # normalizing by each batch's statistics makes another function of the damaged net
    assert not np.allclose(batch.values, running.values)
    with pytest.raises(ValueError, match="sequential"):
        ablation_curve(model, x, y, ["2"], orderings=2, strategy="batched",
                       batch_statistics=True)
