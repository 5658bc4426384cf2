"""How a claim is declared, parametrized and judged.

A claim is a test function in ``claims/`` decorated with :func:`claim`, which ties it to a
catalogue id, its paper and its one-sentence finding, and may declare what it needs of an
architecture. It gets runs from fixtures, computes its statistic with ``netclaims.metrics``
and ``netclaims.stats``, and returns a :class:`~netclaims.stats.Verdict`; the plugin turns the
verdict into the pytest outcome and the report::

    @claim("SD-7", paper="SD", finding="batch norm makes nets robust to ablation")
    def test_SD_7_batchnorm_robust_to_ablation(arch, train_run, seeds):
        ...
        return judge("SD-7", estimate, Rule("greater"))
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from torch import nn

from netclaims import models

PAPERS = {
    "SE": "Class selectivity in early epochs",
    "SD": "Reliance on single directions (Morcos et al. 2018)",
    "FU": "Frivolous units (Casper et al. 2021)",
    "RD": "Training dynamics of representations",
    "IC": "Intraclass clustering (Carbonnelle & De Vleeschouwer 2021)",
}

CAPABILITIES = ("stages", "conv", "batchnorm", "residual", "transformer", "dense")
"""What a claim may require of an architecture."""

SCALES: dict[str, dict[str, Any]] = {
    "smoke": {"min_seeds": 3, "dataset": "mnist1d", "device": "cpu",
              # what smoke scale shrinks to fit 2 CPU cores (a claim's own fields win)
              "training": {"resnet18": {"width": 0.5, "depth": 0.5, "epochs": 10},
                           "vgg": {"epochs": 10}}},
    # paper scale trains on CIFAR-10 when --netclaims-data-root holds a local copy
    "paper": {"min_seeds": 5, "dataset": "mnist1d", "dataset_with_root": "cifar10",
              "device": "auto", "training": {}},
}

DEFAULT_ARCHS = ("mlp", "convnet", "resnet18")
"""Architectures claims run on when ``--netclaims-arch`` is not given (sized for the smoke
budget); claims that need a transformer get the built-in one."""


@dataclass(frozen=True)
class ClaimInfo:
    id: str
    paper: str
    finding: str
    requires: frozenset[str] = frozenset()

    @property
    def test_name(self) -> str:
        return self.id.replace("-", "_")


def claim(id: str, *, paper: str | None = None, finding: str,
          requires: Iterable[str] = ()) -> Callable[[Callable], Callable]:
    """Declare a test function as the claim ``id`` of the catalogue (``CLAIMS.md``)."""
    prefix = id.split("-")[0]
    paper = paper or prefix
    if paper not in PAPERS:
        raise ValueError(f"claim {id}: unknown paper {paper!r}; papers are {list(PAPERS)}")
    needs = frozenset(requires)
    unknown = needs - set(CAPABILITIES)
    if unknown:
        raise ValueError(f"claim {id}: unknown requirements {sorted(unknown)}; "
                         f"valid ones are {list(CAPABILITIES)}")
    info = ClaimInfo(id, paper, finding, needs)

    def mark(fn: Callable) -> Callable:
        fn.netclaims_claim = info
        return pytest.mark.netclaims_claim(info)(fn)
    return mark


class NotApplicable(Exception):  # noqa: N818 - an outcome, not an error
    """The claim's protocol cannot run on this architecture; reported as "not applicable"."""


@dataclass(frozen=True)
class Architecture:
    """An architecture the claims run on: a registered model name or a user's
    ``module:callable``, with the capabilities claims may require."""

    name: str
    capabilities: frozenset[str] = field(default_factory=frozenset)

    def __str__(self) -> str:
        return self.name

    @property
    def is_user(self) -> bool:
        return models.is_user_spec(self.name)

    def check(self, info: ClaimInfo) -> None:
        missing = info.requires - self.capabilities
        if missing:
            raise NotApplicable(f"{info.id} needs {', '.join(sorted(missing))}; "
                                f"{self.name} has {', '.join(sorted(self.capabilities))}")


_BUILTIN_CAPABILITIES = {
    "mlp": {"stages", "dense"},
    "convnet": {"stages", "conv", "dense"},
    "resnet18": {"stages", "conv", "batchnorm", "residual"},
    "vgg": {"stages", "conv", "batchnorm", "dense"},
    "transformer": {"stages", "transformer"},
}


def inspect_architecture(name: str, input_shape: tuple[int, ...],
                         num_classes: int) -> Architecture:
    """Build the architecture once to read what it has; a user factory that fails or has no
    unit layer to find raises a clear error here, before any training."""
    if not models.is_user_spec(name):
        if name not in models.available():
            raise ValueError(f"unknown architecture {name!r}; registered: "
                             f"{models.available()}, or give 'module:callable'")
        return Architecture(name, frozenset(_BUILTIN_CAPABILITIES.get(name, {"stages"})))
    model = models.create(name, input_shape, num_classes)
    models.stages_of(model)  # raises if no unit layer can be found
    found = {"stages"}
    for module in model.modules():
        if isinstance(module, nn.Conv1d | nn.Conv2d):
            found.add("conv")
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            found.add("batchnorm")
        if isinstance(module, nn.MultiheadAttention):
            found.add("transformer")
        if isinstance(module, nn.Linear):
            found.add("dense")
    return Architecture(name, frozenset(found))


def grid(axes: Mapping[str, Sequence[Any]], *,
         exclude: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
    """Every combination of ``axes`` (a hyperparameter grid), in a stable order, without the
    combinations ``exclude`` rejects (the papers' pairing rules)."""
    names = list(axes)
    combos = [dict(zip(names, values, strict=True))
              for values in itertools.product(*(axes[n] for n in names))]
    return [c for c in combos if exclude is None or not exclude(c)]


def checkpoint_schedule(epochs: int, steps_per_epoch: int, *, inside_first: int = 4,
                        dense_until: int = 5, spaced: int = 5) -> dict[str, tuple[int, ...]]:
    """Checkpoints for training-dynamics claims: initialization, ``inside_first`` points
    within the first epoch, every epoch up to ``dense_until``, then every ``spaced``-th."""
    steps = tuple(sorted({max(1, round(steps_per_epoch * (i + 1) / (inside_first + 1)))
                          for i in range(inside_first)}))
    epochs_ = sorted({0, *range(1, min(dense_until, epochs) + 1),
                      *range(dense_until, epochs + 1, spaced), epochs})
    return {"checkpoint_epochs": tuple(epochs_), "checkpoint_steps": steps}
