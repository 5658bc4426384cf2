"""The selectivity-in-early-epochs suite's protocol: its runs and regularizer conditions, the
measures taken over training (selectivity, stage ablations, CKA) and the figures. The claims
themselves, one per finding, are in ``test_selectivity_early_epochs.py``."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from netclaims import models
from netclaims.metrics import (
    ablation_curve,
    above_chance,
    chance_accuracy,
    class_balance,
    class_selectivity,
    linear_cka,
    live_units,
    selectivity_order,
)
from netclaims.regularizers import Regularizer
from netclaims.units import collect

SE_NEEDS = ("stages", "three_stages", "nonnegative_units")
"""The protocol reads early, intermediate and late stages."""


EPOCHS = {"smoke": 20, "paper": 40}


START_EPOCHS = (0, 1, 2, 3, 4, 5)


OFF_AFTER = 4


PAPER_ALPHA_AGAINST, PAPER_ALPHA_FOR, PAPER_CLASSES = -20.0, 5.0, 1000


REGULARIZED = ("early", "intermediate")


SI_SAMPLES = 1000


ABLATION_SAMPLES = 500


ORDERINGS = 5


PEAK_WINDOW = 0.2
"""SE-1/SE-2: the peak is looked for in the first 20% of training (after initialization)."""


WINDOW_GAIN = (0.25, 0.75)
"""SE-6/SE-7: the early window, by accuracy: the checkpoints from the first at which the net
has a quarter of its final gain over chance to the first at which it has three quarters (an
epoch of the small task is 10 optimizer steps, an ImageNet epoch thousands: epochs do not
compare, progress does). Before it the chance-corrected curve divides by a gain near zero."""


MIN_WINDOW = 3
"""A slope needs at least three checkpoints: a shorter window extends to the next ones."""


FIRST_EPOCHS = 2.0
"""SE-13: class over-representation is read at the checkpoints of the first 2 epochs."""


NONE, FROM_0, OFF, FOR = "unregularized", "against from 0", "against 0-3, then off", "for 0-3"


TRACED = (NONE, FROM_0)


UNITS = "block outputs"
"""The paper reads ResNet-50's bottleneck blocks: a residual net's units are its blocks'
outputs (:func:`netclaims.models.block_outputs_of`); a plain net's are its unit layers."""


def regularizer_against(start: int, alpha: float, stop: int | None = None) -> Regularizer:
    return Regularizer("selectivity", alpha, start=start + 1,
                       stop=None if stop is None else stop + 1,
                       params={"stages": list(REGULARIZED), "units": UNITS})


def conditions(num_classes: int) -> dict[str, tuple[Regularizer, ...]]:
    """The nine regularizer conditions, α scaled by ln C / ln 1000."""
    scale = math.log(num_classes) / math.log(PAPER_CLASSES)
    against, favour = PAPER_ALPHA_AGAINST * scale, PAPER_ALPHA_FOR * scale
    out = {NONE: ()}
    out.update({f"against from {e}": (regularizer_against(e, against),) for e in START_EPOCHS})
    out[OFF] = (regularizer_against(0, against, stop=OFF_AFTER),)
    out[FOR] = (Regularizer("selectivity", favour, start=1, stop=OFF_AFTER + 1,
                            params={"units": UNITS}),)
    return out


def dynamics(run) -> dict[str, np.ndarray]:
    """Per checkpoint of a traced run (cached beside it): its epoch, mean SI per stage, linear
    CKA between the last layers of the early and the late stage, the top-5 predicted-class
    count on held-out data, the accuracy on the ablation samples with their chance level,
    and for unregularized runs, after initialization, the normalized ablation AUC of the
    early+intermediate and of the late units in selective order (most selective first) and
    in 5 random orders (their mean). Units are read at the blocks' outputs (:data:`UNITS`)."""
    def compute() -> dict[str, torch.Tensor]:
        out: dict[str, list] = {k: [] for k in ("epoch", "si", "cka", "top5", "auc", "acc",
                                                "chance")}
        _, y_abl = ablation_samples(run)  # the first test samples: a prefix of the SI ones
        chance = chance_accuracy(y_abl)
        for name, epoch in run.timeline:
            model = run.checkpoint_named(name)
            stages = models.block_outputs_of(model)
            x, y = run.data.x_test[:SI_SAMPLES], run.data.y_test[:SI_SAMPLES]
            acts = collect(model, x, stages.layers)
            si = [stage_selectivity(acts, y, stages[stage]) for stage in stages.names]
            full = collect(model, x, [stages[stages.names[0]][-1], stages[stages.names[-1]][-1]],
                           reduce="none")
            early, late = (t.flatten(1) for t in full.values())
            with torch.no_grad():
                logits = model(x)
            acc = float((logits[:y_abl.shape[0]].argmax(-1) == y_abl).double().mean())
            auc = [np.nan] * 4
            if not run.spec.regularizers and epoch > 0:
                auc = ablation_aucs(run, model, stages)
            out["acc"].append(acc)
            out["chance"].append(chance)
            out["epoch"].append(epoch)
            out["si"].append(si)
            out["cka"].append(cka_or_nan(early, late))
            out["top5"].append(class_balance(logits, top=5))
            out["auc"].append(auc)
        return {k: torch.tensor(np.asarray(v, dtype=np.float64)) for k, v in out.items()}

    params = {"si_samples": SI_SAMPLES, "ablation_samples": ABLATION_SAMPLES,
              "orderings": ORDERINGS, "units": f"live, at {UNITS}", "checkpoints": "all",
              "ablation": "per stage, ordered on held-out samples, chance-corrected"}
    return {k: v.numpy() for k, v in run.derived("se-dynamics", params, compute).items()}


def dynamics_if_traced(run) -> None:
    """:func:`dynamics` of a run of a :data:`TRACED` condition (those with checkpoints
    inside the first epoch), computed where it trained."""
    if run.spec.checkpoint_steps:
        dynamics(run)


def cka_or_nan(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA, or NaN when a layer is dead (constant): a regularized net can lose a whole
    stage, and only SE-8 reads CKA, on unregularized runs, where a NaN would surface as an
    error with its reason."""
    if bool((x.std(0) == 0).all()) or bool((y.std(0) == 0).all()):
        return math.nan
    return linear_cka(x, y)


def stage_selectivity(acts: dict[str, torch.Tensor], y: torch.Tensor,
                       layers: list[str]) -> float:
    """Mean SI over the live units of each layer, then over the stage's layers (NaN for a
    stage without a live unit)."""
    means = []
    for layer in layers:
        live = live_units(acts[layer])
        if bool(live.any()):
            means.append(float(class_selectivity(acts[layer][:, live], y).mean()))
    return float(np.mean(means)) if means else math.nan


def ablation_aucs(run, model, stages) -> list[float]:
    """[selective early+intermediate, random early+intermediate, selective late, random
    late]. Each stage (the paper's module) is ablated on its own and the early and
    intermediate AUCs are averaged; units are ordered by their SI on held-out test samples
    (dead units at random positions), and the ablated net is scored on other test samples.
    A checkpoint not yet above chance has no ablation curve (NaN): there is nothing to lose."""
    x, y_abl = ablation_samples(run)
    if not above_chance(model, x, y_abl):
        return [math.nan] * 4
    x_si, y_si = run.data.x_test[y_abl.shape[0]:], run.data.y_test[y_abl.shape[0]:]
    held_out = collect(model, x_si, stages.layers)
    gen = torch.Generator().manual_seed(run.spec.seed)
    out = []
    for group in (list(REGULARIZED), [stages.names[-1]]):
        aucs = []
        for stage in (s for s in group if s in stages.names):
            orders = {}
            for layer in stages[stage]:
                si = class_selectivity(held_out[layer], y_si)
                order = selectivity_order(si, live_units(held_out[layer]), generator=gen)
                randoms = [torch.randperm(order.numel(), generator=gen)
                           for _ in range(ORDERINGS)]
                orders[layer] = torch.stack([order, *randoms])
            curve = ablation_curve(model, x, y_abl, stages[stage], orderings=orders)
            aucs.append((float(curve.aucs[0]), float(curve.aucs[1:].mean())))
        out += [float(np.mean([a for a, _ in aucs])), float(np.mean([b for _, b in aucs]))]
    return out


def ablation_samples(run) -> tuple[torch.Tensor, torch.Tensor]:
    """The test samples an ablated net is scored on: the first 500 (half of a small test
    set); the units are ordered on the others."""
    split = min(ABLATION_SAMPLES, run.data.x_test.shape[0] // 2)
    return run.data.x_test[:split], run.data.y_test[:split]


def final_acc(run) -> float:
    return float(run.history["test_acc"].iloc[-1]) * 100


def peak_and_final(dyn: dict, stage: int) -> tuple[float, float]:
    epochs, si = dyn["epoch"], dyn["si"][:, stage]
    window = (epochs > 0) & (epochs <= PEAK_WINDOW * epochs[-1])
    return float(si[window].max()), float(si[-1])


def early_stage_indices(run) -> list[int]:
    names = models.block_outputs_of(run.model).names
    return [names.index(s) for s in REGULARIZED if s in names]


def selectivity_figure(se_runs, arch, save_figure, name: str = "selectivity-over-training"):
    """Mean SI per stage over training, the unregularized and the from-epoch-0 runs side by
    side (mean over seeds), with the window where SE-1 looks for the peak shaded."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    stages = models.block_outputs_of(se_runs.shown(NONE)[0].model).names
    for ax, condition in zip(axes, TRACED, strict=True):
        dyns = [dynamics(r) for r in se_runs.shown(condition)]
        epochs = dyns[0]["epoch"]
        mean = np.mean([d["si"] for d in dyns], axis=0)
        for i, stage in enumerate(stages):
            ax.plot(np.maximum(epochs, 0.05), mean[:, i], marker="o", ms=3, label=stage)
        ax.axvspan(0.05, PEAK_WINDOW * epochs[-1], color="grey", alpha=0.15)
        ax.set(xscale="log", xlabel="epoch (log; 0 drawn at 0.05)", title=condition)
    axes[0].set_ylabel("mean class selectivity")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"class selectivity per stage over training, {arch}")
    fig.tight_layout()
    save_figure(fig, name)


def accuracy_figure(se_runs, arch, save_figure):
    """Final test accuracy of every condition (one dot per seed, their mean as a bar), the
    quantity SE-9, SE-10, SE-11 and SE-14 compare (the paper's Fig. 6 and 8)."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, condition in enumerate(se_runs):
        acc = [final_acc(r) for r in se_runs.shown(condition)]
        ax.bar(i, np.mean(acc), color="tab:blue" if condition in (NONE, FROM_0) else "tab:grey",
               alpha=0.5)
        ax.scatter([i] * len(acc), acc, color="black", s=10, zorder=3)
    ax.set_xticks(range(len(se_runs)), list(se_runs), rotation=35, ha="right", fontsize=7)
    low = min(final_acc(r) for condition in se_runs for r in se_runs.shown(condition))
    ax.set(ylabel="final test accuracy (%)", ylim=(max(0.0, low - 5), None),
           title=f"selectivity regularizer conditions, {arch}")
    fig.tight_layout()
    save_figure(fig, "accuracy-by-condition")


def auc_column(group: str, order: str) -> int:
    return {"early": 0, "late": 2}[group] + {"selective": 0, "random": 1}[order]


def final_auc_gap(se_runs, group: str) -> list[float]:
    return [float(d["auc"][-1, auc_column(group, "selective")]
                  - d["auc"][-1, auc_column(group, "random")])
            for d in map(dynamics, se_runs[NONE])]


def early_window(dyn: dict[str, np.ndarray]) -> np.ndarray:
    """Which checkpoints are in the early window (:data:`WINDOW_GAIN`): from the first at
    which the net has a quarter of its final gain over chance to the first at which it has
    three quarters, at least :data:`MIN_WINDOW` of those with an ablation curve."""
    gain = (dyn["acc"] - dyn["chance"]) / (dyn["acc"][-1] - dyn["chance"][-1])
    measured = np.flatnonzero(np.isfinite(dyn["auc"][:, 0]) & (dyn["epoch"] > 0))
    low, high = WINDOW_GAIN
    start = next((i for i in measured if gain[i] >= low), measured[0])
    end = next((i for i in measured if i >= start and gain[i] >= high), measured[-1])
    chosen = [i for i in measured if start <= i <= end]
    if len(chosen) < MIN_WINDOW:
        chosen = [i for i in measured if i >= start][:MIN_WINDOW]
    window = np.zeros(dyn["epoch"].shape, dtype=bool)
    window[chosen] = True
    return window


def window_slopes(run, order: str) -> float:
    """Least-squares slope of the early+intermediate AUC (``order``: selective or random)
    over the early window's checkpoints, per epoch."""
    dyn = dynamics(run)
    auc = dyn["auc"][:, auc_column("early", order)]
    window = early_window(dyn)
    return float(np.polyfit(dyn["epoch"][window], auc[window], 1)[0])


def ablation_figure(se_runs, arch, save_figure):
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for order, color in (("selective", "tab:red"), ("random", "tab:blue")):
        for i, run in enumerate(se_runs[NONE]):
            dyn = dynamics(run)
            keep = ~np.isnan(dyn["auc"][:, 0])
            auc = dyn["auc"][:, auc_column("early", order)]
            ax.plot(dyn["epoch"][keep], auc[keep], color=color, marker="o", ms=2, alpha=0.5,
                    label=f"{order} order" if i == 0 else None)
            window = early_window(dyn)
            ax.plot(dyn["epoch"][window], auc[window], color=color, marker="o", ms=5,
                    ls="none", label="early window (SE-6)" if i == 0 and order == "random"
                    else None)
    ax.set(xscale="symlog", xlabel="epoch (symlog)", ylabel="ablation AUC (normalized)",
           title=f"early+intermediate ablation over training, {arch}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, "ablation-auc-over-training")


def peak_epoch(se_runs) -> int:
    """The start epoch "at the peak": the epoch (0..5) after which the mean SI of the
    regularized stages peaks in the unregularized runs, median over seeds."""
    peaks = []
    for run in se_runs[NONE]:
        dyn = dynamics(run)
        whole = np.isin(dyn["epoch"], START_EPOCHS)
        si = dyn["si"][:, early_stage_indices(run)].mean(1)
        peaks.append(float(dyn["epoch"][whole][np.argmax(si[whole])]))
    return int(np.clip(round(float(np.median(peaks))), min(START_EPOCHS), max(START_EPOCHS)))
