"""Recording the activations of many layers in one forward pass (:class:`Recorder`,
:func:`stream`, :func:`collect`), with streaming sinks (:class:`ClassMeans`, :class:`Moments`)
whose memory does not grow with the number of samples. Every hook is removed when its context
exits, even when the forward raises."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Generic, Protocol, Self, TypeVar

import torch
from torch import nn

from netclaims._checks import as_labels, check_choice, check_finite
from netclaims.units.selection import CALL_SEPARATOR, split_call, unknown_layer

REDUCTIONS = ("mean", "max", "none")


def unit_axis_of(module: nn.Module, ndim: int) -> int:
    axis = getattr(module, "netclaims_unit_axis", 1)
    return axis % ndim


def as_output_tensor(output: object, name: str) -> torch.Tensor:
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


def resolve_layers(model: nn.Module, layers: Iterable[str]) -> dict[str, nn.Module]:
    """Module per base name; raises for unknown names."""
    modules = dict(model.named_modules())
    resolved: dict[str, nn.Module] = {}
    for key in layers:
        base, _ = split_call(key)
        if base not in modules or base == "":
            raise unknown_layer(model, key)
        resolved[base] = modules[base]
    return resolved


class Hooks(contextlib.AbstractContextManager):
    """Forward hooks on ``self.modules`` (made by ``self._hook(name)``) plus a call counter on
    the root model, installed on enter and removed on exit, also when the forward raised."""

    model: nn.Module
    modules: dict[str, nn.Module]

    def __init__(self) -> None:
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._counter: _CallCounter | None = None

    def _hook(self, name: str) -> Callable:
        raise NotImplementedError

    def __enter__(self) -> Self:
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


class Recorder(Hooks):
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
        self.modules = resolve_layers(model, self.layers)
        self.reduce = {n: (reduce[n] if isinstance(reduce, Mapping) else reduce)
                       for n in self.modules}
        for n, how in self.reduce.items():
            check_choice(how, f"reduce[{n!r}]", REDUCTIONS)
        self.wanted_calls = {n: {split_call(k)[1] for k in self.layers if split_call(k)[0] == n}
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
            out = as_output_tensor(output, name)
            if self.detach:
                out = out.detach()
            reduced = reduce_spatial(out, self.reduce[name], unit_axis_of(module, out.ndim))
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
            if tracked is not None and norm.num_batches_tracked is not None:
                norm.num_batches_tracked.copy_(tracked)


def execution_order(model: nn.Module, layers: Sequence[str], example: torch.Tensor) -> list[str]:
    """Sort ``layers`` by the order in which a forward pass on ``example`` first calls them."""
    seen: list[str] = []
    with Recorder(model, layers, reduce="mean") as rec, torch.no_grad(), eval_mode(model):
        model(example)
        seen = list(rec.pop_batch())
    missing = [n for n in layers if n not in seen and not any(
        split_call(s)[0] == n for s in seen)]
    if missing:
        raise ValueError(f"layers never called by a forward pass: {missing}")
    rank: dict[str, int] = {}
    for i, key in enumerate(seen):
        rank.setdefault(key, i)
        rank.setdefault(split_call(key)[0], i)
    return sorted(layers, key=lambda n: rank[n])



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
    for parameter in model.parameters():
        return parameter.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


SinkT = TypeVar("SinkT", bound=Sink)


def stream(model: nn.Module, data: Data, layers: Sequence[str], sink: SinkT, *,
           reduce: str | Mapping[str, str] = "mean", batch_size: int = 256) -> SinkT:
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
        if self.mean is None or self._m2 is None:
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


AccumulatorT = TypeVar("AccumulatorT", ClassMeans, Moments)


class PerLayer(Generic[AccumulatorT]):
    """Sink holding one accumulator per layer, made by ``factory()`` on first sight."""

    def __init__(self, factory: Callable[[], AccumulatorT]) -> None:
        self.factory: Callable[[], AccumulatorT] = factory
        self.accumulators: dict[str, AccumulatorT] = {}

    def update(self, activations: Mapping[str, torch.Tensor], labels: torch.Tensor | None) -> None:
        for key, t in activations.items():
            if key not in self.accumulators:
                self.accumulators[key] = self.factory()
            self.accumulators[key].update(t, labels)

    def __getitem__(self, key: str) -> AccumulatorT:
        return self.accumulators[key]
