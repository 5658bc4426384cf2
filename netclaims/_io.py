"""Atomic file writes (write beside the target under a temporary name, then rename, so a
reader never sees a half-written file) and tensor files that carry their own checksum."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file


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


class CorruptFileError(ValueError):
    """A file whose content does not match the checksum written with it."""


DIGEST_KEY = "netclaims_sha256"


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over each tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_checked(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                 metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` as safetensors, atomically, with the sha256 of their content in the
    file's metadata, so that :func:`load_checked` detects any changed byte."""
    plain = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(plain, str(tmp), metadata={**(metadata or {}),
                                             DIGEST_KEY: tensors_digest(plain)})


def load_checked(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a file written by :func:`save_checked`; raises
    :class:`CorruptFileError` when it cannot be read or its content does not match its
    checksum (``FileNotFoundError`` when it does not exist)."""
    if not Path(path).exists():
        raise FileNotFoundError(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except (OSError, SafetensorError, ValueError) as err:
        raise CorruptFileError(f"{Path(path).name} is unreadable ({err})") from err
    if metadata.get(DIGEST_KEY) != tensors_digest(tensors):
        raise CorruptFileError(f"{Path(path).name} does not match its checksum")
    return tensors, metadata
