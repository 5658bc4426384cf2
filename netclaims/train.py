"""The trainer: the loop, evaluations and checkpoints, and the resumable state of a run
(a :class:`~netclaims.spec.RunSpec`). :func:`train` is deterministic on CPU for a given spec:
the data order, augmentation and dropout of epoch ``e`` are seeded from ``(seed, e)``, so a
run resumed at an epoch boundary ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F

from netclaims import data as datasets
from netclaims._io import (
    CorruptFileError,
    atomic_path,
    load_checked,
    save_checked,
    write_json,
)
from netclaims.data.augment import augment, default_augmentation
from netclaims.numerics import pin_cpu_numerics
from netclaims.regularizers import REGULARIZERS, RegularizerContext
from netclaims.spec import RunSpec, resolved
from netclaims.units import Recorder

pin_cpu_numerics()  # before any kernel runs: training is what must be reproducible


# --------------------------------------------------------------------------- training


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU raises."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA device is available")
    return torch.device(device)


def epoch_seed(seed: int, epoch: int) -> int:
    return int(hashlib.sha256(f"{seed}:{epoch}".encode()).hexdigest()[:15], 16)


def lr_at(spec: RunSpec, epoch: int) -> float:
    """Learning rate used during ``epoch`` (1-based)."""
    lr = resolved(spec.lr, "lr")
    if spec.lr_schedule == "step":
        return lr * spec.lr_gamma ** sum(epoch > m for m in spec.lr_milestones)
    if spec.lr_schedule == "cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1)
                                        / max(1, resolved(spec.epochs, "epochs"))))
    return lr


def optimizer_for(spec: RunSpec, params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    """The spec's optimizer over ``params`` (a model's, or an ensemble's stacked ones)."""
    lr = resolved(spec.lr, "lr")
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=spec.weight_decay)
    momentum = spec.momentum if spec.optimizer == "momentum" else 0.0
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=spec.weight_decay)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
             batch_size: int = 1000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (eval mode) on ``(x, y)``."""
    was_training = model.training
    model.eval()
    loss = correct = 0.0
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
        with autocast(device):
            logits = model(xb).float()
        loss += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += float((logits.argmax(1) == yb).sum())
    model.train(was_training)
    return loss / x.shape[0], correct / x.shape[0]


def autocast(device: torch.device) -> Any:
    """bfloat16 mixed precision on CUDA; nothing on CPU (keeps CPU runs exact)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def evaluated_at(spec: RunSpec, epoch: int) -> bool:
    """Whether the history records ``epoch`` (1-based; the initialization always is): every
    epoch, or with ``evaluate="checkpoints"`` the checkpoint epochs and the last."""
    return spec.evaluate == "every_epoch" or epoch in spec.checkpoint_epochs \
        or epoch == spec.epochs


def checkpoint_name(epoch: int | None = None, step: int | None = None) -> str:
    if (epoch is None) == (step is None):
        raise ValueError("name a checkpoint by exactly one of epoch or step")
    return f"epoch_{epoch:04d}" if epoch is not None else f"step_{step:07d}"


@dataclass
class TrainState:
    """The resumable state after an epoch, kept in the run's work directory."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    stopped: bool = False
    seconds: float = 0.0
    unrecorded_seconds: float = 0.0
    """Training time of the epochs since the last history row."""


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, meta = {}, {"param_groups": sd["param_groups"], "state": {}}
    for index, state in sd["state"].items():
        meta["state"][str(index)] = {}
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                meta["state"][str(index)][name] = value
    return tensors, meta


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                       meta: dict, device: torch.device) -> None:
    state: dict[int, dict[str, Any]] = {}
    for index, plain in meta["state"].items():
        state[int(index)] = dict(plain)
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value if name == "step" else value.to(device)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _save_state(workdir: Path, model: nn.Module, opt: torch.optim.Optimizer,
                state: TrainState) -> None:
    """Weights and optimizer state in safetensors (with their checksum), the rest in JSON;
    the JSON names the tensor file and is replaced last, so a kill at any moment leaves a
    consistent state."""
    opt_tensors, opt_meta = _optimizer_tensors(opt)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    name = f"state_{state.epoch:04d}.safetensors"
    save_checked(workdir / name, {**tensors, **opt_tensors})
    write_json(workdir / "state.json", {
        "tensors": name, "optimizer": opt_meta, "epoch": state.epoch, "step": state.step,
        "history": state.history, "stopped": state.stopped, "seconds": state.seconds,
        "unrecorded_seconds": state.unrecorded_seconds})
    for old in workdir.glob("state_*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)


def _load_state(workdir: Path, model: nn.Module, opt: torch.optim.Optimizer,
                device: torch.device) -> TrainState | None:
    meta_path = workdir / "state.json"
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    if not (isinstance(meta, dict) and isinstance(meta.get("epoch"), int)
            and isinstance(meta.get("step"), int) and isinstance(meta.get("history"), list)
            and isinstance(meta.get("tensors"), str) and "/" not in meta["tensors"]):
        raise ValueError("state.json does not hold an epoch, step, history and tensor file")
    tensors, _ = load_checked(workdir / meta["tensors"])
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    _restore_optimizer(opt, tensors, meta["optimizer"], device)
    return TrainState(epoch=meta["epoch"], step=meta["step"], history=meta["history"],
                      stopped=meta["stopped"], seconds=meta["seconds"],
                      unrecorded_seconds=meta.get("unrecorded_seconds", 0.0))


_DAMAGED_STATE = (ValueError, KeyError, TypeError, AttributeError, IndexError, OSError,
                  RuntimeError, SafetensorError, CorruptFileError)
"""What reading a garbled, truncated or foreign resumable state raises."""


def _start(spec: RunSpec, data: datasets.Dataset, dev: torch.device, workdir: Path,
           ) -> tuple[nn.Module, torch.optim.Optimizer, TrainState | None]:
    """The model and optimizer, initialized from the spec's seed or resumed from the saved
    state in ``workdir``. A state that cannot be read back whole (garbled JSON, a truncated
    or altered tensor file) is reported, removed, and training starts afresh."""
    while True:
        torch.manual_seed(spec.seed)
        model = spec.build_model(data).to(dev)
        opt = optimizer_for(spec, model.parameters())
        try:
            return model, opt, _load_state(workdir, model, opt, dev)
        except _DAMAGED_STATE as err:
            warnings.warn(f"the resumable state of {spec.label} in {workdir} is damaged "
                          f"({type(err).__name__}: {err}); its training starts afresh",
                          stacklevel=4)
            for path in [workdir / "state.json", *workdir.glob("state_*.safetensors")]:
                path.unlink(missing_ok=True)


def check_outputs(spec: RunSpec, model: nn.Module, data: datasets.Dataset,
                   dev: torch.device) -> None:
    """Raise unless the model gives one logit per class of the task (too few would fail
    deep inside the loss; too many would train a net with classes that never occur)."""
    was_training = model.training
    with torch.no_grad():
        out = model.eval()(data.x_train[:2].to(dev))
    model.train(was_training)
    if out.ndim != 2 or out.shape[1] != data.num_classes:
        raise ValueError(f"{spec.label}: the model {spec.model!r} outputs shape "
                         f"{tuple(out.shape)} for a batch of 2, but task {data.name!r} has "
                         f"{data.num_classes} classes: its last layer must give "
                         f"(batch, {data.num_classes}) logits (the factory receives "
                         "num_classes)")


def save_weights(model: nn.Module, path: Path) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  str(tmp))


Progress = Callable[[dict[str, Any]], None]


STATE_EVERY_SECONDS = 30.0
"""Default training time between two saves of the resumable state."""


def train(spec: RunSpec, workdir: Path, *, device: str = "auto", data_root: str | None = None,
          progress: Progress | None = None,
          state_every: float = STATE_EVERY_SECONDS) -> TrainState:
    """Train ``spec``, keeping resumable state, checkpoints and the final weights in
    ``workdir`` (``checkpoints/*.safetensors``, ``model.safetensors``). If ``workdir`` holds
    the state of an interrupted run, training resumes from its last saved epoch.

    The resumable state (weights, optimizer, history) is saved after the first epoch by which
    ``state_every`` seconds of training have passed since the previous save (0: after every
    epoch): an interruption loses about that much training, and a small net does not spend a
    tenth of its time writing state. Where training resumes from does not change the result: every
    epoch draws its randomness from ``(seed, epoch)``.

    On the CPU a run trains on one thread: its floating-point sums then happen in one order
    whatever the machine's core count or the executor, so a run is the same trained inline
    or in a worker (parallelism comes from training several runs at once)."""
    dev = resolve_device(device)
    with one_cpu_thread() if dev.type == "cpu" else contextlib.nullcontext():
        return _train(spec, Path(workdir), dev, data_root, progress, state_every)


@contextlib.contextmanager
def one_cpu_thread() -> Iterator[None]:
    """Run PyTorch's CPU kernels on one thread inside the block (restored after): sums then
    happen in one order whatever the core count or the process, for training and for the
    results derived from stored runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _train(spec: RunSpec, workdir: Path, dev: torch.device, data_root: str | None,
           progress: Progress | None, state_every: float) -> TrainState:
    if not state_every >= 0:
        raise ValueError(f"state_every must be >= 0 seconds, got {state_every}")
    (workdir / "checkpoints").mkdir(parents=True, exist_ok=True)
    data = spec.load_data(data_root)
    model, opt, state = _start(spec, data, dev, workdir)
    check_outputs(spec, model, data, dev)
    kind = default_augmentation(data.input_shape) if spec.augmentation == "auto" \
        else spec.augmentation
    reg_layers = sorted({layer for r in spec.regularizers
                         for layer in REGULARIZERS[r.name][0](model, r.options)})
    x_train, y_train = data.x_train, data.y_train
    if state is None:
        state = TrainState()
        record_history(state, model, data, dev, lr=0.0)
        if 0 in spec.checkpoint_epochs:
            save_weights(model, workdir / "checkpoints" / f"{checkpoint_name(epoch=0)}.safetensors")
    n = x_train.shape[0]
    unsaved_seconds = 0.0
    epochs, batch_size = resolved(spec.epochs, "epochs"), resolved(spec.batch_size, "batch_size")
    while state.epoch < epochs and not state.stopped:
        epoch = state.epoch + 1
        started = time.perf_counter()
        lr = lr_at(spec, epoch)
        for group in opt.param_groups:
            group["lr"] = lr
        torch.manual_seed(epoch_seed(spec.seed, epoch))
        gen = torch.Generator().manual_seed(epoch_seed(spec.seed, epoch))
        order = torch.randperm(n, generator=gen)
        active = [r for r in spec.regularizers if r.active(epoch)]
        # the regularizers read the unit layers' outputs, with their gradients
        capture = Recorder(model, reg_layers, to_cpu=False, keep=False, detach=False) \
            if active else None
        model.train()
        with capture if capture is not None else contextlib.nullcontext():
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                xb, yb = x_train[idx], y_train[idx]
                if kind is not None:
                    xb = augment(xb, kind, gen)
                xb, yb = xb.to(dev), yb.to(dev)
                with autocast(dev):
                    logits = model(xb)
                loss = F.cross_entropy(logits.float(), yb)
                outputs = capture.pop_batch() if capture is not None else {}
                for reg in active:
                    ctx = RegularizerContext(model, xb, yb, logits, outputs, epoch)
                    loss = loss + reg.alpha * REGULARIZERS[reg.name][1](ctx, reg.options)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{spec.label}: the training loss became "
                                             f"{float(loss)} at epoch {epoch}, step {state.step}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                state.step += 1
                if state.step in spec.checkpoint_steps:
                    save_weights(model, workdir / "checkpoints"
                                 / f"{checkpoint_name(step=state.step)}.safetensors")
        state.epoch = epoch
        seconds = time.perf_counter() - started
        state.seconds += seconds
        state.unrecorded_seconds += seconds
        unsaved_seconds += seconds
        evaluated = evaluated_at(spec, epoch)
        if evaluated:
            record_history(state, model, data, dev, lr=lr)
        if epoch in spec.checkpoint_epochs:
            save_weights(model, workdir / "checkpoints"
                         / f"{checkpoint_name(epoch=epoch)}.safetensors")
        if spec.stop_train_loss is not None and \
                state.history[-1]["train_loss"] <= spec.stop_train_loss:
            state.stopped = True
        finished = state.stopped or epoch == spec.epochs
        if unsaved_seconds >= state_every and not finished:
            _save_state(workdir, model, opt, state)
            unsaved_seconds = 0.0
        if progress is not None and evaluated:
            progress({"event": "epoch", "epoch": epoch, "epochs": spec.epochs,
                      "label": spec.label, **state.history[-1]})
    save_weights(model, workdir / "model.safetensors")
    return state


def record_history(state: TrainState, model: nn.Module, data: datasets.Dataset,
                   dev: torch.device, *, lr: float) -> None:
    """A history row for the state's epoch, with the training time since the last row."""
    train_loss, train_acc = evaluate(model, data.x_train, data.y_train, dev)
    test_loss, test_acc = evaluate(model, data.x_test, data.y_test, dev)
    state.history.append({"epoch": state.epoch, "step": state.step, "lr": lr,
                          "train_loss": train_loss, "train_acc": train_acc,
                          "test_loss": test_loss, "test_acc": test_acc,
                          "seconds": state.unrecorded_seconds})
    state.unrecorded_seconds = 0.0
