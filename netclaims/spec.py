"""Run specifications: a :class:`RunSpec` holds every knob that changes a trained model and
nothing that does not (device, workers, progress display); its :attr:`RunSpec.key` is a
canonical hash, the run's address in the store. Unset fields take the registry's training
defaults (:func:`netclaims.models.training_defaults`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from torch import nn

from netclaims import data as datasets
from netclaims import models
from netclaims._frozen import freeze, thaw
from netclaims.data.augment import AUGMENTATIONS
from netclaims.regularizers import Regularizer

SPEC_FORMAT = 1
"""Bumped when the trainer's semantics change, so old store entries are not reused."""


OPTIMIZERS = ("sgd", "momentum", "adam")


SCHEDULES = ("constant", "step", "cosine")


EVALUATIONS = ("every_epoch", "checkpoints")




T = TypeVar("T")


def resolved(value: T | None, name: str) -> T:
    """A training field of a made spec: the registry's default fills it when the spec is
    made, so it is never None afterwards."""
    if value is None:
        raise ValueError(f"RunSpec.{name} has no value and the model's registry entry no "
                         "default for it")
    return value


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a trained model.

    Fields left as ``None`` take the registry's default for the model (its ``training``)
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
        set_("dataset_options", freeze(dict(self.dataset_options)))
        if self.superclasses is not None:
            set_("superclasses", freeze(self.superclasses))
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
        defaults = models.training_defaults(self.model)
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
        epochs = resolved(self.epochs, "epochs")
        if epochs < 0 or resolved(self.batch_size, "batch_size") < 1 \
                or not resolved(self.lr, "lr") > 0:
            raise ValueError("epochs must be >= 0, batch_size >= 1 and lr > 0")
        if not 0.0 <= self.label_noise <= 1.0:
            raise ValueError(f"label_noise must lie in [0, 1], got {self.label_noise}")
        late = [e for e in self.checkpoint_epochs if e > epochs or e < 0]
        if late:
            raise ValueError(f"checkpoint_epochs {late} lie outside 0..{self.epochs}")

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "regularizers":
                value = [{**asdict(r), "params": r.options} for r in value]
            elif f.name == "dataset_options":
                value = thaw(value) if value else {}
            elif isinstance(value, tuple):
                value = thaw(value)
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
        defaults.update(models.training_defaults(self.model))
        defaults["batchnorm"] = models.default_batchnorm(self.model)
        shown = ("width", "depth", "batchnorm", "label_noise", "dropout", "lr", "batch_size",
                 "epochs", "seed", "init", "weight_decay", "optimizer")
        extra = [f"{name}={getattr(self, name)}" for name in shown
                 if getattr(self, name) != defaults[name]]
        return f"{self.model}/{self.dataset}" + (f" {' '.join(extra)}" if extra else "")

    def load_data(self, data_root: str | None = None) -> datasets.Dataset:
        options = dict(thaw(self.dataset_options) if self.dataset_options else {})
        if data_root is not None and "root" in datasets.options_of(self.dataset):
            options.setdefault("root", data_root)
        return datasets.load(self.dataset, superclasses=self.superclasses,
                             label_noise=self.label_noise, noise_seed=self.noise_seed,
                             **options)

    def build_model(self, data: datasets.Dataset) -> nn.Module:
        return models.create(self.model, data.input_shape, data.num_classes, width=self.width,
                             depth=self.depth, batchnorm=self.batchnorm, dropout=self.dropout,
                             init=self.init)
