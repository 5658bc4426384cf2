"""Intraclass clustering measures c1–c4."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netclaims.metrics import (
    c1_subclass_selectivity,
    c2_subclass_silhouette,
    c3_class_std_ratio,
    c4_class_distance_std_ratio,
    standardize_for_c4,
)


def _hierarchical(seed: int = 0, spread: float = 3.0, n_per: int = 20):
    """4 subclasses in 2 superclasses; each subclass a cluster in a 6-D space."""
    rng = np.random.default_rng(seed)
    sub = np.repeat(np.arange(4), n_per)
    sup = sub // 2
    centers = rng.normal(size=(4, 6)) * spread
    x = centers[sub] + rng.normal(size=(sub.size, 6))
    return x, sup, sub


def _layers(x, seed=0):
    rng = np.random.default_rng(seed)
    return {"a": x @ rng.normal(size=(6, 10)), "b": x @ rng.normal(size=(6, 8)) + 1.0}


def test_subclass_structure_raises_c1_and_c2():
    clustered = _hierarchical(spread=4.0)
    blurred = _hierarchical(spread=0.0)
    for fn in (c1_subclass_selectivity, c2_subclass_silhouette):
        high = fn(_layers(clustered[0]), clustered[1], clustered[2])
        low = fn(_layers(blurred[0]), blurred[1], blurred[2])
        assert high > low + 0.2


def test_c1_by_hand_single_neuron():
    sub = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    sup = sub // 2
    a = np.array([[1.0], [3.0], [0.0], [2.0], [5.0], [5.0], [1.0], [1.0]])
    # subclass 0 vs 1: (2 - 1) / (1 + 1 + 1e-7); 1 vs 0: -0.5; 2 vs 3: 4/1e-7; 3 vs 2: -4/1e-7
    values = sorted([1 / (2 + 1e-7), -1 / (2 + 1e-7), 4 / 1e-7, -4 / 1e-7])
    assert c1_subclass_selectivity({"l": a}, sup, sub, k=1) == pytest.approx(
        np.median(values))


@settings(max_examples=30)
@given(st.integers(0, 2**16), st.floats(0.1, 10.0), st.floats(-5.0, 5.0))
def test_c3_and_c4_invariant_to_positive_affine_maps(seed, scale, shift):
    x, _, sub = _hierarchical(seed)
    layers = _layers(x, seed)
    rng = np.random.default_rng(seed + 1)
    # keep every neuron alive (some positive value) before and after the map
    moved = {k: v * (scale * rng.uniform(0.5, 2.0, v.shape[1])) + shift + np.abs(shift)
             + np.abs(v).max() * scale * 2 for k, v in layers.items()}
    lifted = {k: v + np.abs(v).max() for k, v in layers.items()}
    assert c3_class_std_ratio(moved, sub) == pytest.approx(c3_class_std_ratio(lifted, sub),
                                                           rel=1e-5)
    assert c4_class_distance_std_ratio(moved, sub) == pytest.approx(
        c4_class_distance_std_ratio(lifted, sub), rel=1e-5)
    np.testing.assert_allclose(standardize_for_c4(moved["a"]), standardize_for_c4(lifted["a"]),
                               atol=1e-5)


@settings(max_examples=30)
@given(st.integers(0, 2**16), st.floats(0.01, 100.0))
def test_c1_invariant_to_positive_scaling(seed, scale):
    x, sup, sub = _hierarchical(seed)
    layers = _layers(x, seed)
    scaled = {k: v * scale for k, v in layers.items()}
    assert c1_subclass_selectivity(scaled, sup, sub) == pytest.approx(
        c1_subclass_selectivity(layers, sup, sub), rel=1e-5)


def test_dead_neurons_score_zero_in_c3_and_are_dropped_in_c4():
    x, _, sub = _hierarchical()
    live = _layers(x)["a"] + 50.0
    dead = -np.abs(live) - 1.0
    assert c3_class_std_ratio({"d": dead}, sub, k=1) == 0.0
    assert standardize_for_c4(np.concatenate([live, dead], 1)).shape[1] == live.shape[1]
    with pytest.raises(ValueError, match="every layer is dead"):
        c4_class_distance_std_ratio({"d": dead}, sub)


def test_c4_percentile_activates_about_a_quarter():
    rng = np.random.default_rng(0)
    z = standardize_for_c4(rng.normal(size=(400, 64)))
    assert np.mean(z > 0) == pytest.approx(0.25, abs=0.01)


def test_per_layer_values_and_errors():
    x, sup, sub = _hierarchical()
    per = c3_class_std_ratio(_layers(x), sub, per_layer=True)
    assert set(per) == {"a", "b"}
    per4 = c4_class_distance_std_ratio(_layers(x), sub, per_layer=True)
    # top-k over all layers is the plain mean; top-1 picks the best layer per class
    assert c4_class_distance_std_ratio(_layers(x), sub, k=2) == pytest.approx(
        np.mean(list(per4.values())))
    assert c4_class_distance_std_ratio(_layers(x), sub, k=1) >= max(per4.values()) - 1e-12
    with pytest.raises(ValueError, match="samples"):
        c3_class_std_ratio({"a": x[:10]}, sub)
    with pytest.raises(ValueError, match="only subclass"):
        c1_subclass_selectivity({"a": x}, sup, sup)


def test_c4_matches_the_equation_over_pairs_i_below_j():
    x, sup, _ = _hierarchical(seed=3, n_per=15)
    layers = _layers(x)

    def pair_std(z):
        norms = np.linalg.norm(z, axis=1, keepdims=True)
        d = 1 - (z / norms) @ (z / norms).T
        i, j = np.triu_indices(len(z), k=1)
        return d[i, j].std()

    per_layer = {}
    for name, a in layers.items():
        z = standardize_for_c4(a)
        per_layer[name] = [pair_std(z[sup == c]) / (pair_std(z) + 1e-7) for c in (0, 1)]
    expected = np.mean(np.max([per_layer["a"], per_layer["b"]], axis=0))
    assert c4_class_distance_std_ratio(layers, sup) == pytest.approx(expected, rel=1e-9)
    assert c4_class_distance_std_ratio(layers, sup, per_layer=True) == pytest.approx(
        {name: np.mean(v) for name, v in per_layer.items()}, rel=1e-9)


def test_c3_by_hand_with_population_standard_deviations():
    """c3 of one layer of two neurons and two classes, from eq. 3 written out: per neuron
    and class std_class / std_all with population (ddof 0) deviations, the top k = 1 neuron
    per class, mean over the classes."""
    a = np.array([[1.0, 0.0], [3.0, 4.0], [10.0, 1.0], [14.0, 5.0]])
    y = np.array([0, 0, 1, 1])
    std_all = a.std(0)  # population
    ratios = np.stack([a[y == c].std(0) / (std_all + 1e-7) for c in (0, 1)])
    expected = float(np.mean(ratios.max(1)))
    assert c3_class_std_ratio({"layer": a}, y, k=1) == pytest.approx(expected, rel=1e-12)
    sample_std = np.stack([a[y == c].std(0, ddof=1) / (a.std(0, ddof=1) + 1e-7)
                           for c in (0, 1)])
    assert abs(expected - float(np.mean(sample_std.max(1)))) > 1e-3  # the choice matters
