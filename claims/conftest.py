"""The papers of this suite and the protocols shared by several claim files."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from netclaims import models
from netclaims.claims import paper

# declared here, before the session starts, so that each paper is a marker (-m SD)
paper("FU", "Frivolous units: wider networks are not really that wide (Casper, Boix et al. "
             "2021)")
paper("IC", "Intraclass clustering: an implicit learning ability that regularizes DNNs "
            "(Carbonnelle & De Vleeschouwer, ICLR 2021)")
paper("RD", "How does perfect fitting affect representation learning? On the training "
            "dynamics of representations in deep neural networks (2021)")
paper("SE", "Importance of class selectivity in early epochs of training (anonymous "
            "submission, 2020)")
paper("SD", "On the importance of single directions for generalization (Morcos et al., "
            "ICLR 2018)")

SMOKE_TRAIN_SIZE = 1000
CHECKPOINTS = 8


@pytest.fixture
def small_task(arch, small_task_of) -> dict:
    """:func:`small_task_fields` of the architecture at the session's scale."""
    return small_task_of(arch)


@pytest.fixture(scope="session")
def small_task_of(scale) -> Callable[[object], dict]:
    """``small_task_of(arch)``: :func:`small_task_fields` of any architecture at the
    session's scale (for a zoo of another architecture than the test's)."""
    return lambda arch: small_task_fields(arch, scale)


def small_task_fields(arch, scale: str) -> dict:
    """Spec fields of the small-task protocol: at smoke scale the first 1000 training samples
    (the frivolous-units paper's small experiments use 1000) and enough epochs to fit them
    even with shuffled labels; at paper scale the full training set for twice as long. Eight
    checkpoints are kept over training (SD-4), and the history is evaluated at those only:
    the claims read losses and accuracies at checkpoints and at the end. Shared by the
    memorization and zoo claims (SD-1…SD-6), the width series (FU) and the intraclass
    clustering zoo (IC), so the runs they have in common are trained once."""
    epochs = models.memorize_epochs(str(arch)) * (1 if scale == "smoke" else 2)
    fields = {"epochs": epochs, "checkpoint_epochs": spread_checkpoints(epochs),
              "evaluate": "checkpoints"}
    if scale == "smoke":
        fields["dataset_options"] = {"train_size": SMOKE_TRAIN_SIZE}
    return fields


def spread_checkpoints(epochs: int, count: int = CHECKPOINTS) -> list[int]:
    """``count`` checkpoint epochs spread evenly over training, the last one at the end."""
    return sorted({max(1, round(epochs * (i + 1) / count)) for i in range(count)})
