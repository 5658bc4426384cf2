"""Which layers of a model hold units, and their stages: exact names, glob patterns, module
types or ``"auto"`` (the outputs of nonlinearity modules), per call of a reused module."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import nn

NONLINEARITIES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Hardtanh, nn.Hardswish,
    nn.Hardsigmoid, nn.Softsign, nn.Tanhshrink,
)
"""Module types whose outputs ``select_layers(model, "auto")`` returns."""


CALL_SEPARATOR = "#"


class UnknownLayerError(ValueError):
    """A layer name, pattern or type that matches nothing in the model."""


def layer_names(model: nn.Module) -> list[str]:
    """Names of every submodule of ``model`` in registration order (the root excluded)."""
    return [name for name, _ in model.named_modules() if name]


def split_call(key: str) -> tuple[str, int | None]:
    """``"block.relu#1"`` -> ``("block.relu", 1)``; a plain name -> ``(name, None)``."""
    name, sep, index = key.rpartition(CALL_SEPARATOR)
    if sep and index.isdigit():
        return name, int(index)
    return key, None


def unknown_layer(model: nn.Module, what: str) -> UnknownLayerError:
    names = layer_names(model)
    close = difflib.get_close_matches(what, names, n=3)
    hint = f" Did you mean {close}?" if close else ""
    return UnknownLayerError(f"no layer {what!r} in {type(model).__name__}.{hint} "
                             f"Valid layer names: {names}")


LayerSpec = str | type | Sequence[str | type]


def select_layers(model: nn.Module, spec: LayerSpec = "auto") -> list[str]:
    """Resolve a layer specification to layer names, in the model's registration order.

    ``spec`` is ``"auto"`` (every nonlinearity module), an exact name (optionally with a
    ``#k`` suffix naming the k-th call of a module used several times per forward), a glob
    pattern (``"features.*.relu"``), an ``nn.Module`` subclass, or a sequence of these.
    Anything that matches nothing raises :class:`UnknownLayerError` listing the valid names.
    """
    modules = dict(model.named_modules())
    modules.pop("", None)
    specs = [spec] if isinstance(spec, str | type) else list(spec)
    if not specs:
        raise ValueError("the layer specification is empty")
    chosen: list[str] = []
    for item in specs:
        if isinstance(item, type):
            if not issubclass(item, nn.Module):
                raise TypeError(f"layer type {item!r} is not an nn.Module subclass")
            found = [n for n, m in modules.items() if isinstance(m, item)]
            if not found:
                raise UnknownLayerError(
                    f"no module of type {item.__name__} in {type(model).__name__}")
        elif item == "auto":
            found = [n for n, m in modules.items() if isinstance(m, NONLINEARITIES)]
            if not found:
                raise UnknownLayerError(
                    f"{type(model).__name__} has no nonlinearity modules to select "
                    "automatically (functional activations cannot be hooked); name the "
                    f"layers explicitly. Valid layer names: {list(modules)}")
        elif isinstance(item, str) and any(ch in item for ch in "*?["):
            found = [n for n in modules if fnmatch.fnmatchcase(n, item)]
            if not found:
                raise UnknownLayerError(
                    f"pattern {item!r} matches no layer. Valid layer names: {list(modules)}")
        elif isinstance(item, str):
            if split_call(item)[0] not in modules:
                raise unknown_layer(model, item)
            found = [item]
        else:
            raise TypeError(f"cannot select layers with {item!r}")
        chosen.extend(n for n in found if n not in chosen)
    order = {n: i for i, n in enumerate(modules)}
    return sorted(chosen, key=lambda k: (order[split_call(k)[0]], k))


@dataclass(frozen=True)
class Stages:
    """Ordered groups of layers, early to late (the papers' "modules" or "stages")."""

    groups: tuple[tuple[str, tuple[str, ...]], ...]

    def __post_init__(self) -> None:
        if not self.groups:
            raise ValueError("Stages needs at least one stage")
        seen: set[str] = set()
        for stage, layers in self.groups:
            if not layers:
                raise ValueError(f"stage {stage!r} has no layers")
            dup = seen.intersection(layers)
            if dup:
                raise ValueError(f"layers {sorted(dup)} appear in more than one stage")
            seen.update(layers)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Sequence[str]],
                     model: nn.Module | None = None) -> Stages:
        """Stages from ``{stage name: [layer names]}`` in the mapping's order, checked
        against ``model`` when given."""
        groups = tuple((str(k), tuple(v)) for k, v in mapping.items())
        if model is not None:
            for _, layers in groups:
                select_layers(model, list(layers))
        return cls(groups)

    @classmethod
    def by_depth(cls, layers: Sequence[str], n: int = 3,
                 names: Sequence[str] = ("early", "intermediate", "late")) -> Stages:
        """Split depth-ordered ``layers`` into ``n`` contiguous stages of near-equal size."""
        if n < 1 or n > len(names):
            raise ValueError(f"n must be between 1 and {len(names)} (one name per stage)")
        if len(layers) < n:
            raise ValueError(f"cannot split {len(layers)} layers into {n} stages")
        bounds = [round(i * len(layers) / n) for i in range(n + 1)]
        return cls(tuple((names[i], tuple(layers[bounds[i]:bounds[i + 1]])) for i in range(n)))

    @property
    def names(self) -> list[str]:
        return [stage for stage, _ in self.groups]

    @property
    def layers(self) -> list[str]:
        """Every layer, early to late."""
        return [layer for _, group in self.groups for layer in group]

    def __getitem__(self, stage: str) -> list[str]:
        for name, group in self.groups:
            if name == stage:
                return list(group)
        raise KeyError(f"no stage {stage!r}; stages are {self.names}")

    def stage_of(self, layer: str) -> str:
        for name, group in self.groups:
            if layer in group:
                return name
        raise KeyError(f"layer {layer!r} is in no stage")

    def depth(self, stage: str) -> int:
        """0 for the earliest stage."""
        return self.names.index(stage)
