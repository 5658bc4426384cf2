"""Training regularizers, by name: what each reads of the model (the layers whose outputs
it needs, recorded with gradients) and the term it adds to the loss; a run's spec switches
them on and off by epoch (:class:`Regularizer`). The selectivity regularizer of the
early-epochs paper is registered here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from netclaims import models
from netclaims._frozen import freeze, thaw
from netclaims.metrics.selectivity import mean_class_selectivity


@dataclass(frozen=True)
class Regularizer:
    """A regularizer added to the loss, switched on for epochs ``start <= e < stop``
    (``stop=None``: until the end; epochs count from 1). ``name`` is a registered
    regularizer (see :func:`register_regularizer`); ``selectivity`` adds ``-alpha · mean SI``
    over the units of the stages in ``params["stages"]`` (early-epochs paper), read at every
    unit layer or, with ``params["units"] = "block outputs"``, at the blocks' outputs
    (:func:`netclaims.models.block_outputs_of`)."""

    name: str
    alpha: float
    start: int = 1
    stop: int | None = None
    params: tuple = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", freeze(dict(self.params)))
        if self.name not in REGULARIZERS:
            raise ValueError(f"unknown regularizer {self.name!r}; registered: "
                             f"{sorted(REGULARIZERS)}")

    def active(self, epoch: int) -> bool:
        return self.start <= epoch and (self.stop is None or epoch < self.stop)

    @property
    def options(self) -> dict[str, Any]:
        return thaw(self.params) if self.params else {}


@dataclass
class RegularizerContext:
    """What a regularizer sees at each training step."""

    model: nn.Module
    inputs: torch.Tensor
    labels: torch.Tensor
    logits: torch.Tensor
    activations: dict[str, torch.Tensor]
    epoch: int


LayersFn = Callable[[nn.Module, dict[str, Any]], list[str]]


LossFn = Callable[[RegularizerContext, dict[str, Any]], torch.Tensor]


REGULARIZERS: dict[str, tuple[LayersFn, LossFn]] = {}


def register_regularizer(name: str, layers: LayersFn, loss: LossFn) -> None:
    """Register a regularizer: ``layers(model, params)`` names the layers whose outputs it
    needs (recorded with gradients), ``loss(context, params)`` returns the term that is
    multiplied by the spec's ``alpha`` and added to the loss."""
    if name in REGULARIZERS:
        raise ValueError(f"a regularizer named {name!r} is already registered")
    REGULARIZERS[name] = (layers, loss)


def _selectivity_layers(model: nn.Module, params: dict[str, Any]) -> list[str]:
    units = params.get("units", "stages")
    if units not in ("stages", "block outputs"):
        raise ValueError(f"selectivity regularizer: units must be 'stages' or 'block outputs', "
                         f"got {units!r}")
    stages = models.block_outputs_of(model) if units == "block outputs" \
        else models.stages_of(model)
    wanted = params.get("stages", stages.names)
    return [layer for stage in wanted for layer in stages[stage]]


def _selectivity_loss(ctx: RegularizerContext, params: dict[str, Any]) -> torch.Tensor:
    # loss = CE - alpha * mean SI, so the term added per unit of alpha is -mean SI (in float32
    # also under mixed precision)
    return -mean_class_selectivity({k: v.float() for k, v in ctx.activations.items()},
                                   ctx.labels)


register_regularizer("selectivity", _selectivity_layers, _selectivity_loss)
