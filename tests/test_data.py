"""Datasets: generation, determinism, label transforms, augmentation, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netclaims import data


def test_mnist1d_published_split_is_deterministic_and_leaves_global_rng_alone():
    state = np.random.get_state()[1].copy()
    a = data.load("mnist1d")
    assert np.array_equal(np.random.get_state()[1], state)
    assert a.x_train.shape == (4000, 1, 40) and a.x_test.shape == (1000, 1, 40)
    assert a.num_classes == 10 and a.dims == 1
    assert torch.bincount(a.y_train).min() > 300
    b = data.load("mnist1d")
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)


def test_digits_and_teacher():
    d = data.load("digits")
    assert d.x_train.shape[1:] == (1, 8, 8) and d.x_train.max() <= 1.0
    assert d.x_train.shape[0] + d.x_test.shape[0] == 1797
    t = data.load("teacher", dim=10)
    share = float(torch.cat([t.y_train, t.y_test]).double().mean())
    assert 0.4 <= share <= 0.6 and t.num_classes == 2
    assert t.options["label_share"] == pytest.approx(share)
    big = data.load("teacher", dim=10000, train=200, test=200)
    assert big.x_train.shape == (200, 10000)


def test_label_corruption_preserves_distribution_and_records_indices():
    clean = data.load("mnist1d")
    noisy = data.load("mnist1d", label_noise=0.5, noise_seed=3)
    assert torch.equal(torch.bincount(noisy.y_train), torch.bincount(clean.y_train))
    assert noisy.corrupted.numel() == 2000
    untouched = torch.ones(4000, dtype=torch.bool)
    untouched[noisy.corrupted] = False
    assert torch.equal(noisy.y_train[untouched], clean.y_train[untouched])
    changed = float((noisy.y_train[noisy.corrupted] != clean.y_train[noisy.corrupted])
                    .double().mean())
    assert changed > 0.8  # shuffled among ten classes: ~90% change
    assert torch.equal(noisy.clean_y_train, clean.y_train)
    assert torch.equal(noisy.y_test, clean.y_test)


def test_superclasses_keep_subclasses():
    groups = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    g = data.load("digits", superclasses=groups)
    assert g.num_classes == 5 and torch.equal(g.y_train, g.subclasses_train // 2)
    with pytest.raises(ValueError, match="partition"):
        data.load("digits", superclasses=[[0, 1], [1, 2]])


def test_cifar_needs_a_local_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        data.load("cifar10", root=str(tmp_path))
    with pytest.raises(ValueError, match="local folder"):
        data.load("cifar100")


def test_unknown_dataset_and_option():
    with pytest.raises(ValueError, match="available"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="no option"):
        data.load("digits", colour=True)
    with pytest.raises(ValueError, match="variant"):
        data.load("mnist1d", variant="huge")


def test_augmentation_is_seeded_and_keeps_content():
    x = torch.arange(2 * 40, dtype=torch.float32).reshape(2, 1, 40) + 1
    a = data.augment(x, "shift", torch.Generator().manual_seed(0))
    b = data.augment(x, "shift", torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    for row, orig in zip(a[:, 0], x[:, 0], strict=True):  # a shifted window of the row
        kept = row[row != 0]
        assert any(torch.equal(kept, orig[s:s + kept.numel()]) for s in range(41 - kept.numel()))
    img = torch.randn(4, 3, 32, 32)
    out = data.augment(img, "crop_flip", torch.Generator().manual_seed(1))
    assert out.shape == img.shape and not torch.equal(out, img)
    with pytest.raises(ValueError, match="needs"):
        data.augment(img, "shift", torch.Generator())


def test_train_size_keeps_the_first_samples_before_corruption():
    full = data.load("mnist1d")
    small = data.load("mnist1d", train_size=1000, label_noise=0.5, noise_seed=1)
    assert small.x_train.shape[0] == 1000 and small.x_test.shape == full.x_test.shape
    assert torch.equal(small.x_train, full.x_train[:1000])
    assert torch.equal(small.clean_y_train, full.y_train[:1000])
    assert small.corrupted.numel() == 500 and small.options["train_size"] == 1000
    for bad in (0, 4001, 2.5, True):
        with pytest.raises(ValueError, match="train_size"):
            data.load("mnist1d", train_size=bad)
