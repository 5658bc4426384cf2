"""A user's architecture factory ``module:callable``: what it declares, the variants a claim
may ask of it, and how its units are addressed.

A factory is ``make(input_shape, num_classes, **knobs)``. Of the knobs ``width``, ``depth``,
``batchnorm`` and ``dropout``, a factory receives those its signature declares (all four
when it takes ``**kwargs``). A variant it does not declare is built by a generic, sound
transformation where there is one:

* *without batch norm*: the net as built, with every BatchNorm module replaced by an
  identity;
* *with dropout p*: dropout of rate p applied, while training, to the outputs of the net's
  unit layers by a forward hook (nothing changes in evaluation mode).

There is none for ``width``, ``depth`` or *with batch norm* when the net has none: asking
for such a variant raises :class:`VariantUnavailable`, which names the missing knob (claims
that need it are N/A, decided before anything trains).

Units of a net that does not declare ``netclaims_stages`` are the outputs of its
nonlinearity modules, found by one forward pass, in the order they run; a module called
several times per forward (a ReLU shared inside a torchvision ``BasicBlock``) gives one unit
layer per call, ``name#0``, ``name#1``…. The unit axis of a layer whose output has a token or
position axis after the batch (``(batch, tokens, features)``) is the feature axis of the
weighted layer computing it: the last axis when that layer is an ``nn.Linear`` (applied to
every token), the channel axis (1) for a convolution. A module's own
``netclaims_unit_axis`` attribute overrides this.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import sys
import sysconfig
import types
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from netclaims.models.architectures import declare, default_stages
from netclaims.units import NONLINEARITIES

KNOBS = ("width", "depth", "batchnorm", "dropout")
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

Factory = Callable[..., nn.Module]


class FactoryError(RuntimeError):
    """The factory, or the net it builds, fails where netclaims needs it to work; the
    message names the factory, the problem and the fix."""


class VariantUnavailable(ValueError):  # noqa: N818 - a missing capability, named
    """A variant a claim asks for that the factory cannot give (no knob, no sound
    transformation)."""


def resolve_factory(spec: str) -> Factory:
    """Import ``module:callable``; errors say which part failed."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"architecture {spec!r} must be 'module:callable'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"architecture {spec!r}: cannot import module {module_name!r} "
                         f"({err})") from err
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"architecture {spec!r}: module {module_name!r} has no callable "
                         f"{attr!r}")
    return factory


def declared_knobs(factory: Factory) -> dict[str, object]:
    """The knobs of :data:`KNOBS` the factory takes, with their defaults
    (``inspect.Parameter.empty`` for a required one, ``None`` for any knob under
    ``**kwargs``)."""
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return {k: (params[k].default if k in params else None) for k in KNOBS}
    return {k: params[k].default for k in KNOBS if k in params}


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, BATCHNORMS) for m in model.modules())


def without_batchnorm(model: nn.Module) -> nn.Module:
    """``model`` with every BatchNorm module replaced by an identity (in place)."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, BATCHNORMS):
                setattr(module, child_name, nn.Identity())
    return model


def add_dropout(model: nn.Module, layers: list[str], p: float) -> nn.Module:
    """Dropout of rate ``p`` on the outputs of ``layers`` (every call of each module) while
    the module is in training mode, by forward hooks (in place)."""
    modules = dict(model.named_modules())
    for base in dict.fromkeys(layer.partition("#")[0] for layer in layers):
        modules[base].register_forward_hook(
            lambda module, _inputs, output: F.dropout(output, p, training=module.training))
    return model


def build(spec: str, input_shape: tuple[int, ...], num_classes: int, *, width: float,
          depth: float, batchnorm: bool | None, dropout: float) -> nn.Module:
    """Build ``spec`` with the knobs it declares and the generic variants for the others;
    the net's unit layers and unit axes are resolved on the way (see the module doc)."""
    factory = resolve_factory(spec)
    knobs = declared_knobs(factory)
    asked = {"width": width, "depth": depth, "batchnorm": batchnorm, "dropout": dropout}
    neutral = {"width": 1.0, "depth": 1.0, "batchnorm": None, "dropout": 0.0}
    kwargs = {k: v for k, v in asked.items() if k in knobs and v is not None}
    for knob in ("width", "depth"):
        if knob not in knobs and asked[knob] != neutral[knob]:
            raise VariantUnavailable(f"{spec} takes no {knob!r} knob, so it cannot be built "
                                     f"at {knob} x{asked[knob]:g}; declare "
                                     f"'{knob}: float = 1.0' in its signature")
    try:
        model = factory(tuple(input_shape), num_classes, **kwargs)
    except Exception as err:
        shown = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        raise FactoryError(f"{spec}: the factory failed for input_shape="
                           f"{tuple(input_shape)}, num_classes={num_classes}"
                           f"{', ' + shown if shown else ''}: {type(err).__name__}: {err}. "
                           "Fix: build a net for that input shape (the task's, without the "
                           "batch axis) or choose another task (--netclaims-task)") from err
    if not isinstance(model, nn.Module):
        raise FactoryError(f"{spec}: the factory returned {type(model).__name__}, not an "
                           "nn.Module. Fix: return the model")
    if "batchnorm" not in knobs:
        if batchnorm is False:
            without_batchnorm(model)
        elif batchnorm is True and not has_batchnorm(model):
            raise VariantUnavailable(f"{spec} has no batch norm and no 'batchnorm' knob, so "
                                     "no variant with batch norm can be built; declare "
                                     "'batchnorm: bool' in its signature")
    resolve_units(model, input_shape, spec)
    if "dropout" not in knobs and dropout:
        stages: dict[str, list[str]] = getattr(model, "netclaims_stages", {})  # resolve_units
        add_dropout(model, [layer for group in stages.values() for layer in group], dropout)
    return model


def resolve_units(model: nn.Module, input_shape: tuple[int, ...], spec: str) -> None:
    """Give ``model`` its ``netclaims_stages`` (unless declared) and unit axes, from one
    forward pass on zeros of ``input_shape``."""
    calls: list[tuple[str, nn.Module, torch.Tensor | None]] = []
    handles = [module.register_forward_hook(
        lambda m, _i, out, name=name: calls.append(
            (name, m, out if isinstance(out, torch.Tensor) else None)))
        for name, module in model.named_modules() if name]
    was_training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(2, *input_shape))
    except Exception as err:
        raise FactoryError(f"{spec}: a forward pass on a batch of shape "
                           f"{(2, *tuple(input_shape))} failed: {type(err).__name__}: {err}. "
                           f"Fix: the factory receives input_shape={tuple(input_shape)}; "
                           "build the net for inputs of that shape (or choose a task whose "
                           "inputs it takes, --netclaims-task)") from err
    finally:
        for handle in handles:
            handle.remove()
        for module, training in was_training.items():
            module.training = training
    counts: dict[str, int] = {}
    for name, _, _ in calls:
        counts[name] = counts.get(name, 0) + 1
    seen: dict[str, int] = {}
    units: list[str] = []
    for i, (name, module, out) in enumerate(calls):
        index = seen.get(name, 0)
        seen[name] = index + 1
        if not isinstance(module, NONLINEARITIES):
            continue
        units.append(name if counts[name] == 1 else f"{name}#{index}")
        if out is not None and out.ndim == 3 and not hasattr(module, "netclaims_unit_axis"):
            producer = next((m for _, m, _ in reversed(calls[:i]) if isinstance(m, WEIGHTED)),
                            None)
            if isinstance(producer, nn.Linear):
                declare(module, netclaims_unit_axis=-1)
    if getattr(model, "netclaims_stages", None) is None:
        if not units:
            raise FactoryError(
                f"{spec}: no nonlinearity module runs in its forward pass (functional "
                "activations such as F.relu cannot be hooked), so it has no units to "
                "measure. Fix: use modules (nn.ReLU(), nn.GELU(), …) or declare "
                "model.netclaims_stages = {stage: [layer names]}")
        declare(model, netclaims_stages=default_stages(list(dict.fromkeys(units))))


def _is_users(module: types.ModuleType) -> bool:
    """Whether ``module`` is the user's own code: a source file outside the standard
    library, the installed packages and netclaims."""
    path = getattr(module, "__file__", None)
    if not path or not path.endswith(".py") or module.__name__.split(".")[0] == "netclaims":
        return False
    resolved = Path(path).resolve()
    paths = sysconfig.get_paths()
    library = {Path(paths[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return not any(resolved.is_relative_to(root) for root in library)


def _home_module(value: object) -> types.ModuleType | None:
    if isinstance(value, types.ModuleType):
        return value
    name = getattr(value, "__module__", None)
    return sys.modules.get(name) if isinstance(name, str) else None


def user_modules(factory: Factory) -> list[types.ModuleType]:
    """The user's own modules behind a factory: its module and, transitively, every user
    module it imports or takes a name from (so the modules defining the model's classes and
    the helpers that build its layers)."""
    root = inspect.getmodule(factory)
    found: dict[str, types.ModuleType] = {}
    stack = [root] if root is not None and _is_users(root) else []
    while stack:
        module = stack.pop()
        if module.__name__ in found:
            continue
        found[module.__name__] = module
        for value in list(vars(module).values()):
            home = _home_module(value)
            if home is not None and home.__name__ not in found and _is_users(home):
                stack.append(home)
    return [found[name] for name in sorted(found)]


def source_digest(spec: str) -> str:
    """Hash of the source of every user module behind ``spec`` (:func:`user_modules`), so
    that an edit of the architecture, or of a helper it imports, trains anew."""
    factory = resolve_factory(spec)
    digest = hashlib.sha256(spec.encode())
    for module in user_modules(factory):
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError):
            source = repr(module)
        digest.update(b"\0" + module.__name__.encode() + b"\0" + source.encode())
    return digest.hexdigest()[:16]
