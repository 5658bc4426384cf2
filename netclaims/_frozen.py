"""Hashable, canonical forms of option values (spec fields must hash and compare equal
whatever order a mapping was given in)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def freeze(value: Any) -> Any:
    """Mappings -> sorted tuples of pairs, sequences -> tuples (hashable, picklable)."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    if isinstance(value, tuple) and all(isinstance(v, tuple) and len(v) == 2
                                        and isinstance(v[0], str) for v in value) and value:
        return {k: thaw(v) for k, v in value}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value
