"""Atomic file writes: write beside the target under a temporary name, then rename, so a
reader never sees a half-written file."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the same folder to write; on success it replaces ``path``,
    on failure it is removed. Its name (``.NAME.PID.tmp``) matches no ``*.safetensors`` or
    ``*.json`` glob, so a file left by a killed writer is never taken for a real one."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, payload: Any) -> None:
    write_text(path, json.dumps(payload, indent=1, default=str))
