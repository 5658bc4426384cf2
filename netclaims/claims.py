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
from dataclasses import dataclass
from typing import Any

import pytest

from netclaims.preflight import CAPABILITIES, Architecture, NotApplicable

PAPERS: dict[str, str] = {}
"""Paper prefix → title, filled by :func:`paper` (the suite declares the papers it uses)."""


def paper(prefix: str, title: str) -> str:
    """Declare a paper whose claims are ids ``PREFIX-n`` (call it in the claims file or its
    conftest before the claims); declaring the same prefix again with another title is an
    error. Returns the prefix."""
    if not prefix or not prefix.replace("_", "").isalnum() or "-" in prefix:
        raise ValueError(f"paper prefix must be letters and digits, got {prefix!r}")
    known = PAPERS.get(prefix)
    if known is not None and known != title:
        raise ValueError(f"paper {prefix!r} is already declared as {known!r}")
    PAPERS[prefix] = title
    return prefix


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

    @property
    def paper_title(self) -> str:
        return PAPERS.get(self.paper, self.paper)


def claim(id: str, *, paper: str | None = None, finding: str,
          requires: Iterable[str] = ()) -> Callable[[Callable], Callable]:
    """Declare a test function as the claim ``id`` of its paper (declared with
    :func:`paper`), with the capabilities it needs of an architecture (see
    :data:`netclaims.preflight.CAPABILITIES`)."""
    prefix = id.split("-")[0]
    paper = paper or prefix
    if paper not in PAPERS:
        raise ValueError(f"claim {id}: unknown paper {paper!r}; declare it first with "
                         f"netclaims.claims.paper({paper!r}, 'title') (declared: "
                         f"{list(PAPERS)})")
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


__all__ = ["CAPABILITIES", "DEFAULT_ARCHS", "PAPERS", "SCALES", "Architecture", "ClaimInfo",
           "NotApplicable", "checkpoint_schedule", "claim", "grid", "paper"]
