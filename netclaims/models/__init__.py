"""Model registry, in the spirit of timm's ``create_model``.

``create(name, input_shape, num_classes, width=..., depth=..., batchnorm=..., dropout=...,
init=...)`` builds a registered architecture; every built-in model declares its unit layers'
stages (``netclaims_stages``) and their pre-activations (``netclaims_preactivations``).
:func:`stages_of` gives the stages of any model, built-in or not.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from netclaims.models.architectures import (
    MLP,
    VGG,
    ConvNet,
    PatchTransformer,
    PreActResNet18,
    default_stages,
)
from netclaims.models.user import (
    FactoryError,
    VariantUnavailable,
    build,
    declared_knobs,
    resolve_factory,
    source_digest,
)
from netclaims.units import Stages, select_layers

Factory = Callable[..., nn.Module]

TRAINING_FALLBACK: dict[str, Any] = {"optimizer": "adam", "lr": 1e-3,
                                     "lr_schedule": "constant", "batch_size": 100,
                                     "epochs": 20}
"""Training defaults of an architecture that declares none (a user's factory)."""


@dataclass(frozen=True)
class ModelEntry:
    """Everything netclaims knows about a registered architecture, in one place (in the
    spirit of timm's ``register_model`` with its ``default_cfgs``): its factory, the defaults
    of the training fields a run spec leaves unset, what each scale changes in its specs
    (smoke scale shrinks the ResNet), and the epochs it needs to fit the claims' small task
    with shuffled labels (the memorization protocols)."""

    factory: Factory
    training: Mapping[str, Any] = field(default_factory=lambda: dict(TRAINING_FALLBACK))
    scales: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    memorize_epochs: int | None = None


_REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, *, training: Mapping[str, Any] | None = None,
             scales: Mapping[str, Mapping[str, Any]] | None = None,
             memorize_epochs: int | None = None) -> Callable[[Factory], Factory]:
    """Register an architecture factory ``(input_shape, num_classes, *, width, depth,
    batchnorm, dropout) -> nn.Module`` under ``name``, with its training defaults (over
    :data:`TRAINING_FALLBACK`), per-scale spec fields and memorization epochs."""
    def wrap(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise ValueError(f"a model named {name!r} is already registered")
        _REGISTRY[name] = ModelEntry(factory, {**TRAINING_FALLBACK, **(training or {})},
                                     dict(scales or {}), memorize_epochs)
        return factory
    return wrap


register("mlp", training={"epochs": 30}, memorize_epochs=40)(MLP)
# the MNIST-1D paper trains its CNN with Adam at 1e-2; cosine decay steadies the end
register("convnet", training={"lr": 1e-2, "lr_schedule": "cosine", "epochs": 30},
         memorize_epochs=40)(ConvNet)
# smoke scale: one block per stage at k = 8, 10 epochs, to fit 2 CPU cores
register("resnet18", scales={"smoke": {"width": 0.5, "depth": 0.5, "epochs": 10}},
         memorize_epochs=25)(PreActResNet18)
register("vgg", scales={"smoke": {"epochs": 10}})(VGG)
register("transformer", training={"epochs": 30})(PatchTransformer)


def training_defaults(name: str) -> dict[str, Any]:
    """The defaults of the training fields a run spec of architecture ``name`` leaves
    unset (:data:`TRAINING_FALLBACK` for a user's factory)."""
    entry = _REGISTRY.get(name)
    return dict(entry.training if entry is not None else TRAINING_FALLBACK)


def scale_fields(name: str, scale: str) -> dict[str, Any]:
    """The spec fields architecture ``name`` takes at ``scale`` (a claim's own fields win)."""
    entry = _REGISTRY.get(name)
    return dict(entry.scales.get(scale, {})) if entry is not None else {}


def memorize_epochs(name: str, default: int = 40) -> int:
    """Epochs that fit the claims' small task with shuffled labels (measured for the
    registry's models: the MLP reaches 99% training accuracy at epoch 25, the conv net at 21,
    the smoke ResNet 98.3% at 20); ``default`` for others."""
    entry = _REGISTRY.get(name)
    return entry.memorize_epochs if entry is not None and entry.memorize_epochs else default


def available() -> list[str]:
    return sorted(_REGISTRY)


def is_user_spec(name: str) -> bool:
    """Whether ``name`` names a user's factory as ``module:callable``."""
    return ":" in name


def default_batchnorm(name: str) -> bool | None:
    """Whether architecture ``name`` uses batch norm unless told otherwise: the registry's
    default, a user factory's ``batchnorm`` default, or None ("as the factory builds it")
    for a user factory without that knob."""
    if is_user_spec(name):
        default = declared_knobs(resolve_factory(name)).get("batchnorm")
        return default if isinstance(default, bool) else None
    factory = _factory(name)
    return bool(inspect.signature(factory).parameters["batchnorm"].default)


def factory_of(name: str) -> Factory:
    """The factory of a registered name or of a user's ``module:callable``."""
    return resolve_factory(name) if is_user_spec(name) else _factory(name)


def _factory(name: str) -> Factory:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {available()}")
    return _REGISTRY[name].factory


def _fans(weight: torch.Tensor) -> tuple[int, int]:
    receptive = math.prod(weight.shape[2:]) if weight.ndim > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def _lecun(weight: torch.Tensor, uniform: bool) -> None:
    fan_in, _ = _fans(weight)
    std = 1.0 / math.sqrt(fan_in)
    if uniform:
        nn.init.uniform_(weight, -math.sqrt(3.0) * std, math.sqrt(3.0) * std)
    else:
        nn.init.normal_(weight, 0.0, std)


INITS: dict[str, Callable[[torch.Tensor], object] | None] = {
    "default": None,
    "glorot_normal": nn.init.xavier_normal_,
    "glorot_uniform": nn.init.xavier_uniform_,
    "he_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "he_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
    "lecun_normal": lambda w: _lecun(w, uniform=False),
    "lecun_uniform": lambda w: _lecun(w, uniform=True),
    "normal": lambda w: nn.init.normal_(w, 0.0, 0.02),
    "uniform": lambda w: nn.init.uniform_(w, -0.05, 0.05),
}
"""Weight initializations of conv and linear layers (biases set to 0 for all but
``default``, which keeps PyTorch's own)."""


def initialize(model: nn.Module, scheme: str) -> nn.Module:
    """Re-initialize every conv and linear layer of ``model`` with ``scheme`` (see INITS),
    drawing from PyTorch's global generator."""
    if scheme not in INITS:
        raise ValueError(f"init must be one of {list(INITS)}, got {scheme!r}")
    fn = INITS[scheme]
    if fn is None:
        return model
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
            fn(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def create(name: str, input_shape: tuple[int, ...], num_classes: int, *, width: float = 1.0,
           depth: float = 1.0, batchnorm: bool | None = None, dropout: float = 0.0,
           init: str = "default") -> nn.Module:
    """Build registered model ``name`` for inputs of ``input_shape`` (without the batch axis)
    and ``num_classes`` outputs. ``batchnorm=None`` keeps the architecture's default.

    ``name`` may also be a user's ``module:callable`` (see :mod:`netclaims.models.user`):
    it gets the knobs it declares, generic variants for the others where they are sound,
    and :class:`VariantUnavailable` where they are not.
    """
    if width <= 0 or depth <= 0:
        raise ValueError(f"width and depth must be > 0, got {width} and {depth}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if is_user_spec(name):
        model = build(name, tuple(input_shape), num_classes, width=width, depth=depth,
                      batchnorm=batchnorm, dropout=dropout)
        return initialize(model, init)
    factory = _factory(name)
    kwargs = {"width": width, "depth": depth, "dropout": dropout}
    if batchnorm is not None:
        kwargs["batchnorm"] = batchnorm
    return initialize(factory(tuple(input_shape), num_classes, **kwargs), init)


def stages_of(model: nn.Module) -> Stages:
    """The model's stages: its ``netclaims_stages`` attribute (stage name → layer names) when
    it has one, else its nonlinearity outputs split into thirds by registration order."""
    declared = getattr(model, "netclaims_stages", None)
    if declared is not None:
        return Stages.from_mapping(declared, model)
    return Stages.from_mapping(default_stages(select_layers(model, "auto")), model)


def block_outputs_of(model: nn.Module) -> Stages:
    """The model's stages read at its blocks' outputs: its ``netclaims_block_outputs``
    attribute (a residual net's block outputs, stage name → layer names) when it has one,
    else :func:`stages_of` (in a plain net every unit layer is a block's output)."""
    declared = getattr(model, "netclaims_block_outputs", None)
    if declared is not None:
        return Stages.from_mapping(declared, model)
    return stages_of(model)


__all__ = ["INITS", "TRAINING_FALLBACK", "FactoryError", "ModelEntry", "VariantUnavailable",
           "available", "block_outputs_of", "create", "default_batchnorm", "factory_of",
           "initialize", "is_user_spec", "memorize_epochs", "register", "resolve_factory",
           "scale_fields", "source_digest", "stages_of", "training_defaults"]
