"""The built-in datasets. Each builder is deterministic in its options."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netclaims._io import atomic_path
from netclaims.data import Dataset, register

MNIST1D_VARIANTS = {"default": 5000, "large": 20000}
"""Total samples (80% train): the published default (4000 / 1000) and a larger variant."""


def cache_dir() -> Path:
    """Where generated datasets are cached: ``$NETCLAIMS_DATA_CACHE``, else
    ``$XDG_CACHE_HOME/netclaims/data`` (``~/.cache/netclaims/data``)."""
    if os.environ.get("NETCLAIMS_DATA_CACHE"):
        return Path(os.environ["NETCLAIMS_DATA_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "netclaims" / "data"


def _cached_arrays(tag: str, params: dict,
                   make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Arrays from the on-disk cache (npz, written atomically), made on a miss."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"{tag}-{digest}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # a damaged cache file is rebuilt
    arrays: dict[str, Any] = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: no suffix added
        np.savez(f, **arrays)
    return arrays


def _make_mnist1d(args: dict) -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    full = get_dataset_args(as_dict=True)
    full.update(args)
    full.pop("url", None)  # generated locally; the download path is never used

    class Args(dict):
        __getattr__ = dict.__getitem__

    np_state, py_state = np.random.get_state(), random.getstate()
    try:  # make_dataset reseeds NumPy's and Python's global generators
        data = make_dataset(Args(full))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {"x": data["x"], "y": data["y"], "x_test": data["x_test"], "y_test": data["y_test"]}


@functools.lru_cache(maxsize=8)
def _mnist1d_arrays(num_samples: int, seed: int) -> dict[str, np.ndarray]:
    args = {"num_samples": num_samples, "train_split": 0.8, "seed": seed}
    return _cached_arrays("mnist1d", args, lambda: _make_mnist1d(args))


@register("mnist1d")
def mnist1d(variant: str = "default", seed: int = 42) -> Dataset:
    """MNIST-1D (Greydanus 2020), generated locally with ``mnist1d.data.make_dataset`` and
    the package's published arguments (40 features, 10 classes). ``variant="default"``:
    4000 train / 1000 test; ``"large"``: 16000 / 4000. Inputs are ``(1, 40)``."""
    if variant not in MNIST1D_VARIANTS:
        raise ValueError(f"mnist1d variant must be one of {list(MNIST1D_VARIANTS)}, "
                         f"got {variant!r}")
    a = _mnist1d_arrays(MNIST1D_VARIANTS[variant], seed)
    return Dataset(
        name="mnist1d",
        x_train=torch.tensor(a["x"], dtype=torch.float32)[:, None],
        y_train=torch.tensor(a["y"], dtype=torch.int64),
        x_test=torch.tensor(a["x_test"], dtype=torch.float32)[:, None],
        y_test=torch.tensor(a["y_test"], dtype=torch.int64),
        num_classes=10,
    )


@register("digits")
def digits(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn's 8×8 handwritten digits (1797 images, shipped with scikit-learn) as
    ``(1, 8, 8)`` images scaled to [0, 1], with a fixed stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]
    x_tr, x_te, y_tr, y_te = train_test_split(x, bunch.target, test_size=test_fraction,
                                              random_state=seed, stratify=bunch.target)
    return Dataset("digits", torch.from_numpy(x_tr), torch.from_numpy(y_tr).long(),
                   torch.from_numpy(x_te), torch.from_numpy(y_te).long(), num_classes=10)


@register("teacher")
def teacher(dim: int = 10, train: int = 1000, test: int = 1000, teacher_width: int = 32,
            seed: int = 0, max_attempts: int = 100) -> Dataset:
    """The frivolous-units paper's synthetic task: uncorrelated Gaussian inputs of ``dim``
    dimensions (the paper: 10 and 10,000), binary labels from a randomly initialized
    teacher MLP (``dim → teacher_width → 2``, ReLU; the paper's teacher is a quarter of the
    1x student). Teachers are drawn until each label covers 40–60% of the inputs, as the
    paper verified; the attempt used is recorded in ``options``."""
    if dim < 1 or train < 1 or test < 1 or teacher_width < 1:
        raise ValueError("dim, train, test and teacher_width must be positive")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(train + test, dim, generator=gen)
    for attempt in range(max_attempts):
        w1 = torch.randn(dim, teacher_width, generator=gen) / dim**0.5
        b1 = torch.randn(teacher_width, generator=gen) * 0.1
        w2 = torch.randn(teacher_width, 2, generator=gen) / teacher_width**0.5
        y = (torch.relu(x @ w1 + b1) @ w2).argmax(1)
        share = float(y.double().mean())
        if 0.4 <= share <= 0.6:
            return Dataset("teacher", x[:train], y[:train], x[train:], y[train:],
                           num_classes=2, options={"teacher_attempt": attempt,
                                                   "label_share": share})
    raise RuntimeError(f"no teacher among {max_attempts} draws gave balanced labels")


CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", {"train": [f"data_batch_{i}" for i in range(1, 6)],
                                        "test": ["test_batch"]}, "labels"),
    "cifar100": ("cifar-100-python", {"train": ["train"], "test": ["test"]}, "fine_labels"),
}
"""The Python version of each archive: folder, the pickled batches of each split (torchvision's
layout) and the key of the labels."""


def _cifar_split(folder: Path, files: list[str], label_key: str,
                 coarse: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images ``(n, 3, 32, 32)`` in [0, 1], labels (coarse ones with ``coarse``) and fine
    labels of one split, read from the user's pickled batches as torchvision reads them
    (``data``: rows of 3072 bytes, channel-major), without its checksums of the official
    files: a subset or a re-packed copy in the same format reads too."""
    images, labels, coarse_labels = [], [], []
    for name in files:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the folder must hold the pickled "
                                    f"batches {files} of the official archive")
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")  # the user's own file, never downloaded
        try:
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels += list(entry[label_key])
            if coarse:
                coarse_labels += list(entry["coarse_labels"])
        except (KeyError, ValueError) as err:
            raise ValueError(f"{path} is not a CIFAR batch (needs 'data' rows of 3072 bytes "
                             f"and '{label_key}'{' and coarse_labels' if coarse else ''}): "
                             f"{err}") from err
    x = torch.from_numpy(np.concatenate(images)).float() / 255.0
    fine = torch.tensor(labels, dtype=torch.int64)
    if x.shape[0] != fine.shape[0]:
        raise ValueError(f"{folder}: {x.shape[0]} images but {fine.shape[0]} labels")
    y = torch.tensor(coarse_labels, dtype=torch.int64) if coarse else fine
    return x, y, fine


def _cifar(name: str, root: str | None, coarse: bool) -> Dataset:
    if root is None:
        raise ValueError(f"{name} is only read from a local folder: pass root=DIR "
                         "(or --netclaims-data-root DIR); nothing is downloaded")
    folder, files, label_key = CIFAR_FILES[name]
    path = Path(root).expanduser()
    if not (path / folder).is_dir():
        raise FileNotFoundError(
            f"{name}: no folder {path / folder}. Put the extracted Python version of "
            f"{name.upper()} (the '{folder}/' folder of the official archive) under {path}; "
            "netclaims never downloads it.")
    parts = {split: _cifar_split(path / folder, files[split], label_key, coarse)
             for split in ("train", "test")}
    mean = parts["train"][0].mean((0, 2, 3), keepdim=True)
    std = parts["train"][0].std((0, 2, 3), keepdim=True)
    (xtr, ytr, ftr), (xte, yte, fte) = parts["train"], parts["test"]
    return Dataset(name, (xtr - mean) / std, ytr, (xte - mean) / std, yte,
                   num_classes=int(ytr.max()) + 1,
                   subclasses_train=ftr if coarse else None,
                   subclasses_test=fte if coarse else None)


@register("cifar10")
def cifar10(root: str | None = None) -> Dataset:
    """CIFAR-10 from a local folder (torchvision, ``download=False``), standardized per
    channel with the training set's statistics."""
    return _cifar("cifar10", root, coarse=False)


@register("cifar100")
def cifar100(root: str | None = None, coarse: bool = False) -> Dataset:
    """CIFAR-100 from a local folder; with ``coarse`` the 20 superclasses are the labels and
    the 100 fine classes are kept as subclasses."""
    return _cifar("cifar100", root, coarse=coarse)
