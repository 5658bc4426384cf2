"""The representation-dynamics suite's protocol: its runs (clean and noisy labels, widths,
checkpoints), the measures taken over training (CKA heatmaps, probes, transition
detectors) and the figures. The claims themselves, one per finding, are in
``test_representation_dynamics.py``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import torch

from netclaims import models
from netclaims.claims import checkpoint_schedule
from netclaims.metrics import (
    cka_matrix,
    early_stopping_epoch,
    moving_average,
    plane_predictions,
    sample_triplets,
    similarity_blocks,
    train_linear_probe,
)
from netclaims.units import collect

LABEL_NOISE = 0.2


NARROW_WIDTH = 0.25


CKA_SAMPLES = 1000


DENSE_UNTIL, SPACED = 10, 5


SMOOTHING = 5
"""RD-6: test error is smoothed by a centered 5-epoch moving average before its minimum and
peak are read, so that epoch-to-epoch noise is not taken for a second descent."""


PROBE_EPOCHS = 20


PLANES, RESOLUTION = 5, 20
"""RD-10: DRS over 5 dbViz planes of 20 × 20 points (triplets of test inputs of three
classes)."""


TRANSITION_TOLERANCE = 0.1
"""RD-9: a block boundary counts when within ±10% of the perfect-fitting epoch."""


TRANSIENT_EPOCHS = 5
"""RD-8, RD-9: checkpoints before epoch 5 are left out of the block detection: the onset of
learning is itself a sharp change (sharper with clean labels), and the best split otherwise
finds it (12 of 18 smoke MLP heatmaps split at epoch 2)."""


CLEAN, NOISY, NARROW = "clean", "noisy", "narrow"


FAMILIES = (CLEAN, NOISY, NARROW)


def families_of(arch) -> tuple[str, ...]:
    """The families an architecture is trained in: the narrow one needs a width knob (only
    RD-3 reads it)."""
    return FAMILIES if "width" in arch.capabilities else (CLEAN, NOISY)


def rd_zoo(arch, families: Sequence[str], seeds: list[int], small_task: dict,
            run_spec) -> tuple[dict[str, list[dict]], partial]:
    """The variants of some of an architecture's families (``{family: [fields per seed]}``)
    and the measures its workers derive."""
    epochs = 2 * small_task["epochs"]
    base = {"epochs": epochs, "lr_schedule": "constant"}
    if "dataset_options" in small_task:
        base["dataset_options"] = small_task["dataset_options"]
    base.update(checkpoint_schedule(epochs, 1, inside_first=0, dense_until=DENSE_UNTIL,
                                    spaced=SPACED))
    fields = {CLEAN: {"label_noise": 0.0}, NOISY: {"label_noise": LABEL_NOISE},
              NARROW: {"label_noise": LABEL_NOISE, "width": NARROW_WIDTH}}
    zoo = {family: [{"seed": s, "noise_seed": s, **base, **fields[family]} for s in seeds]
           for family in families}
    # RD-7 and RD-10 read probes of the noisy runs; the built-in transformer serves RD-9,
    # which reads heatmaps alone
    probed = frozenset() if str(arch) == "transformer" or NOISY not in zoo else frozenset(
        run_spec(arch, **v).key for v in zoo[NOISY])
    return zoo, partial(measures, probed=probed)


def measures(run, probed: frozenset[str]) -> None:
    """What the claims read of a run, computed where it trained: its CKA heatmaps, and the
    probes of the runs whose keys are in ``probed``."""
    heatmaps(run)
    if run.spec.key in probed:
        probes_of(run)


def unit_layers(model) -> list[str]:
    return models.stages_of(model).layers


def heatmaps(run) -> dict[str, np.ndarray]:
    """``{"epoch": (E,), layer: (E, E) CKA}`` over the run's checkpoints (cached beside it)."""
    def compute() -> dict[str, torch.Tensor]:
        reps: dict[str, list[torch.Tensor]] = {}
        epochs = []
        x = run.data.x_test[:CKA_SAMPLES]
        for name, epoch in run.timeline:
            model = run.checkpoint_named(name)
            acts = collect(model, x, unit_layers(model), reduce="none")
            for layer, a in acts.items():
                reps.setdefault(layer, []).append(a.flatten(1))
            epochs.append(epoch)
        out = {layer: torch.from_numpy(cka_matrix(r)) for layer, r in reps.items()}
        return {"epoch": torch.tensor(epochs, dtype=torch.float64), **out}

    cached = run.derived("cka-heatmaps", {"samples": CKA_SAMPLES}, compute)
    return {k: v.numpy() for k, v in cached.items()}


def perfect_fit_epoch(run) -> float:
    """First epoch with 100% training accuracy on the labels as trained (NaN if none)."""
    history = run.history
    fitted = history.loc[history["train_acc"] >= 1.0, "epoch"]
    return float(fitted.iloc[0]) if len(fitted) else math.nan


def probes_of(run) -> dict[str, np.ndarray]:
    """Per checkpoint: test error of linear probes on the first and the deepest unit layer,
    and their predictions on the dbViz planes (cached beside the run)."""
    def compute() -> dict[str, torch.Tensor]:
        data = run.data
        triplets = sample_triplets(data.y_test[:CKA_SAMPLES], PLANES, seed=run.spec.seed)
        errors, planes = [], []
        for name, _ in run.timeline:
            model = run.checkpoint_named(name)
            layers = unit_layers(model)
            chosen = [layers[0], layers[-1]]
            train = collect(model, data.x_train, chosen, reduce="none")
            test = collect(model, data.x_test[:CKA_SAMPLES], chosen, reduce="none")
            row_err, row_planes = [], []
            for layer in chosen:
                probe = train_linear_probe(train[layer], data.y_train,
                                           num_classes=data.num_classes, epochs=PROBE_EPOCHS,
                                           seed=run.spec.seed)
                with torch.no_grad():
                    predicted = probe(test[layer].flatten(1)).argmax(-1)
                row_err.append(float((predicted != data.y_test[:CKA_SAMPLES]).double().mean()))

                def predict(points, model=model, layer=layer, probe=probe):
                    feats = collect(model, points, [layer], reduce="none")[layer]
                    return probe(feats.flatten(1))
                row_planes.append(plane_predictions(predict, data.x_test[:CKA_SAMPLES],
                                                    triplets, resolution=RESOLUTION))
            errors.append(row_err)
            planes.append(torch.stack(row_planes))
        return {"error": torch.tensor(errors, dtype=torch.float64),
                "planes": torch.stack(planes)}

    params = {"samples": CKA_SAMPLES, "probe_epochs": PROBE_EPOCHS, "planes": PLANES,
              "resolution": RESOLUTION}
    return {k: v.numpy() for k, v in run.derived("probes", params, compute).items()}


def epoch_ticks(ax, epochs: np.ndarray) -> None:
    """Label a checkpoint × checkpoint image's axes with the checkpoints' epochs."""
    ticks = np.linspace(0, len(epochs) - 1, 4).round().astype(int)
    ax.set_xticks(ticks, [f"{epochs[t]:g}" for t in ticks], fontsize=6)
    ax.set_yticks(ticks, [f"{epochs[t]:g}" for t in ticks], fontsize=6)


def heatmap_figure(runs_by_family: dict[str, object], arch, save_figure, name: str):
    """CKA heatmaps epoch × epoch for every unit layer (columns), one row per family (first
    seed), the perfect-fitting epoch marked."""
    families = list(runs_by_family)
    first = runs_by_family[families[0]]
    layers = unit_layers(first.model)
    fig, axes = plt.subplots(len(families), len(layers),
                             figsize=(2.2 * len(layers) + 1, 2.2 * len(families) + 0.6),
                             squeeze=False)
    for row, family in zip(axes, families, strict=True):
        run = runs_by_family[family]
        maps = heatmaps(run)
        epochs = maps["epoch"]
        fit = perfect_fit_epoch(run)
        for ax, layer in zip(row, layers, strict=True):
            image = ax.imshow(maps[layer], vmin=0, vmax=1, cmap="magma", origin="lower")
            epoch_ticks(ax, epochs)
            if math.isfinite(fit):
                index = float(np.interp(fit, epochs, np.arange(len(epochs))))
                ax.axvline(index, color="cyan", lw=0.8)
                ax.axhline(index, color="cyan", lw=0.8)
            ax.set_title(f"{family}: {layer}", fontsize=7)
    fig.colorbar(image, ax=axes, shrink=0.6, label="linear CKA")
    fig.suptitle(f"CKA between checkpoints (epochs), perfect fitting in cyan, {arch}",
                 fontsize=9)
    save_figure(fig, name)


def init_minus_best(run) -> float:
    """CKA(final, init) − CKA(final, best early-stopping epoch) of the first unit layer."""
    maps = heatmaps(run)
    column = maps[unit_layers(run.model)[0]][-1]
    epochs = maps["epoch"]
    accuracy = run.history.set_index("epoch").loc[[int(e) for e in epochs], "test_acc"]
    best = early_stopping_epoch(epochs, accuracy.to_numpy(), perfect_fit_epoch(run))
    return float(column[0] - column[int(np.flatnonzero(epochs == best)[0])])


def blocks(maps: dict[str, np.ndarray], layer: str) -> tuple[float, float]:
    """The two-block split of a layer's heatmap after the initial transient
    (:data:`TRANSIENT_EPOCHS`): its contrast and the epoch where the second block starts."""
    split = similarity_blocks(maps[layer],
                              skip=int(np.searchsorted(maps["epoch"], TRANSIENT_EPOCHS)))
    return split.contrast, float(maps["epoch"][split.start])


def off_diagonal_mean(heatmap: np.ndarray) -> float:
    return float(heatmap[~np.eye(heatmap.shape[0], dtype=bool)].mean())


def dynamics_figure(runs, arch, save_figure):
    """Test error over training (every epoch, smoothed dashed) and probe test error at the
    checkpoints, first and deepest unit layer; perfect fitting marked."""
    fig, axes = plt.subplots(1, len(runs), figsize=(3.4 * len(runs), 3.2), sharey=True,
                             squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        history = run.history
        error = 1 - history["test_acc"].to_numpy()
        ax.plot(history["epoch"], error, color="black", lw=0.8, label="test error")
        ax.plot(history["epoch"], moving_average(error, SMOOTHING), color="black", ls="--", lw=0.8)
        probes = probes_of(run)["error"]
        epochs = [e for _, e in run.timeline]
        ax.plot(epochs, probes[:, 0], marker="o", ms=2, label="probe, first layer")
        ax.plot(epochs, probes[:, 1], marker="o", ms=2, label="probe, deepest layer")
        fit = perfect_fit_epoch(run)
        if math.isfinite(fit):
            ax.axvline(fit, color="cyan", lw=0.8, label="perfect fitting")
        ax.set(xlabel="epoch", title=f"seed {run.spec.seed}")
    axes[0, 0].set_ylabel("test error")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(f"test and probe error over training, {LABEL_NOISE:.0%} label noise, {arch}",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, "error-over-training")
