"""Intervening on units after the nonlinearity (:class:`Intervention`, :func:`intervene`):
clamp to zero or to a stored value, add scaled Gaussian noise; and evaluating many
interventions at once (:func:`intervened_outputs`): the batch runs through the layers below the
first intervened layer once, then is replicated once per mask. Models for which the replicated
batch is not valid (a skip connection that bypasses the intervened layer, an op that mixes
samples) are detected and evaluated mask by mask instead."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from netclaims._checks import check_choice, check_finite
from netclaims.units.recording import (
    Hooks,
    as_output_tensor,
    batches,
    collect,
    eval_mode,
    model_device,
    resolve_layers,
    unit_axis_of,
)
from netclaims.units.selection import split_call, unknown_layer


class BatchingUnsupportedError(RuntimeError):
    """The model cannot evaluate several interventions in one replicated batch."""


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


class intervene(Hooks):  # noqa: N801 - used like a function
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
        self.modules = resolve_layers(model, self.interventions)
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

    def _fill(self, key: str, values: torch.Tensor, shape: torch.Size, axis: int | None,
              dev: torch.device, dt: torch.dtype) -> torch.Tensor:
        """The clamp values, broadcastable against the ``(M, B, ...)`` output. A per-element
        fill comes units first, as :func:`collect` returns activations, and is laid out as
        the output holds its units (e.g. last, for token features)."""
        fill = self._on(key, "fill", values, dev, dt)
        if fill.ndim == 1:
            return _broadcast(fill[None], shape, axis)
        laid = None if axis is None else fill.movedim(0, axis - 1 if axis > 0 else axis)
        if laid is None or tuple(laid.shape) != tuple(shape[2:]):
            raise ValueError(f"layer {key!r}: a per-element fill of shape "
                             f"{tuple(fill.shape)} does not match its outputs of shape "
                             f"{tuple(shape[2:])} (units first)")
        return laid.reshape(1, 1, *laid.shape)

    def _hook(self, name: str) -> Callable:
        keys = [k for k in self.interventions if split_call(k)[0] == name]

        def hook(module: nn.Module, _inputs: tuple, output: object) -> torch.Tensor | None:
            assert self._counter is not None
            call = self._counter.next(name)
            key = next((k for k in keys if split_call(k)[1] in (None, call)), None)
            if key is None:
                return None
            iv = self.interventions[key]
            out = as_output_tensor(output, name)
            axis = None if iv.per_position else unit_axis_of(module, out.ndim)
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
                expected = "a batch size the model's forward did not show" if b is None \
                    else f"{b} or {m * b}"
                raise BatchingUnsupportedError(
                    f"layer {key!r} saw a batch of {rows} rows, expected {expected}")
            else:
                out = out.unsqueeze(0)
            shape, dev, dt = out.shape, out.device, out.dtype
            result = out
            if iv.keep is not None:
                keep = _broadcast(self._on(key, "keep", iv.keep, dev, dt), shape, axis)
                result = result * keep
                if iv.fill is not None:
                    fill = self._fill(key, iv.fill, shape, axis, dev, dt)
                    result = result + (1.0 - keep) * fill
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
    base = split_call(layer)[0]
    if base not in order:
        raise unknown_layer(model, layer)
    units = unit_counts(model, [layer], example)[layer]
    weighted = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    for name in reversed(order[:order.index(base)]):
        module = modules[name]
        if isinstance(module, weighted) and module.weight.shape[0] == units:
            return name
    raise ValueError(f"no conv or linear layer with {units} outputs runs before {layer!r}")
