"""Address units inside any ``torch.nn.Module``.

A *layer* is a named submodule whose output holds the units (by default the outputs of
nonlinearity modules, so units are taken after the nonlinearity). A *unit* is one channel of
that output: a neuron of a linear layer, a whole feature map of a conv layer. The unit axis is
1 (channels first) unless the module carries ``netclaims_unit_axis = -1`` (token features of a
transformer).

Four jobs live here:

* selecting layers (exact name, glob pattern, module type, or ``"auto"``) and grouping them
  into ordered :class:`Stages`;
* recording activations of many layers in one forward pass (:class:`Recorder`, :func:`stream`,
  :func:`collect`), with streaming sinks (:class:`ClassMeans`, :class:`Moments`) whose memory
  does not grow with the number of samples;
* intervening on units after the nonlinearity (:class:`Intervention`, :func:`intervene`):
  clamp to zero or to a stored value, add scaled Gaussian noise;
* evaluating many interventions at once (:func:`intervened_outputs`): the input batch is run
  through the layers below the first intervened layer once, then replicated once per mask, so
  the computation below is never repeated per mask. Models for which the replicated batch is
  not valid (a skip connection that bypasses the intervened layer, an op that mixes samples)
  are detected and evaluated mask by mask instead.

Every hook is removed when its context exits, even when the forward raises, so the model's
outputs afterwards are bit-identical to its outputs before.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from netclaims._checks import as_labels, check_choice, check_finite

NONLINEARITIES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Hardtanh, nn.Hardswish,
    nn.Hardsigmoid, nn.Softsign, nn.Tanhshrink,
)
"""Module types whose outputs ``select_layers(model, "auto")`` returns."""

REDUCTIONS = ("mean", "max", "none")
CALL_SEPARATOR = "#"


class UnknownLayerError(ValueError):
    """A layer name, pattern or type that matches nothing in the model."""


class BatchingUnsupportedError(RuntimeError):
    """The model cannot evaluate several interventions in one replicated batch."""


# --------------------------------------------------------------------------- selection


def layer_names(model: nn.Module) -> list[str]:
    """Names of every submodule of ``model`` in registration order (the root excluded)."""
    return [name for name, _ in model.named_modules() if name]


def _split_call(key: str) -> tuple[str, int | None]:
    """``"block.relu#1"`` -> ``("block.relu", 1)``; a plain name -> ``(name, None)``."""
    name, sep, index = key.rpartition(CALL_SEPARATOR)
    if sep and index.isdigit():
        return name, int(index)
    return key, None


def _unknown(model: nn.Module, what: str) -> UnknownLayerError:
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
            if _split_call(item)[0] not in modules:
                raise _unknown(model, item)
            found = [item]
        else:
            raise TypeError(f"cannot select layers with {item!r}")
        chosen.extend(n for n in found if n not in chosen)
    order = {n: i for i, n in enumerate(modules)}
    return sorted(chosen, key=lambda k: (order[_split_call(k)[0]], k))


def execution_order(model: nn.Module, layers: Sequence[str], example: torch.Tensor) -> list[str]:
    """Sort ``layers`` by the order in which a forward pass on ``example`` first calls them."""
    seen: list[str] = []
    with Recorder(model, layers, reduce="mean") as rec, torch.no_grad(), eval_mode(model):
        model(example)
        seen = list(rec.pop_batch())
    missing = [n for n in layers if n not in seen and not any(
        _split_call(s)[0] == n for s in seen)]
    if missing:
        raise ValueError(f"layers never called by a forward pass: {missing}")
    rank: dict[str, int] = {}
    for i, key in enumerate(seen):
        rank.setdefault(key, i)
        rank.setdefault(_split_call(key)[0], i)
    return sorted(layers, key=lambda n: rank[n])


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


# --------------------------------------------------------------------------- hooks


def _unit_axis(module: nn.Module, ndim: int) -> int:
    axis = getattr(module, "netclaims_unit_axis", 1)
    return axis % ndim


def _as_output_tensor(output: object, name: str) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    raise TypeError(f"layer {name!r} returns {type(output).__name__}, not a tensor; "
                    "select the module whose output is the activation")


def reduce_spatial(t: torch.Tensor, how: str, unit_axis: int = 1) -> torch.Tensor:
    """Bring units to axis 1 and reduce every axis after it by ``mean``/``max`` (or keep
    them with ``none``)."""
    check_choice(how, "reduce", REDUCTIONS)
    if t.ndim < 2:
        raise ValueError(f"activations need a batch and a unit axis, got shape {tuple(t.shape)}")
    t = t.movedim(unit_axis, 1)
    if how == "none" or t.ndim == 2:
        return t
    dims = tuple(range(2, t.ndim))
    return t.mean(dim=dims) if how == "mean" else t.amax(dim=dims)


class _CallCounter:
    """Numbers the calls of each module within one forward of the root model."""

    def __init__(self, model: nn.Module) -> None:
        self.counts: dict[str, int] = {}
        self.batch_size: int | None = None
        self._handle = model.register_forward_pre_hook(self._reset)

    def _reset(self, _module: nn.Module, args: tuple) -> None:
        self.counts.clear()
        first = args[0] if args else None
        self.batch_size = int(first.shape[0]) if isinstance(first, torch.Tensor) else None

    def next(self, name: str) -> int:
        index = self.counts.get(name, 0)
        self.counts[name] = index + 1
        return index

    def remove(self) -> None:
        self._handle.remove()


def _resolve(model: nn.Module, layers: Iterable[str]) -> dict[str, nn.Module]:
    """Module per base name; raises for unknown names."""
    modules = dict(model.named_modules())
    resolved: dict[str, nn.Module] = {}
    for key in layers:
        base, _ = _split_call(key)
        if base not in modules or base == "":
            raise _unknown(model, key)
        resolved[base] = modules[base]
    return resolved


class _Hooks(contextlib.AbstractContextManager):
    """Forward hooks on ``self.modules`` (made by ``self._hook(name)``) plus a call counter on
    the root model, installed on enter and removed on exit, also when the forward raised."""

    model: nn.Module
    modules: dict[str, nn.Module]

    def __init__(self) -> None:
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._counter: _CallCounter | None = None

    def _hook(self, name: str) -> Callable:
        raise NotImplementedError

    def __enter__(self) -> _Hooks:
        self._counter = _CallCounter(self.model)
        try:
            for name, module in self.modules.items():
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._remove()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._counter is not None:
            self._counter.remove()
            self._counter = None


class Recorder(_Hooks):
    """Record the outputs of several layers during forward passes of ``model``.

    Use as a context manager; each forward pass inside adds one batch per layer, which
    :meth:`pop_batch` hands over (for streaming) or :attr:`activations` concatenates. A module
    called several times per forward is recorded once per call, under ``name#0``, ``name#1``…
    (a module called once keeps its plain name; a call asked for as ``name#k`` keeps that
    name). Recorded tensors are detached copies (with ``detach=False``, copies that keep
    their gradients, for a loss on activations), reduced over space by ``reduce`` (``mean``,
    ``max`` or ``none``; one value or a per-layer dict). With ``keep=False`` batches handed
    over by :meth:`pop_batch` are not retained (streaming). Hooks are removed on exit, also
    when the forward raised.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str],
                 *, reduce: str | Mapping[str, str] = "mean", to_cpu: bool = True,
                 keep: bool = True, detach: bool = True) -> None:
        self.model = model
        self.layers = list(layers)
        if not self.layers:
            raise ValueError("Recorder needs at least one layer")
        self.modules = _resolve(model, self.layers)
        self.reduce = {n: (reduce[n] if isinstance(reduce, Mapping) else reduce)
                       for n in self.modules}
        for n, how in self.reduce.items():
            check_choice(how, f"reduce[{n!r}]", REDUCTIONS)
        self.wanted_calls = {n: {_split_call(k)[1] for k in self.layers if _split_call(k)[0] == n}
                             for n in self.modules}
        self.to_cpu = to_cpu
        self.keep = keep
        self.detach = detach
        self._batch: dict[tuple[str, int], torch.Tensor] = {}
        self._store: dict[str, list[torch.Tensor]] = {}
        super().__init__()

    def _hook(self, name: str) -> Callable:
        def hook(module: nn.Module, _inputs: tuple, output: object) -> None:
            assert self._counter is not None
            call = self._counter.next(name)
            wanted = self.wanted_calls[name]
            if None not in wanted and call not in wanted:
                return
            out = _as_output_tensor(output, name)
            if self.detach:
                out = out.detach()
            reduced = reduce_spatial(out, self.reduce[name], _unit_axis(module, out.ndim))
            if reduced.data_ptr() == out.data_ptr():
                reduced = reduced.clone()  # the model may modify its tensor in place later
            self._batch[(name, call)] = reduced.cpu() if self.to_cpu else reduced
        return hook

    def pop_batch(self) -> dict[str, torch.Tensor]:
        """The activations recorded since the last call, keyed by layer (or ``name#k``)."""
        calls: dict[str, int] = {}
        for name, call in self._batch:
            calls[name] = max(calls.get(name, 0), call + 1)
        batch = {}
        for (name, call), t in self._batch.items():
            plain = None in self.wanted_calls[name] and calls[name] == 1 and call == 0
            key = name if plain else f"{name}{CALL_SEPARATOR}{call}"
            batch[key] = t
        self._batch = {}
        if self.keep:
            for key, t in batch.items():
                self._store.setdefault(key, []).append(t)
        return batch

    @property
    def activations(self) -> dict[str, torch.Tensor]:
        """Every batch recorded so far, concatenated along the sample axis."""
        if not self.keep:
            raise ValueError("this Recorder was made with keep=False and retains no batches")
        if self._batch:
            self.pop_batch()
        return {k: torch.cat(v) for k, v in self._store.items()}


@contextlib.contextmanager
def eval_mode(model: nn.Module, *, batch_statistics: bool = False) -> Iterator[nn.Module]:
    """Put every submodule in eval mode and restore each one's previous mode afterwards.
    With ``batch_statistics`` the batch norms normalize with each batch's own statistics
    instead of their running averages, which stay as they were."""
    modes = {m: m.training for m in model.modules()}
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] \
        if batch_statistics else []
    kept = {m: (m.momentum, None if m.num_batches_tracked is None
                else m.num_batches_tracked.clone()) for m in norms}
    model.eval()
    for norm in norms:
        norm.train()
        norm.momentum = 0.0  # the running averages do not move
    try:
        yield model
    finally:
        for module, training in modes.items():
            module.training = training
        for norm, (momentum, tracked) in kept.items():
            norm.momentum = momentum
            if tracked is not None:
                norm.num_batches_tracked.copy_(tracked)


# --------------------------------------------------------------------------- streaming


class Sink(Protocol):
    """Receives the activations of one batch (keyed by layer) and the batch's labels."""

    def update(self, activations: Mapping[str, torch.Tensor],
               labels: torch.Tensor | None) -> None: ...


Data = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | Iterable


Batch = tuple[torch.Tensor, torch.Tensor | None]


def batches(data: Data, batch_size: int = 256) -> Iterator[Batch]:
    """Yield ``(inputs, labels or None)`` from a tensor, an ``(inputs, labels)`` pair of
    tensors, or an iterable of batches (a ``DataLoader``)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(data, torch.Tensor):
        for start in range(0, data.shape[0], batch_size):
            yield data[start:start + batch_size], None
        return
    if (isinstance(data, tuple) and len(data) == 2
            and all(isinstance(d, torch.Tensor) for d in data)):
        x, y = data
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"sample counts differ: inputs has {x.shape[0]}, "
                             f"labels has {y.shape[0]}")
        for start in range(0, x.shape[0], batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]
        return
    for item in data:
        if isinstance(item, torch.Tensor):
            yield item, None
        elif isinstance(item, list | tuple) and len(item) >= 2:
            yield item[0], item[1]
        elif isinstance(item, list | tuple) and len(item) == 1:
            yield item[0], None
        else:
            raise TypeError(f"cannot read a batch from {type(item).__name__}")


def model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def stream(model: nn.Module, data: Data, layers: Sequence[str], sink: Sink, *,
           reduce: str | Mapping[str, str] = "mean", batch_size: int = 256) -> Sink:
    """Run ``model`` (in eval mode, without gradients) over ``data`` once and feed every
    batch's activations of ``layers`` to ``sink``; return the sink."""
    device = model_device(model)
    with Recorder(model, layers, reduce=reduce, keep=False) as rec, torch.no_grad(), \
            eval_mode(model):
        for x, y in batches(data, batch_size):
            model(x.to(device))
            sink.update(rec.pop_batch(), y)
    return sink


class Concatenate:
    """Sink that keeps every activation (memory grows with the samples)."""

    def __init__(self) -> None:
        self._parts: dict[str, list[torch.Tensor]] = {}

    def update(self, activations: Mapping[str, torch.Tensor], labels: torch.Tensor | None) -> None:
        for key, t in activations.items():
            self._parts.setdefault(key, []).append(t)

    @property
    def result(self) -> dict[str, torch.Tensor]:
        return {k: torch.cat(v) for k, v in self._parts.items()}


def collect(model: nn.Module, data: Data, layers: Sequence[str], *,
            reduce: str | Mapping[str, str] = "mean",
            batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Activations of ``layers`` over all of ``data`` in one pass: ``{layer: (n, units, ...)}``."""
    sink = stream(model, data, layers, Concatenate(), reduce=reduce, batch_size=batch_size)
    return sink.result


def positions_as_samples(t: torch.Tensor) -> torch.Tensor:
    """``(n, units, *space)`` -> ``(n * positions, units)``: each position is a sample."""
    if t.ndim == 2:
        return t
    return t.movedim(1, -1).reshape(-1, t.shape[1])


class ClassMeans:
    """Streaming per-class means of each unit: float64 sums and counts, O(classes × units)
    memory whatever the number of samples."""

    def __init__(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.sums: torch.Tensor | None = None
        self.counts = torch.zeros(num_classes, dtype=torch.float64)

    def update(self, activations: torch.Tensor, labels: torch.Tensor | None) -> None:
        if labels is None:
            raise ValueError("ClassMeans needs labels: feed (inputs, labels) batches")
        if activations.ndim != 2:
            raise ValueError("ClassMeans needs (samples, units) activations; record with "
                             f"reduce='mean' or 'max', got shape {tuple(activations.shape)}")
        y = as_labels(labels, n=activations.shape[0], num_classes=self.num_classes)
        check_finite(activations, "activations")
        a = activations.to(torch.float64)
        if self.sums is None:
            self.sums = torch.zeros(self.num_classes, a.shape[1], dtype=torch.float64)
        self.sums.index_add_(0, y, a)
        self.counts += torch.bincount(y, minlength=self.num_classes).to(torch.float64)

    @property
    def present(self) -> torch.Tensor:
        """Boolean mask of the classes seen at least once."""
        return self.counts > 0

    @property
    def means(self) -> torch.Tensor:
        """``(classes seen, units)`` class-conditional means (unseen classes dropped)."""
        if self.sums is None:
            raise ValueError("ClassMeans has seen no data")
        keep = self.present
        return self.sums[keep] / self.counts[keep, None]


class Moments:
    """Streaming per-unit mean and variance (Chan et al.'s parallel update, float64).

    Activations with spatial axes count every position as a sample. ``var`` is the
    population variance (divide by n).
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None
        self._m2: torch.Tensor | None = None

    def update(self, activations: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        check_finite(activations, "activations")
        a = positions_as_samples(activations).to(torch.float64)
        n_b = a.shape[0]
        if n_b == 0:
            return
        mean_b = a.mean(0)
        m2_b = ((a - mean_b) ** 2).sum(0)
        if self.mean is None:
            self.n, self.mean, self._m2 = n_b, mean_b, m2_b
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self._m2 = self._m2 + m2_b + delta ** 2 * (self.n * n_b / n)
        self.n = n

    @property
    def var(self) -> torch.Tensor:
        if self._m2 is None:
            raise ValueError("Moments has seen no data")
        return self._m2 / self.n

    @property
    def std(self) -> torch.Tensor:
        return self.var.sqrt()


class PerLayer:
    """Sink holding one accumulator per layer, made by ``factory()`` on first sight."""

    def __init__(self, factory: Callable[[], ClassMeans | Moments]) -> None:
        self.factory = factory
        self.accumulators: dict[str, ClassMeans | Moments] = {}

    def update(self, activations: Mapping[str, torch.Tensor], labels: torch.Tensor | None) -> None:
        for key, t in activations.items():
            if key not in self.accumulators:
                self.accumulators[key] = self.factory()
            self.accumulators[key].update(t, labels)

    def __getitem__(self, key: str) -> ClassMeans | Moments:
        return self.accumulators[key]


# --------------------------------------------------------------------------- interventions


@dataclass
class Intervention:
    """What happens to the units of one layer, for ``M`` masks at once.

    ``output' = keep * output + (1 - keep) * fill + noise_std * N(0, 1)``, per unit, with
    ``keep`` and ``noise_std`` of shape ``(M, units)`` and ``fill`` of shape ``(units,)``, or
    ``(units, *positions)`` for a value per element of each feature map (channels first)
    (zeros when None). Build one with :func:`ablation` or :func:`noise`. With
    ``per_position`` every element of a sample's output is its own unit (a feature map's
    positions counted separately, as the frivolous-units paper prunes them), flattened in the
    output's order.
    """

    units: int
    keep: torch.Tensor | None = None
    fill: torch.Tensor | None = None
    noise_std: torch.Tensor | None = None
    per_position: bool = False
    masks: int = field(init=False)

    def __post_init__(self) -> None:
        counts = set()
        for name in ("keep", "noise_std"):
            value = getattr(self, name)
            if value is None:
                continue
            value = torch.as_tensor(value, dtype=torch.float32)
            if value.ndim == 1:
                value = value[None]
            if value.ndim != 2 or value.shape[1] != self.units:
                raise ValueError(f"{name} must have shape (masks, {self.units}), "
                                 f"got {tuple(value.shape)}")
            check_finite(value, name)
            setattr(self, name, value)
            counts.add(value.shape[0])
        if self.fill is not None:
            self.fill = torch.as_tensor(self.fill, dtype=torch.float32)
            if self.fill.ndim == 0 or self.fill.shape[0] != self.units:
                raise ValueError(f"fill must have shape ({self.units},) or ({self.units}, "
                                 f"*positions), got {tuple(self.fill.shape)}")
            check_finite(self.fill, "fill")
        if len(counts) > 1:
            raise ValueError(f"keep and noise_std disagree on the number of masks: {counts}")
        self.masks = counts.pop() if counts else 1

    def select(self, rows: slice | Sequence[int]) -> Intervention:
        """The intervention restricted to some masks."""
        return Intervention(
            self.units,
            keep=None if self.keep is None else self.keep[rows],
            fill=self.fill,
            noise_std=None if self.noise_std is None else self.noise_std[rows],
            per_position=self.per_position,
        )

    def without_noise(self) -> Intervention:
        """The same masks with zero noise (deterministic, and still ``masks`` of them)."""
        zero = None if self.noise_std is None else torch.zeros_like(self.noise_std)
        return Intervention(self.units, keep=self.keep, fill=self.fill, noise_std=zero,
                            per_position=self.per_position)


def ablation(units: int, ablated: torch.Tensor | Sequence[int], *,
             fill: torch.Tensor | None = None) -> Intervention:
    """Clamp units to ``fill`` (zero by default). ``ablated`` is a list of unit indices, a
    boolean mask ``(units,)``, or a boolean matrix ``(masks, units)``."""
    a = torch.as_tensor(ablated)
    if a.dtype == torch.bool:
        mask = a if a.ndim == 2 else a.reshape(1, -1)
    else:
        idx = a.reshape(-1).to(torch.int64)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= units):
            raise ValueError(f"unit indices must lie in 0..{units - 1}, got "
                             f"{int(idx.min())}..{int(idx.max())}")
        mask = torch.zeros(1, units, dtype=torch.bool)
        mask[0, idx] = True
    return Intervention(units, keep=(~mask).to(torch.float32), fill=fill)


def noise(std: torch.Tensor) -> Intervention:
    """Add Gaussian noise with per-unit standard deviation ``std`` (``(units,)`` or
    ``(masks, units)``)."""
    s = torch.as_tensor(std, dtype=torch.float32)
    if bool((s < 0).any()):
        raise ValueError("noise standard deviations must be >= 0")
    return Intervention(int(s.shape[-1]), noise_std=s)


def _broadcast(values: torch.Tensor, expanded: torch.Size, unit_axis: int | None) -> torch.Tensor:
    """``(M, U)`` -> a view broadcastable against ``expanded = (M, B, ...)`` with units at
    ``unit_axis + 1``, or (``unit_axis=None``) units spanning every element after ``B``."""
    if unit_axis is None:
        return values.reshape(values.shape[0], 1, *expanded[2:])
    shape = [1] * len(expanded)
    shape[0] = values.shape[0]
    shape[unit_axis + 1] = values.shape[1]
    return values.reshape(shape)


class intervene(_Hooks):  # noqa: N801 - used like a function
    """Apply :class:`Intervention` objects to layers during forward passes.

    With one mask per intervention the model runs as usual. With ``M`` masks, the first
    intervened layer replicates its output ``M`` times along the batch axis (mask-major), and
    the model's output holds ``M × batch`` rows: the layers below run once for all masks.
    With ``replicated_input`` the input already holds ``M`` copies of the batch (mask-major,
    as ``x.repeat(M, ...)`` makes them) and every intervened layer applies mask ``i`` to the
    ``i``-th copy. A layer keyed ``name`` applies to every call of a module used several
    times; ``name#k`` to its k-th call only. Hooks are removed on exit, also when the forward
    raised.
    """

    def __init__(self, model: nn.Module, interventions: Mapping[str, Intervention], *,
                 generator: torch.Generator | None = None,
                 replicated_input: bool = False) -> None:
        if not interventions:
            raise ValueError("intervene needs at least one layer")
        masks = {iv.masks for iv in interventions.values()}
        if len(masks) > 1:
            raise ValueError(f"every intervention must have the same number of masks, "
                             f"got {sorted(masks)}")
        self.masks = masks.pop()
        self.model = model
        self.interventions = dict(interventions)
        self.modules = _resolve(model, self.interventions)
        self.generator = generator
        self.replicated_input = replicated_input
        super().__init__()
        self._device_cache: dict[tuple[str, str, torch.device], torch.Tensor] = {}

    def _on(self, key: str, part: str, value: torch.Tensor, device: torch.device,
            dtype: torch.dtype) -> torch.Tensor:
        cache_key = (key, part, device)
        if cache_key not in self._device_cache:
            self._device_cache[cache_key] = value.to(device)
        return self._device_cache[cache_key].to(dtype)

    def _fill(self, key: str, iv: Intervention, shape: torch.Size, axis: int | None,
              dev: torch.device, dt: torch.dtype) -> torch.Tensor:
        """The clamp values, broadcastable against the ``(M, B, ...)`` output. A per-element
        fill comes units first, as :func:`collect` returns activations, and is laid out as
        the output holds its units (e.g. last, for token features)."""
        fill = self._on(key, "fill", iv.fill, dev, dt)
        if fill.ndim == 1:
            return _broadcast(fill[None], shape, axis)
        laid = None if axis is None else fill.movedim(0, axis - 1 if axis > 0 else axis)
        if laid is None or tuple(laid.shape) != tuple(shape[2:]):
            raise ValueError(f"layer {key!r}: a per-element fill of shape "
                             f"{tuple(fill.shape)} does not match its outputs of shape "
                             f"{tuple(shape[2:])} (units first)")
        return laid.reshape(1, 1, *laid.shape)

    def _hook(self, name: str) -> Callable:
        keys = [k for k in self.interventions if _split_call(k)[0] == name]

        def hook(module: nn.Module, _inputs: tuple, output: object) -> torch.Tensor | None:
            assert self._counter is not None
            call = self._counter.next(name)
            key = next((k for k in keys if _split_call(k)[1] in (None, call)), None)
            if key is None:
                return None
            iv = self.interventions[key]
            out = _as_output_tensor(output, name)
            axis = None if iv.per_position else _unit_axis(module, out.ndim)
            found = out[0].numel() if axis is None else out.shape[axis]
            if axis == 0:
                raise ValueError(f"layer {name!r}: the unit axis cannot be the batch axis")
            if found != iv.units:
                raise ValueError(f"layer {key!r} has {found} units but its "
                                 f"intervention was built for {iv.units}")
            m, b = self.masks, self._counter.batch_size
            if self.replicated_input and b is not None:
                if b % m:
                    raise BatchingUnsupportedError(
                        f"a replicated input of {b} rows does not hold {m} equal copies")
                b //= m
            rows = out.shape[0]
            if m > 1 and rows == b:
                out = out.unsqueeze(0).expand(m, *out.shape)
            elif m > 1 and b is not None and rows == m * b:
                out = out.reshape(m, b, *out.shape[1:])
            elif m > 1:
                raise BatchingUnsupportedError(
                    f"layer {key!r} saw a batch of {rows} rows, expected {b} or {m * b}")
            else:
                out = out.unsqueeze(0)
            shape, dev, dt = out.shape, out.device, out.dtype
            result = out
            if iv.keep is not None:
                keep = _broadcast(self._on(key, "keep", iv.keep, dev, dt), shape, axis)
                result = result * keep
                if iv.fill is not None:
                    result = result + (1.0 - keep) * self._fill(key, iv, shape, axis, dev, dt)
            if iv.noise_std is not None:
                std = _broadcast(self._on(key, "std", iv.noise_std, dev, dt), shape, axis)
                eps = torch.randn(result.shape, generator=self.generator, dtype=torch.float32,
                                  device="cpu" if self.generator is None
                                  else self.generator.device).to(dev, dt)
                result = result + std * eps
            return result.reshape(-1, *result.shape[2:])
        return hook


def _run_batched(model: nn.Module, x: torch.Tensor, ivs: Mapping[str, Intervention],
                 generator: torch.Generator | None) -> torch.Tensor:
    masks = next(iter(ivs.values())).masks
    with intervene(model, ivs, generator=generator):
        out = model(x)
    if out.shape[0] != masks * x.shape[0]:
        raise BatchingUnsupportedError(
            f"model output has {out.shape[0]} rows, expected {masks} masks × {x.shape[0]}")
    return out.reshape(masks, x.shape[0], *out.shape[1:])


def _run_batched_input(model: nn.Module, x: torch.Tensor, ivs: Mapping[str, Intervention],
                       generator: torch.Generator | None) -> torch.Tensor:
    masks = next(iter(ivs.values())).masks
    with intervene(model, ivs, generator=generator, replicated_input=True):
        out = model(x.repeat(masks, *[1] * (x.ndim - 1)))
    return out.reshape(masks, x.shape[0], *out.shape[1:])


def _run_sequential(model: nn.Module, x: torch.Tensor, ivs: Mapping[str, Intervention],
                    generator: torch.Generator | None) -> torch.Tensor:
    masks = next(iter(ivs.values())).masks
    outs = []
    for i in range(masks):
        with intervene(model, {k: iv.select(slice(i, i + 1)) for k, iv in ivs.items()},
                       generator=generator):
            outs.append(model(x))
    return torch.stack(outs)


_RUNS = {"batched": _run_batched, "batched_input": _run_batched_input,
         "sequential": _run_sequential}
STRATEGIES = ("auto", *_RUNS)


@torch.no_grad()
def _batching_is_exact(model: nn.Module, x: torch.Tensor, ivs: Mapping[str, Intervention],
                       strategy: str = "batched") -> bool:
    """Compare a batched path with the mask-by-mask path on the first and last masks
    (noise removed, so both are deterministic)."""
    masks = next(iter(ivs.values())).masks
    probe = sorted({0, masks - 1})
    plain = {k: iv.without_noise().select(probe) for k, iv in ivs.items()}
    try:
        batched = _RUNS[strategy](model, x, plain, None)
    except (BatchingUnsupportedError, RuntimeError):
        return False
    sequential = _run_sequential(model, x, plain, None)
    scale = float(sequential.abs().max()) or 1.0
    return torch.allclose(batched, sequential, rtol=1e-4, atol=1e-5 * scale)


def _choose_strategy(model: nn.Module, x: torch.Tensor,
                     ivs: Mapping[str, Intervention]) -> str:
    """The first batched path that gives the mask-by-mask outputs, else ``sequential``."""
    if next(iter(ivs.values())).masks == 1:
        return "sequential"
    return next((name for name in ("batched", "batched_input")
                 if _batching_is_exact(model, x, ivs, name)), "sequential")


def intervened_outputs(model: nn.Module, inputs: torch.Tensor,
                       interventions: Mapping[str, Intervention], *, batch_size: int = 256,
                       mask_chunk: int = 16, generator: torch.Generator | None = None,
                       strategy: str = "auto", batch_statistics: bool = False) -> torch.Tensor:
    """Model outputs under each of ``M`` interventions: a ``(M, n, ...)`` tensor.

    ``"batched"`` replicates the batch after the first intervened layer, so the layers below
    it run once for all masks; ``"batched_input"`` replicates the input instead (for models
    whose skip connections carry the unreplicated batch past that layer, e.g. residual
    nets); ``"sequential"`` runs one forward per mask. ``"auto"`` checks once, on the first
    batch, which batched path gives the same outputs as running each mask separately, in
    that order, and falls back to ``"sequential"``. The model runs in eval mode without
    gradients; with ``batch_statistics`` its batch norms use each batch's statistics
    (:func:`eval_mode`), which needs one forward per mask (``"sequential"``).
    """
    check_choice(strategy, "strategy", STRATEGIES)
    if batch_statistics and strategy not in ("auto", "sequential"):
        raise ValueError("batch statistics need one forward per mask: strategy 'sequential'")
    if mask_chunk < 1:
        raise ValueError(f"mask_chunk must be >= 1, got {mask_chunk}")
    masks = {iv.masks for iv in interventions.values()}
    if len(masks) != 1:
        raise ValueError(f"every intervention must have the same number of masks, got {masks}")
    total = masks.pop()
    device = model_device(model)
    chosen: str | None = "sequential" if batch_statistics else \
        None if strategy == "auto" else strategy
    results: list[torch.Tensor] = []
    with torch.no_grad(), eval_mode(model, batch_statistics=batch_statistics):
        for x, _ in batches(inputs, batch_size):
            x = x.to(device)
            parts = []
            for start in range(0, total, mask_chunk):
                chunk = {k: iv.select(slice(start, start + mask_chunk))
                         for k, iv in interventions.items()}
                if chosen is None:
                    chosen = _choose_strategy(model, x, chunk)
                parts.append(_RUNS[chosen](model, x, chunk, generator).cpu())
            results.append(torch.cat(parts))
    return torch.cat(results, dim=1)


def unit_counts(model: nn.Module, layers: Sequence[str], example: torch.Tensor, *,
                per_position: bool = False) -> dict[str, int]:
    """Number of units of each layer, read from one forward pass on ``example``; with
    ``per_position``, every position of a feature map counts as a unit."""
    shapes = collect(model, example[:1], layers, reduce="none" if per_position else "mean")
    missing = [k for k in layers if k not in shapes]
    if missing:
        raise ValueError(f"layers never called by a forward pass (or called several times; "
                         f"name the call as 'name#k'): {missing}")
    return {k: int(shapes[k][0].numel() if per_position else shapes[k].shape[1])
            for k in layers}


def incoming_layer(model: nn.Module, layer: str, example: torch.Tensor) -> str:
    """The conv or linear module feeding ``layer``'s units: the last one, in execution order
    before ``layer``, with as many output channels as ``layer`` has units. (In a residual
    block whose input sums several paths, that is the nearest such module, an
    approximation.)"""
    order: list[str] = []
    modules = dict(model.named_modules())
    handles = [m.register_forward_hook(lambda _m, _i, _o, name=name: order.append(name))
               for name, m in modules.items() if name]
    try:
        with torch.no_grad(), eval_mode(model):
            model(example[:1])
    finally:
        for handle in handles:
            handle.remove()
    base = _split_call(layer)[0]
    if base not in order:
        raise _unknown(model, layer)
    units = unit_counts(model, [layer], example)[layer]
    weighted = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    for name in reversed(order[:order.index(base)]):
        module = modules[name]
        if isinstance(module, weighted) and module.weight.shape[0] == units:
            return name
    raise ValueError(f"no conv or linear layer with {units} outputs runs before {layer!r}")
