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


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_reads_a_folder_in_the_archives_format(cifar_root, name):
    """The pickled batches are read as torchvision reads them (channel-major rows), without
    its checksums of the official files, and standardized with the training statistics."""
    import pickle

    root = cifar_root(name, train=50, test=20)
    loaded = data.load(name, root=str(root)) if name == "cifar10" else \
        data.load(name, root=str(root), coarse=True)
    assert loaded.x_train.shape == (50, 3, 32, 32) and loaded.x_test.shape == (20, 3, 32, 32)
    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    files = [f"data_batch_{i}" for i in range(1, 6)] if name == "cifar10" else ["train"]
    batches = [pickle.loads((folder / f).read_bytes()) for f in files]
    first = batches[0]
    raw = torch.tensor(np.concatenate([b["data"] for b in batches]),
                       dtype=torch.float32).reshape(-1, 3, 32, 32) / 255  # channel-major rows
    mean, std = raw.mean((0, 2, 3), keepdim=True), raw.std((0, 2, 3), keepdim=True)
    assert torch.equal(loaded.x_train, (raw - mean) / std)
    if name == "cifar10":
        assert loaded.y_train[:10].tolist() == first["labels"][:10]
    else:
        assert loaded.y_train[:10].tolist() == first["coarse_labels"][:10]
        assert loaded.subclasses_train[:10].tolist() == first["fine_labels"][:10]
        assert loaded.num_classes <= 20


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_reads_what_torchvision_reads(cifar_root, name, monkeypatch):
    from torchvision import datasets as tv

    root = cifar_root(name, train=50, test=20)
    cls = tv.CIFAR10 if name == "cifar10" else tv.CIFAR100
    from torchvision.datasets import cifar

    # the generated files are not the official ones: skip torchvision's checksums of those
    monkeypatch.setattr(cls, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    train, test = (cls(str(root), train=t, download=False) for t in (True, False))
    images = {k: torch.from_numpy(d.data).permute(0, 3, 1, 2).float() / 255
              for k, d in (("train", train), ("test", test))}
    mean = images["train"].mean((0, 2, 3), keepdim=True)
    std = images["train"].std((0, 2, 3), keepdim=True)
    ours = data.load(name, root=str(root))
    assert torch.equal(ours.x_train, (images["train"] - mean) / std)
    assert torch.equal(ours.x_test, (images["test"] - mean) / std)
    assert ours.y_train.tolist() == list(train.targets)
    assert ours.y_test.tolist() == list(test.targets)


def test_a_damaged_cifar_folder_is_named(cifar_root):
    root = cifar_root("cifar10", train=50, test=20)
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3 is missing"):
        data.load("cifar10", root=str(root))
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(
        __import__("pickle").dumps({"images": []}))
    with pytest.raises(ValueError, match="data_batch_3 is not a CIFAR batch"):
        data.load("cifar10", root=str(root))


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
