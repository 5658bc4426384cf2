"""Datasets: a registry of builders, each returning a :class:`Dataset` of tensors.

``load(name, **options)`` builds a dataset (MNIST-1D generated locally, scikit-learn's digits,
the frivolous-units teacher task, CIFAR from a local folder), then applies the options every
dataset shares: ``superclasses`` (train on groups of classes, keep the fine labels) and
``label_noise`` (shuffle a fraction of the training labels, recording which). Nothing is ever
downloaded.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from netclaims.data.labels import corrupt_labels, group_classes

Builder = Callable[..., "Dataset"]
_REGISTRY: dict[str, Builder] = {}


@dataclass(frozen=True)
class Dataset:
    """Train and test tensors of one task.

    ``x_*`` are float32 ``(n, *input_shape)``; ``y_*`` int64 class indices. When classes were
    grouped, ``y_*`` hold the superclasses and ``subclasses_*`` the original labels. When
    labels were corrupted, ``corrupted`` holds the indices of the shuffled training labels and
    ``clean_y_train`` the labels before shuffling.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    subclasses_train: torch.Tensor | None = None
    subclasses_test: torch.Tensor | None = None
    corrupted: torch.Tensor | None = None
    clean_y_train: torch.Tensor | None = None
    options: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def dims(self) -> int:
        """Spatial dimensions of an input: 0 (vector), 1 (sequence) or 2 (image)."""
        return len(self.input_shape) - 1

    def with_labels(self, **changes: Any) -> Dataset:
        return replace(self, **changes)


def register(name: str) -> Callable[[Builder], Builder]:
    """Register a dataset builder under ``name`` (a function of keyword options)."""
    def wrap(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"a dataset named {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn
    return wrap


def available() -> list[str]:
    """Names of the registered datasets."""
    return sorted(_REGISTRY)


def options_of(name: str) -> dict[str, object]:
    """The options a dataset builder takes, with their defaults."""
    builder = _builder(name)
    return {p.name: p.default for p in inspect.signature(builder).parameters.values()}


def _builder(name: str) -> Builder:
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; available: {available()}")
    return _REGISTRY[name]


def load(name: str, *, superclasses: Sequence[Sequence[int]] | None = None,
         label_noise: float = 0.0, noise_seed: int = 0, train_size: int | None = None,
         **options: object) -> Dataset:
    """Build dataset ``name`` with its ``options``; optionally keep only the first
    ``train_size`` training samples (a smaller task to memorize), group its classes into
    ``superclasses`` and shuffle a ``label_noise`` fraction of the training labels."""
    builder = _builder(name)
    valid = options_of(name)
    unknown = set(options) - set(valid)
    if unknown:
        raise ValueError(f"dataset {name!r} has no option(s) {sorted(unknown)}; "
                         f"its options are {valid}")
    data = builder(**options)
    if train_size is not None:
        available_ = data.x_train.shape[0]
        if isinstance(train_size, bool) or not isinstance(train_size, int) \
                or not 1 <= train_size <= available_:
            raise ValueError(f"train_size must be an integer in 1..{available_} for "
                             f"{name!r}, got {train_size!r}")
        data = replace(data, x_train=data.x_train[:train_size],
                       y_train=data.y_train[:train_size])
    if superclasses is not None:
        data = group_classes(data, superclasses)
    if label_noise:
        data = corrupt_labels(data, label_noise, seed=noise_seed)
    return replace(data, options={**data.options, **options, "superclasses": superclasses,
                                  "label_noise": label_noise, "noise_seed": noise_seed,
                                  "train_size": train_size})


from netclaims.data import sources as _sources  # noqa: E402, F401  (registers the builders)
from netclaims.data.augment import augment  # noqa: E402

__all__ = ["Dataset", "augment", "available", "corrupt_labels", "group_classes", "load",
           "options_of", "register"]
