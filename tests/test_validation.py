"""Bad input gets a clear error that names the problem, never a silent NaN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netclaims import metrics
from netclaims._checks import as_labels, as_tensor


def test_nan_and_inf_are_named_with_position():
    a = np.ones((4, 3))
    a[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"activations contains 1 NaN value\(s\) \(first at "
                                         r"index \(2, 1\)\)"):
        metrics.class_selectivity(a, [0, 1, 0, 1])
    a[2, 1] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        metrics.mutual_information(a, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="NaN"):
        metrics.c3_class_std_ratio({"l": np.full((4, 2), np.nan)}, [0, 0, 1, 1])


def test_mismatched_lengths():
    with pytest.raises(ValueError, match="labels has 3 entries but the data has 4 samples"):
        metrics.class_selectivity(np.ones((4, 2)), [0, 1, 0])
    with pytest.raises(ValueError, match="a has 3 values but b has 2"):
        metrics.kendall_tau([1, 2, 3], [1, 2])


def test_labels_out_of_range_and_wrong_kind():
    with pytest.raises(ValueError, match="non-negative"):
        as_labels([0, -1, 2])
    with pytest.raises(ValueError, match="num_classes=3"):
        as_labels([0, 3], num_classes=3)
    with pytest.raises(ValueError, match="integer class indices"):
        as_labels([0.5, 1.0])
    with pytest.raises(TypeError, match="booleans"):
        as_labels(torch.tensor([True, False]))


def test_shapes_and_types():
    with pytest.raises(ValueError, match="must have 2 dimensions"):
        metrics.class_selectivity(np.ones(4), [0, 1, 0, 1])
    with pytest.raises(TypeError, match="tensor or an array"):
        as_tensor("abc", "x")
    with pytest.raises(TypeError, match="real numbers"):
        as_tensor(torch.ones(2, dtype=torch.complex64), "x")


def test_constant_representation_is_an_error_not_a_number():
    with pytest.raises(ValueError, match="constant representation"):
        metrics.linear_cka(np.ones((8, 2)), np.random.default_rng(0).normal(size=(8, 2)))
    with pytest.raises(ValueError, match="constant representation"):
        metrics.cka_matrix([np.ones((8, 2))])
