"""Protocol choices of the built-in claims (``claims/_se.py``, ``claims/_fu.py``), each
against the failure it fixes: the early window that found the learning onset, the width
series whose narrowest ResNet did not train."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netclaims import models


@pytest.fixture
def se(claims_helpers):
    return claims_helpers("_se")


@pytest.fixture
def fu(claims_helpers):
    return claims_helpers("_fu")


def _dynamics(epochs, acc, chance=0.1):
    epochs = np.asarray(epochs, dtype=float)
    auc = np.full((epochs.size, 4), 0.5)
    auc[epochs == 0] = np.nan  # no ablation curve at initialization
    return {"epoch": epochs, "acc": np.asarray(acc, dtype=float),
            "chance": np.full(epochs.size, chance), "auc": auc}


def test_the_early_window_starts_after_the_learning_onset(se):
    """A slow start (accuracy near chance for the first epoch) is left out: the window runs
    from a quarter of the final gain over chance to three quarters. The old window (epochs
    0 < e ≤ 5) read the four near-chance checkpoints inside the first epoch."""
    epochs = [0, 0.2, 0.4, 0.6, 0.8, 1, 2, 3, 4, 5, 10, 15, 20]
    acc = [0.1, 0.11, 0.12, 0.12, 0.13, 0.2, 0.32, 0.4, 0.5, 0.6, 0.8, 0.88, 0.9]
    window = se.early_window(_dynamics(epochs, acc))
    assert np.asarray(epochs)[window].tolist() == [2, 3, 4, 5, 10]


def test_a_fast_learner_still_gets_three_checkpoints(se):
    epochs = [0, 0.2, 0.4, 0.6, 0.8, 1, 2, 5, 10]
    acc = [0.1, 0.95, 0.97, 0.98, 0.98, 0.99, 0.99, 0.99, 0.99]
    window = se.early_window(_dynamics(epochs, acc))
    assert np.asarray(epochs)[window].tolist() == [0.2, 0.4, 0.6]


def test_the_slope_is_read_over_the_window(se, monkeypatch):
    epochs = [0, 0.5, 1, 2, 3, 4, 5]
    dyn = _dynamics(epochs, [0.1, 0.12, 0.3, 0.5, 0.7, 0.9, 0.9])
    dyn["auc"][:, 0] = [np.nan, 9.0, 0.1, 0.2, 0.3, 0.4, -9.0]  # outside the window: wild
    monkeypatch.setattr(se, "dynamics", lambda run: dyn)
    assert se.window_slopes(None, "selective") == pytest.approx(0.1)


def test_selectivity_regularizer_conditions_read_block_outputs(se):
    for name, regularizers in se.conditions(10).items():
        for regularizer in regularizers:
            assert regularizer.options["units"] == "block outputs", name


def _builder(name):
    return lambda width: models.create(name, (1, 40), 10, width=width)


@pytest.mark.parametrize(("name", "base"), [("mlp", 0.25), ("convnet", 0.25),
                                            ("resnet18", 0.5)])
def test_the_narrowest_net_of_a_width_series_keeps_two_units_a_layer(fu, name, base):
    """1x is a quarter of the registry width unless the ¼x net would have a one-unit layer:
    the ResNet's quarter of a quarter has one channel (k = 1) and stays near chance."""
    assert fu.base_width(_builder(name), torch.randn(2, 1, 40)) == base


def test_conv_nets_follow_the_papers_batch_norm_and_mlps_do_not(claims_helpers):
    """SE and SD-10…16 train conv nets with batch norm, as the papers' conv nets (without it
    the SE conv net's dense layer dies under the regularizer from epoch 0); MLPs without."""
    from netclaims import data
    from netclaims.preflight import preflight

    shared = claims_helpers("_shared")
    task = data.load("mnist1d")
    assert shared.conv_batchnorm(preflight("convnet", task))
    assert shared.conv_batchnorm(preflight("resnet18", task))
    assert not shared.conv_batchnorm(preflight("mlp", task))
