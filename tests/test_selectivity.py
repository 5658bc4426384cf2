"""Class selectivity, mutual information and class balance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from netclaims import strategies as nst
from netclaims.metrics import (
    class_balance,
    class_selectivity,
    live_units,
    mean_class_selectivity,
    mutual_information,
    selectivity_from_class_means,
    selectivity_order,
)
from netclaims.units import ClassMeans, PerLayer, stream


@st.composite
def acts_and_labels(draw, dead_fraction=0.0):
    y = draw(nst.labels())
    a = draw(nst.activations(n=y.size, nonnegative=True, dead_fraction=dead_fraction))
    return a, y


@given(acts_and_labels(dead_fraction=0.3))
def test_si_in_unit_interval_and_dead_units_zero(data):
    a, y = data
    si = class_selectivity(a, y)
    assert torch.all(si >= 0) and torch.all(si < 1)
    assert not torch.isnan(si).any()
    dead = np.all(a == 0, axis=0)
    assert torch.all(si[torch.from_numpy(dead)] == 0)


@given(acts_and_labels(), st.floats(0.1, 100.0), st.data())
def test_si_invariant_to_positive_scaling_and_relabelling(data, scale, draw):
    a, y = data
    base = class_selectivity(a, y)
    # eps = 1e-6 moves SI by at most eps / (scale · mu_max) <= 1e-4 when the mean is > 0.1
    active = torch.from_numpy(a.mean(0) > 0.1)
    torch.testing.assert_close(class_selectivity(a * scale, y)[active], base[active],
                               atol=2e-4, rtol=0)
    perm = np.asarray(draw.draw(st.permutations(range(int(y.max()) + 1))))
    torch.testing.assert_close(class_selectivity(a, perm[y]), base)


def test_si_zero_when_class_means_equal_uses_means_not_sums():
    # 3 samples of class 0 and 1 of class 1, all activations 1: SI must be 0 (class means, not sums)
    a = torch.ones(4, 1)
    assert class_selectivity(a, [0, 0, 0, 1]).item() == 0.0


def test_si_approaches_one_for_single_class_unit():
    y = np.repeat(np.arange(4), 5)
    a = (y == 2).astype(float)[:, None] * 10.0
    assert class_selectivity(a, y).item() == pytest.approx(1.0, abs=1e-6)


def test_si_formula_by_hand():
    a = np.array([[1.0], [3.0], [4.0], [0.0]])
    y = np.array([0, 0, 1, 2])
    mu_max, mu_rest = 4.0, (2.0 + 0.0) / 2
    assert class_selectivity(a, y).item() == pytest.approx(
        (mu_max - mu_rest) / (mu_max + mu_rest + 1e-6))


def test_si_is_differentiable_for_regularizer():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(32, 5, generator=gen, requires_grad=True)
    y = torch.randint(0, 4, (32,), generator=gen)
    value = mean_class_selectivity({"l1": a, "l2": a * 2}, y)
    value.backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_si_rejects_negative_activations_and_single_class():
    with pytest.raises(ValueError, match="non-negative"):
        class_selectivity(np.array([[-1.0], [2.0]]), [0, 1])
    with pytest.raises(ValueError, match="two classes"):
        class_selectivity(np.ones((3, 2)), [1, 1, 1])


def test_streaming_selectivity_equals_full_batch(mlp_model):
    x, y = torch.randn(100, 6), torch.randint(0, 3, (100,))
    sink = stream(mlp_model, (x, y), ["1"], PerLayer(lambda: ClassMeans(3)), batch_size=7)
    from netclaims.units import collect
    full = collect(mlp_model, x, ["1"])["1"]
    torch.testing.assert_close(selectivity_from_class_means(sink["1"].means),
                               class_selectivity(full.double(), y), atol=1e-6, rtol=1e-6)


def test_mutual_information_limits():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 250)
    informative = y + rng.normal(scale=0.01, size=y.size)
    noise = rng.normal(size=y.size)
    dead = np.zeros(y.size)
    mi = mutual_information(np.stack([informative, noise, dead], 1), y, bins=4)
    assert mi[0] == pytest.approx(2.0, abs=0.05)  # log2(4) bits
    assert abs(mi[1]) < 0.02
    assert mi[2] == 0.0


def test_mutual_information_invariant_to_monotone_maps():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    a = np.abs(y + rng.normal(size=300))[:, None]
    torch.testing.assert_close(mutual_information(a, y), mutual_information(np.exp(a), y))


def test_class_balance():
    assert class_balance([0, 0, 0, 1, 1, 2]) == pytest.approx((3 + 2 + 1 + 0 + 0) / 5)
    logits = torch.tensor([[2.0, 0.0], [3.0, 1.0], [0.0, 1.0]])
    assert class_balance(logits, top=1) == 2.0


def test_dead_units_are_found_and_placed_at_random_in_selective_orders():
    acts = torch.tensor([[0.0, 1.0, 0.0, 2.0, 0.0],
                         [0.0, 3.0, 0.0, 0.0, 0.5]])
    live = live_units(acts)
    assert live.tolist() == [False, True, False, True, True]
    si = torch.tensor([0.0, 0.2, 0.0, 0.9, 0.5])
    positions = {0: set(), 2: set()}
    for seed in range(40):
        order = selectivity_order(si, live, generator=torch.Generator().manual_seed(seed))
        assert sorted(order.tolist()) == list(range(5))
        ranked = [u for u in order.tolist() if live[u]]
        assert ranked == [3, 4, 1]  # live units from the most to the least selective
        for dead in positions:
            positions[dead].add(order.tolist().index(dead))
    # a dead unit's SI of 0 does not send it to the end: it lands anywhere
    assert all(len(seen) >= 4 and min(seen) == 0 for seen in positions.values())
    with pytest.raises(ValueError, match="shape"):
        selectivity_order(si, live[:3])


def test_mutual_information_is_the_miller_madow_formula_from_counts():
    """Two equal-frequency bins, two classes: I = H(X) + H(Y) − H(X, Y), each plug-in
    entropy plus (occupied cells − 1) / 2n nats, in bits. Here the corrections do not cancel
    (2 + 2 cells against 4 joint ones): they lower I by 1 / (16 ln 2) ≈ 0.09 bits, so a
    correction with the wrong sign or left out is caught."""
    a = np.array([[0.0], [0.0], [0.0], [0.0], [1.0], [1.0], [1.0], [1.0]])
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    n = 8

    def entropy(counts):
        p = np.asarray(counts, float) / n
        return -(p * np.log2(p)).sum() + (p.size - 1) / (2 * n * np.log(2))

    expected = entropy([4, 4]) + entropy([4, 4]) - entropy([3, 1, 1, 3])
    assert float(mutual_information(a, y, bins=2)[0]) == pytest.approx(expected, abs=1e-12)


def test_a_unit_active_only_below_zero_is_alive():
    from netclaims.metrics import live_units

    acts = torch.tensor([[0.0, -0.2, 0.0], [0.0, -0.1, 0.5]])  # e.g. GELU outputs
    assert live_units(acts).tolist() == [False, True, True]


def test_class_balance_of_logits_takes_each_samples_arg_max():
    from netclaims.metrics import class_balance

    logits = torch.tensor([[5.0, 0.0, 0.0], [4.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.5]])
    # predicted classes 0, 0, 2, 0: counts 3, 1, 0
    assert class_balance(logits, top=2) == 2.0
    assert class_balance(logits.argmax(1), top=2) == 2.0
