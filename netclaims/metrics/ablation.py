"""Cumulative ablation and noise curves, single-unit importance, incoming-weight L1 norms and
the random-perturbation sharpness baseline.

Ablation clamps whole units (a feature map for conv layers) after the nonlinearity, to 0 or to
a stored value (the unit's mean over the training set), through :mod:`netclaims.units`, which
evaluates many masks without repeating the computation below the ablated layers.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from netclaims._checks import (
    ArrayLike,
    as_labels,
    as_tensor,
    check_choice,
    check_finite,
    check_positive,
)
from netclaims.units import (
    Data,
    Intervention,
    Moments,
    PerLayer,
    collect,
    eval_mode,
    intervened_outputs,
    model_device,
    stream,
    unit_counts,
)

MEASURES = ("accuracy", "unchanged")


@dataclass(frozen=True)
class Curve:
    """A performance curve under increasing damage.

    ``x``: fractions of units ablated (``x_axis="fraction"``) or noise scales
    (``x_axis="log10 scale"``); ``values``: ``(repeats, points)`` raw accuracy or fraction of
    unchanged predictions; ``baseline``: the same measure for the intact model; ``chance``:
    what a constant prediction scores (the most frequent class's share for accuracy, 0 for
    unchanged predictions); ``aucs``: one AUC per repeat of the normalized curve,
    ``(values − chance) / (baseline − chance)``: 1 for the intact net, 0 at chance, so a net
    ablated down to guessing scores 0 whatever the number of classes (the raw ratio
    ``values / baseline`` keeps a floor of ``chance / baseline``, which differs between nets of
    different accuracy).
    """

    x: np.ndarray
    values: np.ndarray
    baseline: float
    measure: str
    x_axis: str
    aucs: np.ndarray
    chance: float = 0.0

    @property
    def normalized(self) -> np.ndarray:
        return (self.values - self.chance) / (self.baseline - self.chance)

    @property
    def auc(self) -> float:
        """Mean AUC over repeats (orderings or noise draws)."""
        return float(self.aucs.mean())

    @property
    def normalization(self) -> str:
        return (f"({self.measure} - chance {self.chance:.4g}) / (intact {self.measure} "
                f"{self.baseline:.4g} - chance)")

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The curve's numbers as tensors (for caching); ``from_tensors`` reverses it."""
        return {"x": torch.from_numpy(self.x), "values": torch.from_numpy(self.values),
                "aucs": torch.from_numpy(self.aucs),
                "baseline": torch.tensor([self.baseline, self.chance], dtype=torch.float64)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], measure: str,
                     x_axis: str) -> Curve:
        baseline, chance = (float(v) for v in tensors["baseline"])
        return cls(x=tensors["x"].numpy(), values=tensors["values"].numpy(),
                   baseline=baseline, measure=measure, x_axis=x_axis,
                   aucs=tensors["aucs"].numpy(), chance=chance)


def curve_auc(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, *,
              log_x: bool = False,
              start: float = 0.0) -> float:
    """Trapezoid area under ``y(x)``.

    For ablation curves ``x`` must run from 0 to 1 (fraction of units ablated), so the AUC is
    the mean normalized performance. ``start`` keeps only the part of the curve past that
    fraction (``y`` interpolated linearly at ``start``) and divides by ``1 - start``, again a
    mean level (Morcos et al. 2018, dropout: the curve past the dropout fraction). With
    ``log_x`` (noise curves) the area is taken over ``log10 x`` and divided by the log range.
    """
    xs = as_tensor(x, "x", ndim=1, dtype=torch.float64).numpy()
    ys = as_tensor(y, "y", ndim=1, dtype=torch.float64).numpy()
    if xs.shape != ys.shape or xs.size < 2:
        raise ValueError(f"x and y need the same length >= 2, got {xs.size} and {ys.size}")
    if np.any(np.diff(xs) <= 0):
        raise ValueError("x must be strictly increasing")
    if log_x:
        if xs[0] <= 0:
            raise ValueError("noise scales must be > 0 for a log axis")
        lx = np.log10(xs)
        return float(np.trapezoid(ys, lx) / (lx[-1] - lx[0]))
    if xs[0] != 0 or xs[-1] != 1:
        raise ValueError(f"ablation fractions must run from 0 to 1, got {xs[0]}..{xs[-1]}")
    if not 0.0 <= start < 1.0:
        raise ValueError(f"start must lie in [0, 1), got {start}")
    if start > 0:
        keep = xs > start
        ys = np.concatenate([[np.interp(start, xs, ys)], ys[keep]])
        xs = np.concatenate([[start], xs[keep]])
    return float(np.trapezoid(ys, xs) / (1.0 - start))


def unit_statistics(model: nn.Module, data: Data, layers: Sequence[str], *,
                    batch_size: int = 256) -> dict[str, Moments]:
    """Per-unit mean and standard deviation of each layer over ``data`` (every spatial
    position counts as a sample), streamed in one pass."""
    sink = stream(model, data, layers, PerLayer(Moments), reduce="none", batch_size=batch_size)
    return dict(sink.accumulators)


def element_means(model: nn.Module, data: Data, layers: Sequence[str], *,
                  batch_size: int = 256) -> dict[str, torch.Tensor]:
    """The mean over ``data`` of every element of each layer's output, to clamp units to:
    ``(channels, *positions)`` for feature maps ("means were calculated independently for
    each element of the feature map", Morcos et al. 2018, appendix A.1), ``(units,)`` for
    dense layers and for token activations measured over their features."""
    full = collect(model, data, layers, reduce="none", batch_size=batch_size)
    pooled = collect(model, data, layers, batch_size=batch_size)
    out = {}
    for layer in layers:
        a, units = full[layer], pooled[layer].shape[1]
        per_element = a.ndim > 2 and a.shape[1] == units
        out[layer] = (a if per_element else pooled[layer]).double().mean(0).float()
    return out


def _predictions(model: nn.Module, inputs: torch.Tensor, batch_size: int,
                 batch_statistics: bool = False) -> torch.Tensor:
    device = model_device(model)
    with torch.no_grad(), eval_mode(model, batch_statistics=batch_statistics):
        return torch.cat([model(inputs[i:i + batch_size].to(device)).cpu()
                          for i in range(0, inputs.shape[0], batch_size)])


def _score(outputs: torch.Tensor, labels: torch.Tensor, reference: torch.Tensor,
           measure: str) -> torch.Tensor:
    """Accuracy (against ``labels``) or agreement with the intact predictions, per mask."""
    target = labels if measure == "accuracy" else reference
    return (outputs.argmax(-1) == target[None]).double().mean(-1)


def _inputs_labels(inputs: torch.Tensor, labels: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a tensor, got {type(inputs).__name__}")
    y = as_labels(labels, n=inputs.shape[0])
    if inputs.shape[0] == 0:
        raise ValueError("inputs is empty")
    if inputs.is_floating_point():
        check_finite(inputs, "inputs")
    return inputs, y


def _check_classes(labels: torch.Tensor, logits: torch.Tensor) -> None:
    """Raise unless every label is one of the model's output classes."""
    if int(labels.max()) >= logits.shape[-1]:
        raise ValueError(f"labels contain class {int(labels.max())} but the model has "
                         f"{logits.shape[-1]} outputs (classes 0..{logits.shape[-1] - 1})")


def ablation_curve(model: nn.Module, inputs: torch.Tensor, labels: ArrayLike,
                   layers: Sequence[str], *,
                   fractions: Sequence[float] = tuple(np.linspace(0, 1, 11)),
                   orderings: int | Mapping[str, torch.Tensor] = 5,
                   fill: Mapping[str, torch.Tensor] | None = None,
                   measure: str = "accuracy", per_position: bool = False, seed: int = 0,
                   batch_size: int = 256, mask_chunk: int = 16,
                   strategy: str = "auto", batch_statistics: bool = False) -> Curve:
    """Cumulative ablation curve (Morcos et al. 2018, section 2.2).

    For each fraction ``f``, every layer in ``layers`` has its first ``round(f · units)``
    units (in the order given) clamped to 0, or to ``fill[layer]`` (e.g. each element's mean
    over the training set, see :func:`element_means`). ``orderings`` is a number of random
    orderings (seeded by ``seed``) or, per layer, a ``(repeats, units)`` tensor of explicit
    orderings (e.g. most selective first). ``measure`` is ``"accuracy"`` against ``labels``
    or ``"unchanged"``: the fraction of predictions equal to the intact model's
    (frivolous-units paper). ``per_position`` ablates each position of a feature map as its
    own unit (the frivolous-units paper's prunability) instead of whole channels. AUC:
    trapezoid over fractions 0..1 of the chance-corrected curve (:class:`Curve`).
    ``batch_statistics``: the net's batch norms normalize with the statistics of each batch
    of the damaged net instead of their running averages (the paper does not say which it
    used; the two can disagree in sign).
    """
    check_choice(measure, "measure", MEASURES)
    inputs, y = _inputs_labels(inputs, labels)
    fr = as_tensor(list(fractions), "fractions", ndim=1, dtype=torch.float64).numpy()
    if fr.min() < 0 or fr.max() > 1:
        raise ValueError("fractions must lie in [0, 1]")
    counts = unit_counts(model, layers, inputs, per_position=per_position)
    orders = _orderings(orderings, counts, seed)
    repeats = {v.shape[0] for v in orders.values()}
    if len(repeats) != 1:
        raise ValueError(f"every layer needs the same number of orderings, got {repeats}")
    r = repeats.pop()
    interventions = {}
    for layer, units in counts.items():
        keep = torch.ones(r * len(fr), units)
        for i in range(r):
            for j, f in enumerate(fr):
                keep[i * len(fr) + j, orders[layer][i, :round(f * units)]] = 0.0
        interventions[layer] = Intervention(units, keep=keep,
                                            fill=None if fill is None else fill[layer],
                                            per_position=per_position)
    logits = _predictions(model, inputs, batch_size, batch_statistics)
    _check_classes(y, logits)
    reference = logits.argmax(-1)
    outputs = intervened_outputs(model, inputs, interventions, batch_size=batch_size,
                                 mask_chunk=mask_chunk, strategy=strategy,
                                 batch_statistics=batch_statistics)
    values = _score(outputs, y, reference, measure).numpy().reshape(r, len(fr))
    return _curve(fr, values, reference, y, measure, "fraction")


def chance_accuracy(labels: ArrayLike) -> float:
    """The accuracy of a constant prediction: the most frequent class's share of ``labels``
    (the floor of ablation curves and of the run-health gate)."""
    y = as_labels(labels)
    return float(torch.bincount(y).max()) / y.numel()


def above_chance(model: nn.Module, inputs: torch.Tensor, labels: ArrayLike, *,
                 batch_size: int = 256) -> bool:
    """Whether ``model`` predicts ``labels`` better than :func:`chance_accuracy` (a net at
    chance, e.g. at initialization, has no normalized ablation curve)."""
    inputs, y = _inputs_labels(inputs, labels)
    accuracy = float((_predictions(model, inputs, batch_size).argmax(-1) == y).double().mean())
    return accuracy > chance_accuracy(y)


def _curve(x: np.ndarray, values: np.ndarray, reference: torch.Tensor, labels: torch.Tensor,
           measure: str, x_axis: str) -> Curve:
    """The curve of raw ``values``, normalized between chance and the intact net's score
    (``reference``: its predictions)."""
    if measure == "accuracy":
        baseline = float((reference == labels).double().mean())
        chance = chance_accuracy(labels)
    else:
        baseline, chance = 1.0, 0.0
    if baseline <= chance:
        raise ValueError(f"the intact model's {measure} ({baseline:.4g}) is not above chance "
                         f"({chance:.4g}): a normalized curve is undefined (did it train?)")
    log_x = x_axis != "fraction"
    aucs = np.array([curve_auc(x, (row - chance) / (baseline - chance), log_x=log_x)
                     for row in values])
    return Curve(x=x, values=values, baseline=baseline, measure=measure, x_axis=x_axis,
                 aucs=aucs, chance=chance)


def _orderings(orderings: int | Mapping[str, torch.Tensor], counts: Mapping[str, int],
               seed: int) -> dict[str, torch.Tensor]:
    if isinstance(orderings, int):
        if orderings < 1:
            raise ValueError(f"orderings must be >= 1, got {orderings}")
        gen = torch.Generator().manual_seed(seed)
        return {layer: torch.stack([torch.randperm(units, generator=gen)
                                    for _ in range(orderings)])
                for layer, units in counts.items()}
    missing = set(counts) - set(orderings)
    if missing:
        raise ValueError(f"no ordering given for layers {sorted(missing)}")
    out = {}
    for layer, units in counts.items():
        o = torch.as_tensor(orderings[layer])
        if o.is_floating_point() or o.dtype == torch.bool:
            raise TypeError(f"orderings[{layer!r}] must hold integer unit indices, got dtype "
                            f"{o.dtype}")
        o = o.to(torch.int64)
        o = o[None] if o.ndim == 1 else o
        if o.ndim != 2 or o.shape[1] != units or bool(
                (o.sort(dim=1).values != torch.arange(units)).any()):
            raise ValueError(f"orderings[{layer!r}] must be permutations of {units} units")
        out[layer] = o
    return out


def noise_curve(model: nn.Module, inputs: torch.Tensor, labels: ArrayLike,
                layers: Sequence[str], stds: Mapping[str, torch.Tensor], *,
                scales: Sequence[float] = tuple(np.logspace(-1, 1, 9)), repeats: int = 3,
                measure: str = "accuracy", seed: int = 0, batch_size: int = 256,
                mask_chunk: int = 16, strategy: str = "auto") -> Curve:
    """Noise curve (Morcos et al. 2018): add ``N(0, (s · std_u)²)`` to every unit ``u`` of
    ``layers`` at once, ``std_u`` the unit's empirical std over the training set (``stds``,
    see :func:`unit_statistics`), for log-spaced scales ``s``; ``repeats`` noise draws
    (seeded). AUC: trapezoid over ``log10 s`` divided by the log range.
    """
    check_choice(measure, "measure", MEASURES)
    inputs, y = _inputs_labels(inputs, labels)
    sc = as_tensor(list(scales), "scales", ndim=1, dtype=torch.float64).numpy()
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    counts = unit_counts(model, layers, inputs)
    interventions = {}
    for layer, units in counts.items():
        std = torch.as_tensor(stds[layer], dtype=torch.float32).reshape(-1)
        if std.shape[0] != units:
            raise ValueError(f"stds[{layer!r}] has {std.shape[0]} values, layer has {units}")
        scale = torch.tensor(np.tile(sc, repeats), dtype=torch.float32)[:, None]
        interventions[layer] = Intervention(units, noise_std=scale * std[None])
    logits = _predictions(model, inputs, batch_size)
    _check_classes(y, logits)
    reference = logits.argmax(-1)
    gen = torch.Generator().manual_seed(seed)
    outputs = intervened_outputs(model, inputs, interventions, batch_size=batch_size,
                                 mask_chunk=mask_chunk, generator=gen, strategy=strategy)
    values = _score(outputs, y, reference, measure).numpy().reshape(repeats, len(sc))
    return _curve(sc, values, reference, y, measure, "log10 scale")


def single_unit_importance(model: nn.Module, inputs: torch.Tensor, labels: ArrayLike,
                           layer: str, *, fill: torch.Tensor | None = None,
                           batch_size: int = 256, mask_chunk: int = 32,
                           strategy: str = "auto") -> torch.Tensor:
    """Importance of each unit of ``layer``: the increase of the mean cross-entropy loss on
    ``(inputs, labels)`` when that unit alone is clamped to 0 (or ``fill``). Morcos et al.
    2018, section 3.4. Returns a ``(units,)`` float64 tensor."""
    inputs, y = _inputs_labels(inputs, labels)
    logits = _predictions(model, inputs, batch_size)
    _check_classes(y, logits)
    units = unit_counts(model, [layer], inputs)[layer]
    keep = 1.0 - torch.eye(units)
    outputs = intervened_outputs(model, inputs, {layer: Intervention(units, keep=keep,
                                                                     fill=fill)},
                                 batch_size=batch_size, mask_chunk=mask_chunk,
                                 strategy=strategy)
    intact = F.cross_entropy(logits.double(), y)
    losses = torch.stack([F.cross_entropy(o.double(), y) for o in outputs])
    return losses - intact


def incoming_l1_norm(module: nn.Module) -> torch.Tensor:
    """L1 norm of each output unit's incoming weights (a conv filter or a row of a linear
    layer's weight): ``Σ |W[u, ...]|``. Morcos et al. 2018 (SD-15)."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim < 2:
        raise ValueError(f"{type(module).__name__} has no weight matrix or filter bank")
    return weight.detach().abs().flatten(1).sum(1).double()


def random_sharpness(model: nn.Module, inputs: torch.Tensor, labels: ArrayLike, *,
                     deviation: float = 0.1, draws: int = 5, epsilon: float = 1e-3,
                     max_sigma: float = 2.0, iterations: int = 20, kernels_only: bool = False,
                     seed: int = 0, batch_size: int = 512) -> float:
    """Magnitude-aware random-perturbation sharpness (Jiang et al. 2020, "1/σ′").

    Returns ``σ′``: the largest ``σ`` (by bisection on ``[0, max_sigma]``) such that
    perturbing every weight ``w`` (only multi-dimensional kernels if ``kernels_only``) by
    ``N(0, (σ·|w| + ε)²)`` raises the mean training cross-entropy on ``(inputs, labels)`` by at
    most ``deviation``, averaged over ``draws`` seeded draws. Larger ``σ′`` means a flatter
    minimum; the generalization measure is ``1/σ′²``. The model itself is not modified.
    """
    check_positive(deviation, "deviation")
    check_positive(max_sigma, "max_sigma")
    inputs, y = _inputs_labels(inputs, labels)
    work = copy.deepcopy(model)
    params = [p for p in work.parameters() if not kernels_only or p.ndim > 1]
    if not params:
        raise ValueError("the model has no parameters to perturb")
    originals = [p.detach().clone() for p in params]

    def loss() -> float:
        return float(F.cross_entropy(_predictions(work, inputs, batch_size).double(), y))

    base = loss()
    gen = torch.Generator().manual_seed(seed)
    lo, hi = 0.0, max_sigma
    with torch.no_grad():
        for _ in range(iterations):
            sigma = (lo + hi) / 2
            increase = 0.0
            for _ in range(draws):
                for p, w in zip(params, originals, strict=True):
                    eps = torch.randn(w.shape, generator=gen).to(w.device, w.dtype)
                    p.copy_(w + eps * (sigma * w.abs() + epsilon))
                increase += loss() - base
            if increase / draws > deviation:
                hi = sigma
            else:
                lo = sigma
    return (lo + hi) / 2
