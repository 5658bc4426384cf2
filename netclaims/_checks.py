"""Uniform argument validation: every public function turns its inputs into tensors here.

Each check raises ``ValueError`` (or ``TypeError`` for a wrong kind of object) whose message
names the argument and the problem, so that bad input never turns into a silent NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray | Sequence[float]


def as_tensor(
    x: ArrayLike,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    dtype: torch.dtype | None = None,
    min_rows: int = 1,
) -> torch.Tensor:
    """Return ``x`` as a finite floating-point tensor, checking its shape.

    Integer input is promoted to float64; floating input keeps its dtype unless ``dtype`` is
    given. NaN or infinite entries raise with their count and the first offending index.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
    elif isinstance(x, np.ndarray | list | tuple) or hasattr(x, "__array__"):
        t = torch.as_tensor(np.array(x))  # a copy: read-only arrays (pandas) stay untouched
    else:
        raise TypeError(f"{name} must be a tensor or an array, got {type(x).__name__}")
    if not (t.is_floating_point() or t.dtype in (torch.int64, torch.int32, torch.int16,
                                                 torch.int8, torch.uint8, torch.bool)):
        raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
    if not t.is_floating_point():
        t = t.to(torch.float64)
    if dtype is not None:
        t = t.to(dtype)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if t.ndim not in allowed:
            raise ValueError(
                f"{name} must have {' or '.join(map(str, allowed))} dimensions, "
                f"got shape {tuple(t.shape)}"
            )
    if t.ndim >= 1 and t.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {t.shape[0]}")
    check_finite(t, name)
    return t


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise if ``t`` holds NaN or infinite values, naming how many and where."""
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        first = tuple(int(i) for i in torch.nonzero(bad)[0])
        kind = "NaN" if bool(torch.isnan(t).any()) else "infinite"
        raise ValueError(
            f"{name} contains {int(bad.sum())} {kind} value(s) (first at index {first}); "
            "metrics refuse non-finite input instead of returning NaN"
        )


def as_labels(
    labels: ArrayLike, name: str = "labels", *, n: int | None = None,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Return integer class labels as a 1-D int64 tensor, checking range and length."""
    if isinstance(labels, torch.Tensor):
        t = labels.detach()
    elif isinstance(labels, np.ndarray | list | tuple) or hasattr(labels, "__array__"):
        t = torch.as_tensor(np.array(labels))
    else:
        raise TypeError(f"{name} must be a tensor or an array, got {type(labels).__name__}")
    if t.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {tuple(t.shape)}")
    if t.is_floating_point():
        check_finite(t, name)
        if not bool(torch.all(t == torch.round(t))):
            raise ValueError(f"{name} must be integer class indices, got non-integer values")
    elif t.dtype == torch.bool:
        raise TypeError(f"{name} must be integer class indices, got booleans")
    t = t.to(torch.int64)
    if n is not None and t.shape[0] != n:
        raise ValueError(f"{name} has {t.shape[0]} entries but the data has {n} samples")
    if t.numel() and int(t.min()) < 0:
        raise ValueError(f"{name} must be non-negative class indices, got {int(t.min())}")
    if num_classes is not None and t.numel() and int(t.max()) >= num_classes:
        raise ValueError(
            f"{name} contains class {int(t.max())} but num_classes={num_classes} "
            f"(valid labels are 0..{num_classes - 1})"
        )
    return t


def check_same_length(**arrays: torch.Tensor) -> int:
    """Raise unless every array has the same number of rows; return that number."""
    lengths = {k: int(v.shape[0]) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k} has {v}" for k, v in lengths.items())
        raise ValueError(f"sample counts differ: {desc}")
    return next(iter(lengths.values()))


def check_choice(value: object, name: str, choices: Sequence[object]) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def check_positive(value: float, name: str, *, allow_zero: bool = False) -> None:
    """Raise unless ``value`` is a finite number > 0 (or >= 0)."""
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
