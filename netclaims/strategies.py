"""Hypothesis strategies for property-testing metrics of representations.

Public so that users can property-test their own metrics the way netclaims tests its own::

    from hypothesis import given
    from netclaims import strategies as nst

    @given(nst.representations(), nst.orthogonal_matrices())
    def test_my_metric_is_rotation_invariant(x, q): ...

Every strategy draws a seed and builds its arrays with NumPy from it, so examples shrink
sensibly and stay well-conditioned (no accidental constant columns).
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st
from torch import nn

seeds = st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def labels(draw: st.DrawFn, n: int | None = None, num_classes: int | None = None,
           *, all_present: bool = True) -> np.ndarray:
    """Integer labels ``(n,)`` in ``0..num_classes-1``; with ``all_present`` every class
    occurs at least once."""
    classes = num_classes if num_classes is not None else draw(st.integers(2, 6))
    size = n if n is not None else draw(st.integers(max(classes, 4), 40))
    rng = np.random.default_rng(draw(seeds))
    y = rng.integers(0, classes, size=size)
    if all_present:
        if size < classes:
            raise ValueError("n must be >= num_classes when every class must be present")
        y[:classes] = rng.permutation(classes)
        rng.shuffle(y)
    return y


@st.composite
def activations(draw: st.DrawFn, n: int | None = None, units: int | None = None, *,
                nonnegative: bool = True, dead_fraction: float = 0.0) -> np.ndarray:
    """Unit activations ``(n, units)``, float64: rectified Gaussians (``nonnegative``) or
    Gaussians with per-unit scale and offset; a ``dead_fraction`` of units is all zero."""
    size = n if n is not None else draw(st.integers(4, 40))
    width = units if units is not None else draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(seeds))
    a = rng.normal(size=(size, width)) * rng.uniform(0.5, 3.0, size=width) \
        + rng.normal(size=width)
    if nonnegative:
        a = np.maximum(a, 0.0)
    dead = rng.random(width) < dead_fraction
    a[:, dead] = 0.0
    return a


@st.composite
def representations(draw: st.DrawFn, n: int | None = None, features: int | None = None,
                    *, dtype: type = np.float64) -> np.ndarray:
    """A representation ``(n, features)`` with full column variance: Gaussian features mixed
    by a random matrix, with random per-feature offsets."""
    size = n if n is not None else draw(st.integers(6, 40))
    width = features if features is not None else draw(st.integers(1, 10))
    rng = np.random.default_rng(draw(seeds))
    base = rng.normal(size=(size, width)) @ rng.normal(size=(width, width))
    base += rng.normal(size=(size, width)) * 0.1
    return (base + rng.normal(size=width) * 3).astype(dtype)


@st.composite
def orthogonal_matrices(draw: st.DrawFn, d: int | None = None) -> np.ndarray:
    """A Haar-random orthogonal ``(d, d)`` matrix (QR of a Gaussian, signs fixed)."""
    size = d if d is not None else draw(st.integers(1, 10))
    rng = np.random.default_rng(draw(seeds))
    q, r = np.linalg.qr(rng.normal(size=(size, size)))
    return q * np.sign(np.diag(r))


@st.composite
def small_models(draw: st.DrawFn, input_dim: int | None = None, num_classes: int | None = None,
                 *, depth: int | None = None) -> nn.Module:
    """A small seeded MLP (``Linear``/``ReLU`` stack, float32, eval mode) whose ReLU modules
    are the unit layers ``select_layers(model, "auto")`` finds."""
    d_in = input_dim if input_dim is not None else draw(st.integers(2, 12))
    classes = num_classes if num_classes is not None else draw(st.integers(2, 5))
    layers_n = depth if depth is not None else draw(st.integers(1, 3))
    widths = [draw(st.integers(2, 16)) for _ in range(layers_n)]
    gen = torch.Generator().manual_seed(draw(seeds))
    modules: list[nn.Module] = []
    prev = d_in
    for w in widths:
        modules += [nn.Linear(prev, w), nn.ReLU()]
        prev = w
    modules.append(nn.Linear(prev, classes))
    model = nn.Sequential(*modules)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / max(1, p.shape[-1]) ** 0.5))
    return model.eval()
