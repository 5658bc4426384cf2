"""Training-time augmentation of a batch, seeded by a generator."""

from __future__ import annotations

import torch
from torch.nn import functional as F

AUGMENTATIONS = ("shift", "crop_flip")


def _shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Shift each sequence by up to ``max_shift`` positions, filling with zeros."""
    n, length = x.shape[0], x.shape[-1]
    padded = F.pad(x, (max_shift, max_shift))
    starts = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    index = starts[:, None] + torch.arange(length)[None]
    index = index.view(n, *([1] * (x.ndim - 2)), length).expand_as(x)
    return padded.gather(-1, index)


def _crop_flip(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding by ``pad`` pixels, then a random horizontal flip."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None].expand(n, x.shape[1], h, w
                                                                          + 2 * pad)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :].expand(n, x.shape[1], h, w)
    out = out.gather(3, cols)
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def augment(x: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    """Augment a training batch: ``"shift"`` for sequences ``(n, c, length)`` (random shifts
    of up to 10% of the length), ``"crop_flip"`` for images ``(n, c, h, w)`` (pad 4 + random
    crop + horizontal flip)."""
    if kind == "shift":
        if x.ndim != 3:
            raise ValueError(f"shift augmentation needs (n, channels, length), got {x.ndim}-D")
        return _shift(x, max(1, x.shape[-1] // 10), gen)
    if kind == "crop_flip":
        if x.ndim != 4:
            raise ValueError(f"crop_flip augmentation needs (n, c, h, w), got {x.ndim}-D")
        return _crop_flip(x, 4 if x.shape[-1] >= 16 else 1, gen)
    raise ValueError(f"augmentation must be one of {list(AUGMENTATIONS)}, got {kind!r}")


def default_augmentation(input_shape: tuple[int, ...]) -> str | None:
    """The augmentation that fits inputs of this shape (None for plain vectors)."""
    return {2: "shift", 3: "crop_flip"}.get(len(input_shape))
