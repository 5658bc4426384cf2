"""Run specifications and the trainer.

A :class:`RunSpec` holds every knob that changes a trained model and nothing that does not
(device, workers, progress display); its :attr:`RunSpec.key` is a canonical hash, which the
store uses as the run's address. :func:`train` is deterministic on CPU for a given spec:
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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F

from netclaims import data as datasets
from netclaims import models
from netclaims._io import (
    CorruptFileError,
    atomic_path,
    load_checked,
    save_checked,
    write_json,
)
from netclaims.data.augment import AUGMENTATIONS, augment, default_augmentation
from netclaims.metrics.selectivity import mean_class_selectivity
from netclaims.numerics import pin_cpu_numerics
from netclaims.units import Recorder

pin_cpu_numerics()  # before any kernel runs: training is what must be reproducible

SPEC_FORMAT = 1
"""Bumped when the trainer's semantics change, so old store entries are not reused."""

OPTIMIZERS = ("sgd", "momentum", "adam")
SCHEDULES = ("constant", "step", "cosine")
EVALUATIONS = ("every_epoch", "checkpoints")

FALLBACK_DEFAULTS = {"optimizer": "adam", "lr": 1e-3, "lr_schedule": "constant",
                     "batch_size": 100, "epochs": 20}

TRAINING_DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {**FALLBACK_DEFAULTS, "epochs": 30},
    # the MNIST-1D paper trains its CNN with Adam at 1e-2; cosine decay steadies the end
    "convnet": {**FALLBACK_DEFAULTS, "lr": 1e-2, "lr_schedule": "cosine", "epochs": 30},
    "resnet18": dict(FALLBACK_DEFAULTS),
    "vgg": dict(FALLBACK_DEFAULTS),
    "transformer": {**FALLBACK_DEFAULTS, "epochs": 30},
}
"""Per-architecture defaults for the fields a RunSpec leaves unset."""


def _freeze(value: Any) -> Any:
    """Mappings -> sorted tuples of pairs, sequences -> tuples (hashable, picklable)."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple) and all(isinstance(v, tuple) and len(v) == 2
                                        and isinstance(v[0], str) for v in value) and value:
        return {k: _thaw(v) for k, v in value}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class Regularizer:
    """A regularizer added to the loss, switched on for epochs ``start <= e < stop``
    (``stop=None``: until the end; epochs count from 1). ``name`` is a registered
    regularizer (see :func:`register_regularizer`); ``selectivity`` adds ``-alpha · mean SI``
    over the units of the stages in ``params["stages"]`` (early-epochs paper)."""

    name: str
    alpha: float
    start: int = 1
    stop: int | None = None
    params: tuple = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _freeze(dict(self.params)))
        if self.name not in _REGULARIZERS:
            raise ValueError(f"unknown regularizer {self.name!r}; registered: "
                             f"{sorted(_REGULARIZERS)}")

    def active(self, epoch: int) -> bool:
        return self.start <= epoch and (self.stop is None or epoch < self.stop)

    @property
    def options(self) -> dict[str, Any]:
        return _thaw(self.params) if self.params else {}


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a trained model.

    Fields left as ``None`` take the registry's default for the model (``TRAINING_DEFAULTS``)
    or the architecture (``batchnorm``), resolved when the spec is made, so the key reflects
    what was actually trained. ``checkpoint_epochs`` may include 0 (the initialization);
    ``checkpoint_steps`` are optimizer steps (e.g. inside the first epoch). ``evaluate``
    says which epochs the history records (losses and accuracies on the whole training and
    test sets): ``every_epoch``, or ``checkpoints`` (the initialization, the checkpoint
    epochs and the last epoch), which changes no weight and saves the evaluations, as
    costly as training for small training sets, that a protocol never reads. For a user's
    ``module:callable`` model, ``model_source`` is filled with a hash of its module's source,
    so editing the architecture trains anew.
    """

    model: str
    dataset: str
    dataset_options: tuple = ()
    label_noise: float = 0.0
    noise_seed: int = 0
    superclasses: tuple | None = None
    width: float = 1.0
    depth: float = 1.0
    batchnorm: bool | None = None
    dropout: float = 0.0
    init: str = "default"
    optimizer: str | None = None
    lr: float | None = None
    momentum: float = 0.9
    lr_schedule: str | None = None
    lr_milestones: tuple = ()
    lr_gamma: float = 0.1
    batch_size: int | None = None
    weight_decay: float = 0.0
    augmentation: str | None = None
    epochs: int | None = None
    seed: int = 0
    regularizers: tuple = ()
    checkpoint_epochs: tuple = ()
    checkpoint_steps: tuple = ()
    stop_train_loss: float | None = None
    evaluate: str = "every_epoch"
    model_source: str | None = None

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("dataset_options", _freeze(dict(self.dataset_options)))
        if self.superclasses is not None:
            set_("superclasses", _freeze(self.superclasses))
        for name in ("lr_milestones", "checkpoint_epochs", "checkpoint_steps"):
            set_(name, tuple(sorted({int(v) for v in getattr(self, name)})))
        set_("regularizers", tuple(r if isinstance(r, Regularizer) else Regularizer(**r)
                                   for r in self.regularizers))
        if models.is_user_spec(self.model):
            if self.model_source is None:
                set_("model_source", models.source_digest(self.model))
        elif self.model not in models.available():
            raise ValueError(f"unknown model {self.model!r}; available: {models.available()} "
                             "or a user architecture 'module:callable'")
        if self.dataset not in datasets.available():
            raise ValueError(f"unknown dataset {self.dataset!r}; "
                             f"available: {datasets.available()}")
        defaults = TRAINING_DEFAULTS.get(self.model, FALLBACK_DEFAULTS)
        for key, value in defaults.items():
            if getattr(self, key) is None:
                set_(key, value)
        if self.batchnorm is None:
            set_("batchnorm", models.default_batchnorm(self.model))
        self._validate()

    def _validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}")
        if self.evaluate not in EVALUATIONS:
            raise ValueError(f"evaluate must be one of {EVALUATIONS}, got {self.evaluate!r}")
        if self.stop_train_loss is not None and self.evaluate != "every_epoch":
            raise ValueError("stop_train_loss reads the training loss after every epoch; "
                             "it needs evaluate='every_epoch'")
        if self.augmentation not in (None, "auto", *AUGMENTATIONS):
            raise ValueError(f"augmentation must be None, 'auto' or one of {AUGMENTATIONS}")
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError("epochs must be >= 0, batch_size >= 1 and lr > 0")
        if not 0.0 <= self.label_noise <= 1.0:
            raise ValueError(f"label_noise must lie in [0, 1], got {self.label_noise}")
        late = [e for e in self.checkpoint_epochs if e > self.epochs or e < 0]
        if late:
            raise ValueError(f"checkpoint_epochs {late} lie outside 0..{self.epochs}")

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "regularizers":
                value = [{**asdict(r), "params": r.options} for r in value]
            elif f.name == "dataset_options":
                value = _thaw(value) if value else {}
            elif isinstance(value, tuple):
                value = _thaw(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunSpec:
        return cls(**dict(values))

    @property
    def key(self) -> str:
        """Canonical hash of the spec (and of the trainer's format version)."""
        payload = json.dumps({"format": SPEC_FORMAT, "spec": self.to_dict()}, sort_keys=True,
                             separators=(",", ":"), default=repr)
        return hashlib.sha256(payload.encode()).hexdigest()[:24]

    def __hash__(self) -> int:
        return hash(self.key)

    @property
    def label(self) -> str:
        """A short human-readable description for progress displays."""
        defaults = {f.name: f.default for f in fields(self)}
        defaults.update(TRAINING_DEFAULTS.get(self.model, FALLBACK_DEFAULTS))
        defaults["batchnorm"] = models.default_batchnorm(self.model)
        shown = ("width", "depth", "batchnorm", "label_noise", "dropout", "lr", "batch_size",
                 "epochs", "seed", "init", "weight_decay", "optimizer")
        extra = [f"{name}={getattr(self, name)}" for name in shown
                 if getattr(self, name) != defaults[name]]
        return f"{self.model}/{self.dataset}" + (f" {' '.join(extra)}" if extra else "")

    def load_data(self, data_root: str | None = None) -> datasets.Dataset:
        options = dict(_thaw(self.dataset_options) if self.dataset_options else {})
        if data_root is not None and "root" in datasets.options_of(self.dataset):
            options.setdefault("root", data_root)
        return datasets.load(self.dataset, superclasses=self.superclasses,
                             label_noise=self.label_noise, noise_seed=self.noise_seed,
                             **options)

    def build_model(self, data: datasets.Dataset) -> nn.Module:
        return models.create(self.model, data.input_shape, data.num_classes, width=self.width,
                             depth=self.depth, batchnorm=self.batchnorm, dropout=self.dropout,
                             init=self.init)


# --------------------------------------------------------------------------- regularizers


@dataclass
class RegularizerContext:
    """What a regularizer sees at each training step."""

    model: nn.Module
    inputs: torch.Tensor
    labels: torch.Tensor
    logits: torch.Tensor
    activations: dict[str, torch.Tensor]
    epoch: int


LayersFn = Callable[[nn.Module, dict[str, Any]], list[str]]
LossFn = Callable[[RegularizerContext, dict[str, Any]], torch.Tensor]
_REGULARIZERS: dict[str, tuple[LayersFn, LossFn]] = {}


def register_regularizer(name: str, layers: LayersFn, loss: LossFn) -> None:
    """Register a regularizer: ``layers(model, params)`` names the layers whose outputs it
    needs (recorded with gradients), ``loss(context, params)`` returns the term that is
    multiplied by the spec's ``alpha`` and added to the loss."""
    if name in _REGULARIZERS:
        raise ValueError(f"a regularizer named {name!r} is already registered")
    _REGULARIZERS[name] = (layers, loss)


def _selectivity_layers(model: nn.Module, params: dict[str, Any]) -> list[str]:
    stages = models.stages_of(model)
    wanted = params.get("stages", stages.names)
    return [layer for stage in wanted for layer in stages[stage]]


def _selectivity_loss(ctx: RegularizerContext, params: dict[str, Any]) -> torch.Tensor:
    # loss = CE - alpha * mean SI, so the term added per unit of alpha is -mean SI (in float32
    # also under mixed precision)
    return -mean_class_selectivity({k: v.float() for k, v in ctx.activations.items()},
                                   ctx.labels)


register_regularizer("selectivity", _selectivity_layers, _selectivity_loss)


# --------------------------------------------------------------------------- training


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU raises."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA device is available")
    return torch.device(device)


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(hashlib.sha256(f"{seed}:{epoch}".encode()).hexdigest()[:15], 16)


def lr_at(spec: RunSpec, epoch: int) -> float:
    """Learning rate used during ``epoch`` (1-based)."""
    if spec.lr_schedule == "step":
        return spec.lr * spec.lr_gamma ** sum(epoch > m for m in spec.lr_milestones)
    if spec.lr_schedule == "cosine":
        return spec.lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / max(1, spec.epochs)))
    return spec.lr


def _optimizer(spec: RunSpec, model: nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    momentum = spec.momentum if spec.optimizer == "momentum" else 0.0
    return torch.optim.SGD(params, lr=spec.lr, momentum=momentum, weight_decay=spec.weight_decay)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
             batch_size: int = 1000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (eval mode) on ``(x, y)``."""
    was_training = model.training
    model.eval()
    loss = correct = 0.0
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
        with _autocast(device):
            logits = model(xb).float()
        loss += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += float((logits.argmax(1) == yb).sum())
    model.train(was_training)
    return loss / x.shape[0], correct / x.shape[0]


def _autocast(device: torch.device) -> Any:
    """bfloat16 mixed precision on CUDA; nothing on CPU (keeps CPU runs exact)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


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
        opt = _optimizer(spec, model)
        try:
            return model, opt, _load_state(workdir, model, opt, dev)
        except _DAMAGED_STATE as err:
            warnings.warn(f"the resumable state of {spec.label} in {workdir} is damaged "
                          f"({type(err).__name__}: {err}); its training starts afresh",
                          stacklevel=4)
            for path in [workdir / "state.json", *workdir.glob("state_*.safetensors")]:
                path.unlink(missing_ok=True)


def _check_outputs(spec: RunSpec, model: nn.Module, data: datasets.Dataset,
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
    _check_outputs(spec, model, data, dev)
    kind = default_augmentation(data.input_shape) if spec.augmentation == "auto" \
        else spec.augmentation
    reg_layers = sorted({layer for r in spec.regularizers
                         for layer in _REGULARIZERS[r.name][0](model, r.options)})
    x_train, y_train = data.x_train, data.y_train
    if state is None:
        state = TrainState()
        _record(state, model, data, dev, lr=0.0)
        if 0 in spec.checkpoint_epochs:
            save_weights(model, workdir / "checkpoints" / f"{checkpoint_name(epoch=0)}.safetensors")
    n = x_train.shape[0]
    unsaved_seconds = 0.0
    while state.epoch < spec.epochs and not state.stopped:
        epoch = state.epoch + 1
        started = time.perf_counter()
        lr = lr_at(spec, epoch)
        for group in opt.param_groups:
            group["lr"] = lr
        torch.manual_seed(_epoch_seed(spec.seed, epoch))
        gen = torch.Generator().manual_seed(_epoch_seed(spec.seed, epoch))
        order = torch.randperm(n, generator=gen)
        active = [r for r in spec.regularizers if r.active(epoch)]
        # the regularizers read the unit layers' outputs, with their gradients
        capture = Recorder(model, reg_layers, to_cpu=False, keep=False, detach=False) \
            if active else contextlib.nullcontext()
        model.train()
        with capture:
            for start in range(0, n, spec.batch_size):
                idx = order[start:start + spec.batch_size]
                xb, yb = x_train[idx], y_train[idx]
                if kind is not None:
                    xb = augment(xb, kind, gen)
                xb, yb = xb.to(dev), yb.to(dev)
                with _autocast(dev):
                    logits = model(xb)
                loss = F.cross_entropy(logits.float(), yb)
                outputs = capture.pop_batch() if active else {}
                for reg in active:
                    ctx = RegularizerContext(model, xb, yb, logits, outputs, epoch)
                    loss = loss + reg.alpha * _REGULARIZERS[reg.name][1](ctx, reg.options)
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
        evaluated = spec.evaluate == "every_epoch" or epoch in spec.checkpoint_epochs \
            or epoch == spec.epochs
        if evaluated:
            _record(state, model, data, dev, lr=lr)
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


def _record(state: TrainState, model: nn.Module, data: datasets.Dataset, dev: torch.device,
            *, lr: float) -> None:
    """A history row for the state's epoch, with the training time since the last row."""
    train_loss, train_acc = evaluate(model, data.x_train, data.y_train, dev)
    test_loss, test_acc = evaluate(model, data.x_test, data.y_test, dev)
    state.history.append({"epoch": state.epoch, "step": state.step, "lr": lr,
                          "train_loss": train_loss, "train_acc": train_acc,
                          "test_loss": test_loss, "test_acc": test_acc,
                          "seconds": state.unrecorded_seconds})
    state.unrecorded_seconds = 0.0
