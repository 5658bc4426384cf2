"""Prunability, redundancy and width gain (Casper et al. 2021, "Frivolous units"), and the
paper's three exact constructions of a wide net computing a narrow net's function."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import torch
from torch import nn

from netclaims._checks import ArrayLike, as_tensor, check_choice, check_positive
from netclaims.units import positions_as_samples


def prunable_fraction(fractions: ArrayLike, unchanged: ArrayLike, *,
                      tolerance: float = 0.2) -> float:
    """Fraction of units that can be randomly ablated while at most ``tolerance`` of the
    predictions change (Casper et al. 2021; ``xboix/frivolous_dnns``).

    ``unchanged[r]`` is the fraction of predictions unchanged when ``fractions[r]`` of the
    units are knocked out. With threshold ``t = 1 - tolerance``, take the first ``r`` with
    ``unchanged[r] >= t > unchanged[r + 1]`` and interpolate linearly between
    ``(x_r, y_r)`` and ``(x_{r+1}, y_{r+1})``; if the curve never drops below ``t`` the
    fraction is 1.0 (and 0.0 if it starts below). A 2-D ``unchanged`` holds one curve per
    random draw; the best (largest) fraction is returned.
    """
    check_positive(tolerance, "tolerance")
    x = as_tensor(fractions, "fractions", ndim=1, dtype=torch.float64).numpy()
    y = as_tensor(unchanged, "unchanged", ndim=(1, 2), dtype=torch.float64).numpy()
    y = y[None] if y.ndim == 1 else y
    if y.shape[1] != x.size:
        raise ValueError(f"unchanged has {y.shape[1]} points per curve, fractions has {x.size}")
    if np.any(np.diff(x) <= 0):
        raise ValueError("fractions must be strictly increasing")
    if x.min() < 0 or x.max() > 1 or y.min() < 0 or y.max() > 1:
        raise ValueError(f"fractions and unchanged are shares in [0, 1], got fractions "
                         f"{x.min():g}..{x.max():g}, unchanged {y.min():g}..{y.max():g}")
    threshold = 1.0 - tolerance
    best = 0.0
    for curve in y:
        if curve[0] < threshold:
            value = 0.0
        else:
            below = np.nonzero(curve < threshold)[0]
            if below.size == 0:
                value = 1.0
            else:
                r = int(below[0]) - 1
                x0, x1, y0, y1 = x[r], x[r + 1], curve[r], curve[r + 1]
                value = float(x0 + (y0 - threshold) * (x1 - x0) / (y0 - y1))
        best = max(best, value)
    return best


def redundant_fraction(activations: ArrayLike, *, tolerance: float = 0.05,
                       max_rows: int = 50_000, seed: int = 0) -> float:
    """Compressibility of one layer: the fraction of its units that are redundant.

    Activations are ``(samples, units)``, or ``(samples, channels, *space)`` for a conv layer,
    whose positions then count as samples and channels as units; at most ``max_rows`` rows
    are kept (a seeded random subset). PCA via the eigenvalues of the float64 covariance:
    the redundant units are the smallest eigenvalues whose cumulative share of the total
    variance stays ``<= tolerance`` (counted strictly: the authors' code also counts the
    crossing eigenvalue). Zero total variance: every unit is redundant (1.0).
    """
    check_positive(tolerance, "tolerance")
    a = as_tensor(activations, "activations", ndim=tuple(range(2, 6)), min_rows=2)
    a = positions_as_samples(a).to(torch.float64)
    if a.shape[0] > max_rows:
        gen = torch.Generator().manual_seed(seed)
        a = a[torch.randperm(a.shape[0], generator=gen)[:max_rows]]
    a = a - a.mean(0, keepdim=True)
    cov = a.T @ a / (a.shape[0] - 1)
    eig = torch.linalg.eigvalsh(cov)
    total = float(eig.sum())
    units = a.shape[1]
    if total <= 0:
        return 1.0
    share = torch.cumsum(eig, 0) / total
    return int((share <= tolerance).sum()) / units


def width_gain(widths: Sequence[float], values: Sequence[float]) -> float:
    """Gain ``g``: the mean over consecutive doublings of width of ``value(2k) / value(k)``
    (Casper et al. 2021). Pairs where either value is 0 are skipped; ``g > 2`` means the
    quantity outpaces width.

    Widths may also step by another common ratio ``r`` (e.g. quadruplings, ¼ → 1 → 4, for a
    cheaper series); each step's ratio is then taken per doubling,
    ``(value(r·k) / value(k)) ** (1 / log2 r)``, which is the definition above when ``r = 2``.
    """
    w = as_tensor(list(widths), "widths", ndim=1, dtype=torch.float64).numpy()
    v = as_tensor(list(values), "values", ndim=1, dtype=torch.float64).numpy()
    if w.size != v.size or w.size < 2:
        raise ValueError("widths and values need the same length >= 2")
    if w.min() <= 0 or v.min() < 0:
        raise ValueError(f"widths must be > 0 and values >= 0 (counts or shares of units), "
                         f"got widths {w.tolist()}, values {v.tolist()}")
    order = np.argsort(w)
    w, v = w[order], v[order]
    steps = w[1:] / w[:-1]
    if not (np.allclose(steps, steps[0]) and steps[0] > 1):
        raise ValueError(f"widths must grow by one common ratio > 1 (e.g. doublings), "
                         f"got {w.tolist()}")
    per_doubling = 1.0 / np.log2(steps[0])
    ratios = [(b / a) ** per_doubling for a, b in pairwise(v) if a != 0 and b != 0]
    if not ratios:
        raise ValueError("every consecutive pair has a zero value: the gain is undefined")
    return float(np.mean(ratios))


CONSTRUCTIONS = ("duplicate", "orthogonal", "balanced")


def widen_last_hidden(hidden: nn.Linear, output: nn.Linear, construction: str, *,
                      balance: float = 100.0, inputs: torch.Tensor | None = None,
                      seed: int = 0) -> tuple[nn.Linear, nn.Linear]:
    """Double the last hidden layer of a narrow net so the wide net computes exactly the same
    function (Casper et al. 2021, section 3). ``hidden`` maps to the units ``u`` (a ReLU is
    assumed between the two layers), ``output`` holds ``θ``.

    * ``"duplicate"``: units ``[u, u]``, outgoing ``[θ, 0]`` — more prunable and more
      redundant;
    * ``"orthogonal"``: units ``[u, v]`` with incoming weights of ``v`` orthogonal to those of
      ``u`` and to each other, outgoing ``[θ, 0]`` — more prunable, not more redundant. The
      paper asks for activities orthogonal across the data, which a ReLU layer cannot promise;
      orthogonal incoming weights make ``v`` linearly independent of ``u``. When the layer
      has fewer than ``2 × units`` inputs there is no orthogonal complement and ``v`` gets
      seeded Gaussian incoming weights of the same norms (independent almost surely). Given
      ``inputs`` (samples of the layer's input), each extra unit's bias is set to minus the
      median of its pre-activation over them, so it is active on half the data: neither
      dead (constant, hence redundant) nor linear; without, the biases are ``|b|``;
    * ``"balanced"``: units ``[u, u]``, outgoing ``½[θ + b, θ - b]`` — more redundant, not
      prunable for large ``b``. ``b`` is ``balance`` times a seeded standard-normal value per
      output: a constant shared by every output would shift all logits alike and never change
      a prediction, so it must differ across outputs.
    """
    check_choice(construction, "construction", CONSTRUCTIONS)
    if output.in_features != hidden.out_features:
        raise ValueError(f"output takes {output.in_features} inputs but hidden has "
                         f"{hidden.out_features} units")
    w1, w2 = hidden.weight.detach(), output.weight.detach()
    b1 = hidden.bias.detach() if hidden.bias is not None else torch.zeros(w1.shape[0])
    units = w1.shape[0]
    if construction == "orthogonal":
        gen = torch.Generator().manual_seed(seed)
        draws = torch.randn(w1.shape[1], units, generator=gen, dtype=torch.float64)
        if 2 * units <= w1.shape[1]:
            q, _ = torch.linalg.qr(torch.cat([w1.T.double(), draws], dim=1))
            directions = q[:, units:2 * units].T
        else:
            directions = draws.T / draws.T.norm(dim=1, keepdim=True)
        extra = (directions * w1.double().norm(dim=1, keepdim=True)).to(w1.dtype)
        extra_bias = b1.abs()
        if inputs is not None:
            x = as_tensor(inputs, "inputs", ndim=2, min_rows=1)
            if x.shape[1] != w1.shape[1]:
                raise ValueError(f"inputs have {x.shape[1]} features, the layer takes "
                                 f"{w1.shape[1]}")
            extra_bias = -(x.to(extra.dtype) @ extra.T).median(dim=0).values.to(b1.dtype)
        new_w1, new_b1 = torch.cat([w1, extra]), torch.cat([b1, extra_bias])
    else:
        new_w1, new_b1 = torch.cat([w1, w1]), torch.cat([b1, b1])
    if construction == "balanced":
        gen = torch.Generator().manual_seed(seed)
        b = balance * torch.randn(w2.shape[0], 1, generator=gen, dtype=torch.float64)
        b = b.to(w2.dtype)
        new_w2 = torch.cat([(w2 + b) / 2, (w2 - b) / 2], dim=1)
    else:
        new_w2 = torch.cat([w2, torch.zeros_like(w2)], dim=1)
    wide_hidden = nn.Linear(w1.shape[1], 2 * units).to(w1.dtype)
    wide_output = nn.Linear(2 * units, w2.shape[0], bias=output.bias is not None).to(w2.dtype)
    with torch.no_grad():
        wide_hidden.weight.copy_(new_w1)
        wide_hidden.bias.copy_(new_b1)
        wide_output.weight.copy_(new_w2)
        if output.bias is not None:
            wide_output.bias.copy_(output.bias)
    return wide_hidden, wide_output
