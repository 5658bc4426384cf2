"""Label transformations: superclass grouping and label corruption."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from netclaims.data import Dataset


def group_classes(data: Dataset, superclasses: Sequence[Sequence[int]]) -> Dataset:
    """Train on superclasses: ``superclasses[k]`` lists the classes of superclass ``k``.

    Every class must appear in exactly one group. The fine labels are kept in
    ``subclasses_train`` / ``subclasses_test`` for the intraclass-clustering measures.
    """
    groups = [list(g) for g in superclasses]
    flat = [c for g in groups for c in g]
    expected = list(range(data.num_classes))
    if sorted(flat) != expected:
        raise ValueError(f"superclasses must partition the classes {expected} (each exactly "
                         f"once), got {groups}")
    if any(len(g) == 0 for g in groups):
        raise ValueError("a superclass is empty")
    lookup = torch.empty(data.num_classes, dtype=torch.int64)
    for k, g in enumerate(groups):
        lookup[g] = k
    return replace(data, y_train=lookup[data.y_train], y_test=lookup[data.y_test],
                   num_classes=len(groups), subclasses_train=data.y_train,
                   subclasses_test=data.y_test)


def corrupt_labels(data: Dataset, fraction: float, *, seed: int = 0) -> Dataset:
    """Shuffle the training labels of a random ``fraction`` of the samples among themselves
    (Zhang et al. 2017; Morcos et al. 2018), which keeps the label distribution. The chosen
    indices are in ``corrupted``; ``clean_y_train`` keeps the original labels."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"label_noise must lie in [0, 1], got {fraction}")
    gen = torch.Generator().manual_seed(seed)
    n = data.y_train.shape[0]
    chosen = torch.randperm(n, generator=gen)[:round(fraction * n)].sort().values
    y = data.y_train.clone()
    y[chosen] = y[chosen][torch.randperm(chosen.numel(), generator=gen)]
    return replace(data, y_train=y, corrupted=chosen, clean_y_train=data.y_train)
