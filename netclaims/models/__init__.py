"""Model registry, in the spirit of timm's ``create_model``.

``create(name, input_shape, num_classes, width=..., depth=..., batchnorm=..., dropout=...,
init=...)`` builds a registered architecture; every built-in model declares its unit layers'
stages (``netclaims_stages``) and their pre-activations (``netclaims_preactivations``).
:func:`stages_of` gives the stages of any model, built-in or not.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

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
_REGISTRY: dict[str, Factory] = {}


def register(name: str) -> Callable[[Factory], Factory]:
    """Register an architecture factory ``(input_shape, num_classes, *, width, depth,
    batchnorm, dropout) -> nn.Module`` under ``name``."""
    def wrap(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise ValueError(f"a model named {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory
    return wrap


for _name, _cls in (("mlp", MLP), ("convnet", ConvNet), ("resnet18", PreActResNet18),
                    ("vgg", VGG), ("transformer", PatchTransformer)):
    register(_name)(_cls)


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
    return _REGISTRY[name]


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


INITS: dict[str, Callable[[torch.Tensor], None] | None] = {
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


__all__ = ["INITS", "FactoryError", "VariantUnavailable", "available", "create",
           "default_batchnorm", "factory_of", "initialize", "is_user_spec", "register",
           "resolve_factory", "source_digest", "stages_of"]
