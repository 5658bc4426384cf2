"""A finished, verified run as claims read it: its spec, data, history, final model,
checkpoints in training order, and results derived from it, cached beside the store's entries
with a checksum and the digest of the code that computed them."""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file
from torch import nn

import netclaims
from netclaims._io import CorruptFileError, load_checked, save_checked
from netclaims.spec import RunSpec
from netclaims.train import checkpoint_name, one_cpu_thread


class Run:
    """A finished, verified run: its spec, history, final model and checkpoints."""

    def __init__(self, path: Path, spec: RunSpec, manifest: dict[str, Any],
                 data_root: str | None = None, *, fresh: bool = False) -> None:
        self.path = path
        self.spec = spec
        self.manifest = manifest
        self.data_root = data_root
        self.fresh = fresh
        """Whether the call that returned this run trained it (False: read from disk)."""

    def __repr__(self) -> str:
        return f"Run({self.spec.label}, key={self.spec.key})"

    @cached_property
    def data(self) -> netclaims.data.Dataset:
        """The dataset the run was trained on (labels as trained: grouped, corrupted)."""
        return self.spec.load_data(self.data_root)

    @cached_property
    def history(self) -> pd.DataFrame:
        """History of the evaluated epochs (every epoch, or those the spec's ``evaluate``
        names): ``epoch, step, lr, train_loss, train_acc, test_loss, test_acc, seconds``
        (epoch 0 = initialization; ``seconds`` of training since the previous row)."""
        return pd.DataFrame(json.loads((self.path / "history.json").read_text()))

    def _load(self, weights: Path) -> nn.Module:
        model = self.spec.build_model(self.data)
        model.load_state_dict(load_file(str(weights)))
        return model.eval()

    @property
    def model(self) -> nn.Module:
        """The final model, freshly loaded, in eval mode, on the CPU."""
        return self._load(self.path / "model.safetensors")

    @property
    def checkpoints(self) -> list[str]:
        """Saved checkpoints in training order: ``epoch_0000``, ``step_0000050``, …"""
        return [name for name, _ in self.timeline]

    @property
    def timeline(self) -> list[tuple[str, float]]:
        """Saved checkpoints in training order with the epoch each was taken at, fractional
        inside an epoch (``step_0000005`` of a 10-step epoch is 0.5)."""
        history = self.history
        per_epoch = max(1, (history["step"].diff() / history["epoch"].diff()).iloc[1:].max()
                        if len(history) > 1 else 1)

        def epoch_of(name: str) -> float:
            kind, number = name.split("_")
            return float(number) if kind == "epoch" else int(number) / per_epoch

        names = [p.stem for p in (self.path / "checkpoints").glob("*.safetensors")]
        return sorted(((n, epoch_of(n)) for n in names), key=lambda item: (item[1], item[0]))

    def checkpoint_named(self, name: str) -> nn.Module:
        """The model saved as checkpoint ``name`` (an entry of :attr:`checkpoints`)."""
        kind, _, number = name.partition("_")
        if kind not in ("epoch", "step") or not number.isdigit():
            raise KeyError(f"{name!r} is not a checkpoint name such as epoch_0003 or "
                           f"step_0000050")
        return self.checkpoint(**{kind: int(number)})

    def derived(self, name: str, params: Mapping[str, Any],
                compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Tensors computed from this run (an ablation curve, unit importances), cached on
        disk beside the store's entries under ``derived/<run key>/``. The cache key covers
        ``name``, ``params`` and a hash of netclaims' own source, so a change of code
        recomputes instead of reusing old numbers; an unreadable file is recomputed.
        ``compute`` runs on one CPU thread, as training does, so a result is the same
        whichever process computed it."""
        digest = hashlib.sha256(json.dumps({"name": name, "params": params,
                                            "code": code_digest()}, sort_keys=True,
                                           default=repr).encode()).hexdigest()[:20]
        folder = self.path.parent.parent / "derived" / self.spec.key
        path = folder / f"{name}-{digest}.safetensors"
        try:
            return load_checked(path)[0]
        except FileNotFoundError:
            pass
        except CorruptFileError as err:
            warnings.warn(f"derived result {path} is damaged ({err}); it is computed again",
                          stacklevel=2)
            path.unlink(missing_ok=True)
        with one_cpu_thread():
            tensors = compute()
        if not isinstance(tensors, dict) or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()):
            raise TypeError(f"derived result {name!r} must be a dict of tensors")
        folder.mkdir(parents=True, exist_ok=True)
        save_checked(path, tensors, {CODE_KEY: code_digest()})
        return tensors

    def checkpoint(self, epoch: int | None = None, *, step: int | None = None) -> nn.Module:
        """The model saved at ``epoch`` (0 = initialization) or optimizer ``step``."""
        name = checkpoint_name(epoch=epoch, step=step)
        path = self.path / "checkpoints" / f"{name}.safetensors"
        if not path.exists():
            raise KeyError(f"{self} has no checkpoint {name}; it has {self.checkpoints}")
        return self._load(path)


CODE_KEY = "netclaims_code"
"""Metadata of a derived result: the :func:`code_digest` of the netclaims that computed it."""


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """Hash of every source file of the netclaims package."""
    digest = hashlib.sha256()
    for path in sorted(Path(netclaims.__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()
