"""Preflight: every architecture of a session built once and run forward on one batch of its
task before anything trains.

:func:`preflight` checks what a claim will rely on — the net builds for the task's input
shape, its output is ``(batch, classes)`` and finite, its unit layers are found and all run —
and reads what it can offer (:data:`CAPABILITIES`). A misfit raises :class:`PreflightError`
naming the architecture, the problem and the fix; a claim needing a capability the
architecture lacks is N/A with that capability named (:meth:`Architecture.why_not`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from netclaims import models
from netclaims.data import Dataset
from netclaims.models.user import FactoryError, declared_knobs, has_batchnorm
from netclaims.units import Recorder, eval_mode

CAPABILITIES: dict[str, str] = {
    "stages": "unit layers grouped into stages",
    "three_stages": "early, intermediate and late stages (at least three unit layers)",
    "conv": "convolution layers",
    "dense": "fully connected layers",
    "transformer": "attention layers (nn.MultiheadAttention)",
    "batchnorm": "a variant with batch norm",
    "width": "a 'width' knob",
    "depth": "a 'depth' knob",
    "preactivations": "declared pre-activations (model.netclaims_preactivations)",
    "nonnegative_units": "unit activations that are never negative (ReLU-like), as class "
                         "selectivity assumes",
    "feature_vectors": "inputs of shape (features,) (the teacher task)",
}
"""What a claim may require of an architecture, and what each means."""

PROBE_BATCH = 8
FEATURE_VECTOR_SHAPE = (10,)


class PreflightError(ValueError):
    """An architecture that cannot run the claims: the message names it, the problem and
    the fix."""


class NotApplicable(Exception):  # noqa: N818 - an outcome, not an error
    """The claim's protocol cannot run on this architecture; reported as "not applicable"."""


@dataclass(frozen=True)
class UnitLayer:
    name: str
    stage: str
    units: int
    shape: tuple[int, ...]
    nonnegative: bool


@dataclass(frozen=True)
class Architecture:
    """An architecture the claims run on, as preflight found it: a registered model name or
    a user's ``module:callable``, its capabilities, and why each missing one is missing."""

    name: str
    capabilities: frozenset[str] = field(default_factory=frozenset)
    missing: tuple[tuple[str, str], ...] = ()
    task: str = ""
    input_shape: tuple[int, ...] = ()
    layers: tuple[UnitLayer, ...] = ()

    def __str__(self) -> str:
        return self.name

    def why_not(self, requires: frozenset[str]) -> str | None:
        """Why a claim needing ``requires`` cannot run here, or None."""
        lacking = sorted(requires - self.capabilities)
        if not lacking:
            return None
        reasons = dict(self.missing)
        return "; ".join(f"needs {CAPABILITIES.get(c, c)} ({reasons.get(c, 'none found')})"
                         for c in lacking)


def _fail(name: str, problem: str, fix: str) -> PreflightError:
    return PreflightError(f"architecture {name}: {problem}. Fix: {fix}")


def _build(name: str, input_shape: tuple[int, ...], num_classes: int, **knobs) -> nn.Module:
    try:
        return models.create(name, input_shape, num_classes, **knobs)
    except FactoryError as err:
        raise PreflightError(f"architecture {err}") from err
    except Exception as err:
        raise _fail(name, f"building it for input_shape={input_shape}, num_classes="
                    f"{num_classes} failed: {err}", "make the factory build a net for the "
                    "task's input shape (see README, 'Tasks')") from err


def _forward(name: str, model: nn.Module, x: torch.Tensor, num_classes: int,
             task: str) -> None:
    try:
        with torch.no_grad(), eval_mode(model):
            out = model(x)
    except Exception as err:
        raise _fail(name, f"a forward pass on a batch of task {task!r} (shape "
                    f"{tuple(x.shape)}) failed: {type(err).__name__}: {err}",
                    f"build the net for inputs of shape {tuple(x.shape[1:])} (the factory "
                    "receives it as input_shape), or choose a task it takes with "
                    "--netclaims-task") from err
    if not isinstance(out, torch.Tensor):
        raise _fail(name, f"its forward returns {type(out).__name__}, not a tensor of logits",
                    "return the logits tensor from forward()")
    if tuple(out.shape) != (x.shape[0], num_classes):
        raise _fail(name, f"its output has shape {tuple(out.shape)} for a batch of "
                    f"{x.shape[0]}; task {task!r} needs ({x.shape[0]}, {num_classes})",
                    f"end the net with {num_classes} outputs (the factory receives "
                    "num_classes) and flatten everything else")
    if not bool(torch.isfinite(out).all()):
        raise _fail(name, "its output holds NaN or infinite values at initialization",
                    "check the initialization and the forward pass")


def _unit_layers(name: str, model: nn.Module, x: torch.Tensor) -> tuple[UnitLayer, ...]:
    try:
        stages = models.stages_of(model)
    except ValueError as err:
        raise _fail(name, str(err), "use nonlinearity modules (nn.ReLU(), …) or declare "
                    "model.netclaims_stages") from err
    with Recorder(model, stages.layers) as rec, torch.no_grad(), eval_mode(model):
        model(x)
        recorded = rec.pop_batch()
    silent = [layer for layer in stages.layers if layer not in recorded]
    if silent:
        raise _fail(name, f"unit layers {silent} never run in a forward pass (or run "
                    "several times)", "name each call of a reused module as 'name#k' in "
                    "netclaims_stages, or leave the stages to netclaims")
    modules = dict(model.named_modules())
    return tuple(UnitLayer(layer, stages.stage_of(layer), int(recorded[layer].shape[1]),
                           tuple(recorded[layer].shape[1:]),
                           _never_negative(modules.get(layer.split("#")[0]), recorded[layer]))
                 for layer in stages.layers)


def _never_negative(module: nn.Module | None, seen: torch.Tensor) -> bool:
    """Whether a unit layer's activations are never negative: none on the probe batch, and
    none from its module on inputs from -4 to 4 where it is elementwise (a GELU dips below
    zero only there)."""
    if bool((seen < 0).any()):
        return False
    if module is None:  # no module to probe: the probe batch decides
        return True
    grid = torch.linspace(-4.0, 4.0, 161)
    try:
        with torch.no_grad():
            out = module(grid)
    except Exception:  # not an elementwise module: the probe batch decides
        return True
    return not (isinstance(out, torch.Tensor) and out.shape == grid.shape
                and bool((out < 0).any()))


def _try(name: str, **kwargs) -> str | None:
    """Why building ``name`` with ``kwargs`` and running it fails (in short), or None."""
    try:
        model = models.create(name, **kwargs)
        with torch.no_grad(), eval_mode(model):
            model(torch.zeros(2, *kwargs["input_shape"]))
    except Exception as err:
        text = str(err).split("\n")[0].removeprefix(f"{name}: ").split(". Fix:")[0]
        return text if len(text) <= 120 else text[:117] + "..."
    return None


def preflight(name: str, data: Dataset) -> Architecture:
    """Build ``name`` for ``data``'s task, run one batch through it and read its
    capabilities; raises :class:`PreflightError` on a misfit."""
    if not models.is_user_spec(name) and name not in models.available():
        raise PreflightError(f"unknown architecture {name!r}; registered: "
                             f"{models.available()}, or give 'module:callable'")
    try:
        knobs = declared_knobs(models.factory_of(name))
    except ValueError as err:
        raise PreflightError(str(err)) from err
    shape, classes = data.input_shape, data.num_classes
    model = _build(name, shape, classes)
    x = data.x_train[:PROBE_BATCH]
    _forward(name, model, x, classes, data.name)
    layers = _unit_layers(name, model, x)
    found = {"stages"}
    stage_names = {layer.stage for layer in layers}
    if {"early", "intermediate", "late"} <= stage_names:
        found.add("three_stages")
    kinds = {"conv": (nn.Conv1d, nn.Conv2d, nn.Conv3d), "dense": (nn.Linear,),
             "transformer": (nn.MultiheadAttention,)}
    for capability, types_ in kinds.items():
        if any(isinstance(m, types_) for m in model.modules()):
            found.add(capability)
    missing: dict[str, str] = {}
    if "three_stages" not in found:
        missing["three_stages"] = f"its stages are {sorted(stage_names)}"
    for knob in ("width", "depth"):
        if knob in knobs:
            found.add(knob)
        else:
            missing[knob] = "the factory takes none"
    if has_batchnorm(model) or "batchnorm" in knobs:
        why = None if has_batchnorm(model) else _try(name, input_shape=shape,
                                                     num_classes=classes, batchnorm=True)
        if why is None:
            found.add("batchnorm")
        else:
            missing["batchnorm"] = why
    else:
        missing["batchnorm"] = "the net has no BatchNorm layers and no 'batchnorm' knob"
    signed = [layer.name for layer in layers if not layer.nonnegative]
    if signed:
        missing["nonnegative_units"] = f"unit layers {signed} take negative values"
    else:
        found.add("nonnegative_units")
    if getattr(model, "netclaims_preactivations", None):
        found.add("preactivations")
    else:
        missing["preactivations"] = "the net declares none"
    why = _try(name, input_shape=FEATURE_VECTOR_SHAPE, num_classes=2)
    if why is None:
        found.add("feature_vectors")
    else:
        missing["feature_vectors"] = f"on inputs of shape (10,): {why}"
    return Architecture(name, frozenset(found), tuple(sorted(missing.items())), data.name,
                        tuple(shape), layers)
