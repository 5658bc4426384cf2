"""Training the members of a zoo together, as one batched model.

Runs that differ only in their seed (a condition's seeds: the common case in every suite)
train as an ensemble: their parameters and buffers are stacked (``torch.func``'s
``stack_module_state``) and one step applies each member's forward pass, loss and gradient
in a single ``vmap`` over ``functional_call``. On a GPU, where one small net leaves most of
the device idle, that is what fills it. Each member keeps what makes it a run of its own:
its initialization (from its seed, as a run trained alone), its data order in every epoch,
its batch-norm running statistics (stacked buffers, updated per member), its history,
checkpoints and final weights, which the store publishes as ordinary runs.

Members equal runs trained alone up to floating point (a batched matrix product sums in
another order) and dropout (one random stream draws every member's masks, where a run
trained alone draws its own): ``tests/test_ensemble.py`` bounds the difference. Not trained
together: runs with regularizers (they read activations of one model), step checkpoints,
data augmentation or early stopping (members would stop at different epochs). An ensemble
keeps no resumable state: an interrupted one trains again from the start.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F

from netclaims.spec import RunSpec, resolved
from netclaims.train import (
    Progress,
    TrainState,
    autocast,
    check_outputs,
    checkpoint_name,
    epoch_seed,
    evaluated_at,
    lr_at,
    one_cpu_thread,
    optimizer_for,
    record_history,
    resolve_device,
    save_weights,
)


def group_key(spec: RunSpec) -> str | None:
    """What members of one ensemble share (the spec without its seed), or None for a spec
    that trains alone (module docstring)."""
    if spec.regularizers or spec.checkpoint_steps or spec.augmentation \
            or spec.stop_train_loss is not None:
        return None
    return RunSpec.from_dict({**spec.to_dict(), "seed": 0}).key


def groups(specs: Sequence[RunSpec], minimum: int = 2) -> tuple[list[list[RunSpec]],
                                                                  list[RunSpec]]:
    """``specs`` split into ensembles of at least ``minimum`` members and the runs that train
    alone, in the order they come."""
    by_key: dict[str, list[RunSpec]] = {}
    for spec in specs:
        key = group_key(spec)
        if key is not None:
            by_key.setdefault(key, []).append(spec)
    ensembles = [members for members in by_key.values() if len(members) >= minimum]
    together = {spec.key for members in ensembles for spec in members}
    return ensembles, [spec for spec in specs if spec.key not in together]


def _members(specs: Sequence[RunSpec], data, dev: torch.device) -> list[nn.Module]:
    models = []
    for spec in specs:
        torch.manual_seed(spec.seed)  # as a run trained alone starts
        model = spec.build_model(data).to(dev)
        check_outputs(spec, model, data, dev)
        models.append(model)
    return models


def _unstack(models: list[nn.Module], params: dict[str, torch.Tensor],
             buffers: dict[str, torch.Tensor]) -> None:
    """Copy each member's slice of the stacked tensors into its own module."""
    with torch.no_grad():
        for i, model in enumerate(models):
            model.load_state_dict({**{k: v[i] for k, v in params.items()},
                                   **{k: v[i] for k, v in buffers.items()}})


def train_ensemble(specs: Sequence[RunSpec], workdirs: Sequence[Path], *,
                   device: str = "auto", data_root: str | None = None,
                   progress: Progress | None = None) -> list[TrainState]:
    """Train ``specs`` (one :func:`group_key`) together, writing each member's checkpoints
    and final weights into its ``workdirs`` entry as :func:`netclaims.train.train` does;
    return each member's state (history, epochs, seconds: the ensemble's time shared)."""
    keys = {group_key(s) for s in specs}
    if len(keys) != 1 or None in keys:
        raise ValueError("an ensemble's members must differ only in their seed, without "
                         "regularizers, step checkpoints, augmentation or early stopping")
    if len(workdirs) != len(specs):
        raise ValueError(f"{len(specs)} members but {len(workdirs)} work folders")
    dev = resolve_device(device)
    with one_cpu_thread() if dev.type == "cpu" else contextlib.nullcontext():
        return _train(list(specs), [Path(w) for w in workdirs], dev, data_root, progress)


def _train(specs: list[RunSpec], workdirs: list[Path], dev: torch.device,
           data_root: str | None, progress: Progress | None) -> list[TrainState]:
    first = specs[0]
    data = first.load_data(data_root)
    models = _members(specs, data, dev)
    states = [TrainState() for _ in specs]
    for workdir, model, state in zip(workdirs, models, states, strict=True):
        (workdir / "checkpoints").mkdir(parents=True, exist_ok=True)
        record_history(state, model, data, dev, lr=0.0)
        if 0 in first.checkpoint_epochs:
            save_weights(model, workdir / "checkpoints"
                         / f"{checkpoint_name(epoch=0)}.safetensors")
    params, buffers = stack_module_state(models)
    skeleton = copy.deepcopy(models[0]).to("meta")

    def loss_of(p: dict, b: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast(dev):
            logits = functional_call(skeleton, (p, b), (x,))
        return F.cross_entropy(logits.float(), y)

    losses = vmap(loss_of, randomness="different")
    opt = optimizer_for(first, params.values())
    x_train, y_train = data.x_train, data.y_train
    n, batch = x_train.shape[0], resolved(first.batch_size, "batch_size")
    epochs = resolved(first.epochs, "epochs")
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        lr = lr_at(first, epoch)
        for group in opt.param_groups:
            group["lr"] = lr
        torch.manual_seed(epoch_seed(first.seed, epoch))  # one stream for the dropout masks
        orders = torch.stack([torch.randperm(n, generator=torch.Generator().manual_seed(
            epoch_seed(spec.seed, epoch))) for spec in specs])
        skeleton.train()
        for start in range(0, n, batch):
            idx = orders[:, start:start + batch]
            loss = losses(params, buffers, x_train[idx].to(dev), y_train[idx].to(dev))
            if not bool(torch.isfinite(loss).all()):
                bad = [s.label for s, v in zip(specs, loss, strict=True)
                       if not bool(torch.isfinite(v))]
                raise FloatingPointError(f"{bad}: the training loss became non-finite at "
                                         f"epoch {epoch}, step {states[0].step + 1}")
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()  # each member's gradient is its own loss's
            opt.step()
            for state in states:
                state.step += 1
        seconds = (time.perf_counter() - started) / len(specs)
        evaluated = evaluated_at(first, epoch)  # checkpoint epochs included
        if evaluated:
            _unstack(models, params, buffers)
        for workdir, model, state in zip(workdirs, models, states, strict=True):
            state.epoch = epoch
            state.seconds += seconds
            state.unrecorded_seconds += seconds
            if evaluated:
                record_history(state, model, data, dev, lr=lr)
            if epoch in first.checkpoint_epochs:
                save_weights(model, workdir / "checkpoints"
                             / f"{checkpoint_name(epoch=epoch)}.safetensors")
        if progress is not None and evaluated:
            progress({"event": "epoch", "epoch": epoch, "epochs": epochs,
                      "label": f"{first.label} ×{len(specs)} seeds",
                      **states[0].history[-1]})
    _unstack(models, params, buffers)
    for workdir, model in zip(workdirs, models, strict=True):
        save_weights(model, workdir / "model.safetensors")
    return states
