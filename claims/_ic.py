"""The intraclass-clustering suite's protocol: the generalization zoo (the paper's eight
hyperparameters and pairing rules, scaled), the measures taken from each model (c1…c4,
sharpness), the granulated τ helpers and the figures. The claims themselves, one per
finding, are in ``test_intraclass_clustering.py``."""

from __future__ import annotations

from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from netclaims import stats
from netclaims.claims import NotApplicable, grid
from netclaims.metrics import (
    c1_subclass_selectivity,
    c2_subclass_silhouette,
    c3_class_std_ratio,
    c4_class_distance_std_ratio,
    group_taus,
    random_sharpness,
)
from netclaims.stats import Evidence, Rule
from netclaims.units import collect

SUPERCLASSES = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))


CORE = {"lr_scale": (1 / 3, 1.0), "optimizer": ("adam", "momentum")}
"""The axes every zoo crosses fully. ``lr_scale`` multiplies the zoo's top Adam rate: the
registry's (its rate / 100 where it trains with SGD), capped at the paper's top, 0.32 / 100.
``momentum`` is SGD with momentum 0.9 at 100 × the Adam rate, as the paper trains Adam at its
SGD rate / 100 (appendix A.2). Uncapped, the conv net's registry rate 1e-2 gives SGD 1.0, which
collapsed it to chance (measured: 21% training accuracy)."""


PLAIN = {"batch_size": 100, "weight_decay": 0.0, "dropout": 0.0, "augmentation": False,
         "width": 1.0, "depth": 1.0}
"""The other six axes' first values (width and depth as factors of the scale's own)."""


RAISED = {"batch_size": 32, "weight_decay": 5e-4, "dropout": 0.2, "augmentation": True,
          "width": 1.5, "depth": 1.5}
"""Their second values (paper appendix A.1: width and depth × 1.5)."""


ZOO_NEEDS = ("stages", "width", "depth", "preactivations")
"""What every IC claim needs of an architecture: the zoo varies width and depth, and c1, c3
and c4 read pre-activations."""


AXES = ("lr_scale", "batch_size", "weight_decay", "optimizer", "dropout", "augmentation",
        "width", "depth")
"""The paper's eight hyperparameters, in its Table 1's order."""


ADAM_TO_SGD = 100.0


TOP_SGD_RATE = 0.32


MEASURES = ("c1", "c2", "c3", "c4")


PAPER_TABLE_1 = {
    # the paper's Table 1 (ResNets on CIFAR-100 superclasses): ψ per hyperparameter and the
    # total over the eight; sharpness is its 1/σ′ row
    "c1": {"lr_scale": 0.88, "batch_size": 0.31, "weight_decay": 0.38, "optimizer": 0.67,
           "dropout": 0.96, "augmentation": 1.0, "width": 0.81, "depth": 0.69, "total": 0.71},
    "c2": {"lr_scale": 0.86, "batch_size": 0.5, "weight_decay": 0.67, "optimizer": 0.58,
           "dropout": 0.99, "augmentation": 1.0, "width": 0.38, "depth": 0.62, "total": 0.70},
    "c3": {"lr_scale": 0.88, "batch_size": 0.6, "weight_decay": 0.46, "optimizer": 0.62,
           "dropout": 0.81, "augmentation": 1.0, "width": 0.81, "depth": 0.66, "total": 0.73},
    "c4": {"lr_scale": 0.89, "batch_size": 0.69, "weight_decay": 0.62, "optimizer": 0.65,
           "dropout": 0.86, "augmentation": 1.0, "width": 0.44, "depth": 0.69, "total": 0.73},
    "flatness": {"lr_scale": 0.81, "batch_size": 0.51, "weight_decay": 0.31, "optimizer": 0.69,
                 "dropout": 0.28, "augmentation": -0.58, "width": 0.67, "depth": 0.61,
                 "total": 0.41},
}


SHARPNESS_SAMPLES = 500


MEASURE_SAMPLES = 5000
"""Test samples the measures read (all 1000 of MNIST-1D; c4's pairwise distances stay within
200 MB on CIFAR's 10000)."""


RESAMPLES = 1999


def zoo_design(scale: str) -> list[dict]:
    """The zoo's hyperparameter configurations, under the paper's pairing rules (weight decay
    only at the highest learning rate, dropout never with augmentation, width and depth never
    raised together).

    ``paper``: every combination, as the paper builds its zoo (appendix A.1) with two values
    per axis: (learning rate, weight decay) 3 × batch size 2 × optimizer 2 × (dropout,
    augmentation) 3 × (width, depth) 3 = 108 models. ``smoke``: the :data:`CORE` axes crossed
    (4 models) and, around each, one of the other six axes raised at a time (weight decay only
    at the highest rate): 26 models, every axis varied within at least two groups.
    """
    def allowed(config: dict) -> bool:
        raised = {a for a in PLAIN if config[a] != PLAIN[a]}
        return not ({"dropout", "augmentation"} <= raised or {"width", "depth"} <= raised
                    or ("weight_decay" in raised
                        and config["lr_scale"] != max(CORE["lr_scale"])))

    if scale == "smoke":
        configs = [{**core, **PLAIN, **({axis: RAISED[axis]} if axis else {})}
                   for core in grid(CORE) for axis in (None, *PLAIN)]
    else:
        configs = grid({**CORE, **{a: (PLAIN[a], RAISED[a]) for a in PLAIN}})
    return [c for c in configs if allowed(c)]


def measured_layers(model: torch.nn.Module, arch) -> tuple[list[str], list[str]]:
    pre = getattr(model, "netclaims_preactivations", None)
    if not pre:
        raise NotApplicable(f"{arch} does not declare its pre-activation modules "
                            "(netclaims_preactivations), which c1, c3 and c4 read")
    return list(pre), list(pre.values())


def measures_at(model: torch.nn.Module, run, arch, measures: tuple[str, ...] = MEASURES, *,
                 detailed: bool = False) -> dict[str, torch.Tensor]:
    """``measures`` of ``model`` (the run's final net or one of its checkpoints) on the test
    set; ``detailed`` adds c3 with k = 1 and every measure per layer."""
    units, pre = measured_layers(model, arch)
    data = run.data
    x, classes, subclasses = (data.x_test[:MEASURE_SAMPLES], data.y_test[:MEASURE_SAMPLES],
                              data.subclasses_test[:MEASURE_SAMPLES])
    recorded = collect(model, x, units + pre, reduce="max")
    preacts = {k: recorded[k] for k in pre}
    acts = {k: recorded[k] for k in units}
    compute = {
        "c1": lambda per_layer: c1_subclass_selectivity(preacts, classes, subclasses,
                                                        per_layer=per_layer),
        "c2": lambda per_layer: c2_subclass_silhouette(acts, classes, subclasses,
                                                       per_layer=per_layer),
        "c3": lambda per_layer: c3_class_std_ratio(preacts, classes, per_layer=per_layer),
        "c4": lambda per_layer: c4_class_distance_std_ratio(preacts, classes,
                                                            per_layer=per_layer)}
    out = {name: torch.tensor(float(compute[name](False))) for name in measures}
    if detailed:
        out["c3_k1"] = torch.tensor(float(c3_class_std_ratio(preacts, classes, k=1)))
        for name in measures:
            values = compute[name](True)
            out[f"{name}layers"] = torch.tensor(
                [values.get(k, np.nan) for k in (pre if name != "c2" else units)])
    return out


def measures_of(run, arch) -> dict[str, torch.Tensor]:
    """c1–c4, c3 with k = 1, per-layer c1–c4, c3 at the first checkpoint and the sharpness
    baseline of one zoo model (cached beside the run)."""
    def compute() -> dict[str, torch.Tensor]:
        final = measures_at(run.model, run, arch, detailed=True)
        first = measures_at(run.checkpoint(run.spec.checkpoint_epochs[0]), run, arch, ("c3",))
        x, y = run.data.x_train[:SHARPNESS_SAMPLES], run.data.y_train[:SHARPNESS_SAMPLES]
        return {**final, "c3_first": first["c3"],
                "flatness": torch.tensor(random_sharpness(run.model, x, y, seed=0))}

    params = {"measures": [*MEASURES, "c3_k1", "layers", "first"], "sharpness": SHARPNESS_SAMPLES,
              "samples": MEASURE_SAMPLES}
    return run.derived("intraclass", params, compute)


def over_training(run, arch) -> dict[str, torch.Tensor]:
    """c1–c4 at every kept checkpoint of one zoo model (cached beside the run; IC-8's figure
    reads it for the best and worst models only)."""
    def compute() -> dict[str, torch.Tensor]:
        epochs = list(run.spec.checkpoint_epochs)
        values = [measures_at(run.checkpoint(e), run, arch) for e in epochs]
        return {"epoch": torch.tensor(epochs, dtype=torch.float64),
                **{m: torch.stack([v[m] for v in values]) for m in MEASURES}}

    return run.derived("intraclass-over-training",
                       {"measures": list(MEASURES), "samples": MEASURE_SAMPLES}, compute)


def hierarchy(scale: str, data_root: str | None) -> dict:
    """Spec fields giving the zoo classes with subclasses: at paper scale with a local data
    folder, CIFAR-100's 20 coarse classes over its 100 fine ones (the paper's task); otherwise
    the scale's dataset (MNIST-1D) with the digits paired into :data:`SUPERCLASSES`."""
    if scale == "paper" and data_root is not None:
        return {"dataset": "cifar100", "dataset_options": {"coarse": True}}
    return {"superclasses": SUPERCLASSES}


def tau_estimate(frame: pd.DataFrame, measure: str) -> stats.Estimate:
    """Total granulated τ of ``measure`` against test accuracy over the zoo's axes."""
    return replace(stats.granulated_tau(frame, measure, "test_acc", list(AXES),
                                        n_resamples=RESAMPLES),
                   statistic=f"granulated tau({measure}, test accuracy)")


def table_figure(frame: pd.DataFrame, arch):
    """The paper's table: ψ per hyperparameter and the total, per measure, each cell beside
    the paper's value (Table 1) in parentheses."""
    rows, labels = [], []
    for measure in (*MEASURES, "flatness"):
        taus = group_taus(frame, measure, "test_acc", list(AXES))
        psi = [np.mean(t) if t else np.nan for t in taus.values()]
        paper = PAPER_TABLE_1[measure]
        rows.append([f"{v:.2f} ({paper[a]:.2f})" for a, v in zip(AXES, psi, strict=True)]
                    + [f"{np.nanmean(psi):.2f} ({paper['total']:.2f})"])
        labels.append(measure if measure != "flatness" else "sharpness (1/σ′)")
    fig, ax = plt.subplots(figsize=(12, 2.4))
    ax.axis("off")
    ax.table(cellText=rows, rowLabels=labels, colLabels=[*AXES, "total"], loc="center")
    ax.set_title(f"granulated Kendall τ against test accuracy, {arch}; in parentheses the "
                 "paper's Table 1 (ResNets, CIFAR-100 superclasses)", fontsize=8)
    return fig


def scatter_figure(frame: pd.DataFrame, arch):
    measures = (*MEASURES, "flatness")
    fig, axes = plt.subplots(1, len(measures), figsize=(3 * len(measures), 3), sharey=True)
    for ax, measure in zip(axes, measures, strict=True):
        ax.scatter(frame[measure], frame["test_acc"], s=14)
        ax.set(xlabel=measure if measure != "flatness" else "sharpness σ′")
    axes[0].set_ylabel("test accuracy")
    fig.suptitle(f"measures against test accuracy (paper Fig. 3), {arch}")
    fig.tight_layout()
    return fig


PREDICTS_GENERALIZATION = Rule("greater", min_effect=0.3)
"""IC-1…IC-4, IC-9: the granulated τ of the measure with test accuracy > 0 and ≥ 0.3."""


def granulated_tau_evidence(measure: str, zoo: pd.DataFrame, arch, save_figure) -> Evidence:
    """Granulated τ(measure, test accuracy) over the zoo, with the per-axis ψ kept."""
    save_figure(table_figure(zoo, arch), "tau-table")
    save_figure(scatter_figure(zoo, arch), "measures-vs-accuracy")
    return Evidence(tau_estimate(zoo, measure),
                    {"psi": {a: (float(np.mean(t)) if t else None) for a, t in
                             group_taus(zoo, measure, "test_acc", list(AXES)).items()}})


def layer_figure(zoo: pd.DataFrame, arch, title: str):
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(3.2 * len(MEASURES), 3))
    for ax, measure in zip(axes, MEASURES, strict=True):
        for values in zoo[f"{measure}layers"]:
            ax.plot(range(1, len(values) + 1), values, alpha=0.4)
        ax.set(xlabel="layer depth", title=measure)
    fig.suptitle(f"{title}, {arch}")
    fig.tight_layout()
    return fig
