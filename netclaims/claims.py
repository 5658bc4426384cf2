"""How a claim is declared, parametrized and judged.

A claim is a test function in ``claims/`` decorated with :func:`claim`, which states once
its catalogue id, its one-sentence finding and its pre-registered rule, and may declare what
it needs of an architecture. The body gets runs from fixtures, measures the statistic with
``netclaims.metrics`` and ``netclaims.stats`` and returns the estimate (an
:class:`~netclaims.stats.Estimate`, or :class:`~netclaims.stats.Evidence` with the data behind
it); the plugin judges it with the rule and turns the verdict into the pytest outcome and the
report::

    paper("SD", "On the importance of single directions for generalization (Morcos et al., "
          "ICLR 2018)")

    @claim("SD-7", finding="batch norm makes nets robust to ablation", rule=Rule("greater"))
    def test_SD_7(arch, sd_runs):
        auc = {bn: [ablation_auc(run) for run in sd_runs(bn)] for bn in (True, False)}
        return seed_paired(auc[True], auc[False], statistic="AUC(BN) - AUC(no BN)")
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from netclaims.preflight import CAPABILITIES, Architecture, NotApplicable
from netclaims.stats import Rule

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
    # what an architecture shrinks to at a scale is in its registry entry (models.register)
    "smoke": {"min_seeds": 3, "dataset": "mnist1d", "device": "cpu"},
    # paper scale trains on CIFAR-10 when --netclaims-data-root holds a local copy
    "paper": {"min_seeds": 5, "dataset": "mnist1d", "dataset_with_root": "cifar10",
              "device": "auto"},
}

DEFAULT_ARCHS = ("mlp", "convnet", "resnet18")
"""Architectures claims run on when ``--netclaims-arch`` is not given (sized for the smoke
budget); claims that need a transformer get the built-in one."""


@dataclass(frozen=True)
class ClaimInfo:
    id: str
    paper: str
    finding: str
    rule: Rule
    requires: frozenset[str] = frozenset()
    summary: str = ""
    """The first paragraph of the claim's docstring: what it measures, where in the paper."""

    @property
    def keyword(self) -> str:
        """The id as a ``-k`` identifier (``SD_7``)."""
        return self.id.replace("-", "_")

    @property
    def paper_title(self) -> str:
        return PAPERS.get(self.paper, self.paper)


def claim(id: str, *, finding: str, rule: Rule, paper: str | None = None,
          requires: Iterable[str] = ()) -> Callable[[Callable], Callable]:
    """Declare a test function as the claim ``id`` of its paper (declared with
    :func:`paper`; by default the id's prefix), asserting ``finding`` under the
    pre-registered ``rule``, with the capabilities it needs of an architecture (see
    :data:`netclaims.preflight.CAPABILITIES`). The function returns what it measured; the
    plugin judges it with ``rule``. Whether the paper is declared is checked when pytest
    collects the claim, not here: a process-pool worker imports a claims module (to unpickle
    a function of it) without the suite's conftest."""
    if not isinstance(rule, Rule):
        raise TypeError(f"claim {id}: rule must be a netclaims.stats.Rule, got "
                        f"{type(rule).__name__}")
    paper = paper or id.split("-")[0]
    needs = frozenset(requires)
    unknown = needs - set(CAPABILITIES)
    if unknown:
        raise ValueError(f"claim {id}: unknown requirements {sorted(unknown)}; "
                         f"valid ones are {list(CAPABILITIES)}")
    info = ClaimInfo(id, paper, finding, rule, needs)

    def mark(fn: Callable) -> Callable:
        summary = " ".join((inspect.getdoc(fn) or "").split("\n\n")[0].split())
        described = dataclasses.replace(info, summary=summary)
        fn.netclaims_claim = described  # type: ignore[attr-defined]  # a function attribute
        return pytest.mark.netclaims_claim(described)(fn)
    return mark


class ReadOnLookup(Mapping[str, Sequence[Any]]):
    """Groups of runs (conditions of a protocol) that a fixture trained together, handed to
    ``read`` (the plugin's ``read_runs``) as a claim looks each group up: a claim is judged on
    the health of the conditions it reads, not of every condition its fixture trained."""

    def __init__(self, groups: Mapping[str, Sequence[Any]],
                 read: Callable[[Sequence[Any]], Sequence[Any]]) -> None:
        self._groups, self._read = dict(groups), read

    def __getitem__(self, name: str) -> Sequence[Any]:
        return self._read(self._groups[name])

    def shown(self, name: str) -> Sequence[Any]:
        """A group without reading it, for a figure that shows conditions beside the ones
        the claim judges."""
        return self._groups[name]

    def __iter__(self):
        return iter(self._groups)

    def __len__(self) -> int:
        return len(self._groups)


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
           "NotApplicable", "ReadOnLookup", "Rule", "checkpoint_schedule", "claim", "grid",
           "paper"]
