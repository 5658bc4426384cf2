"""Claims of "Intraclass clustering: an implicit learning ability that regularizes DNNs"
(Carbonnelle & De Vleeschouwer 2021).

Shared smoke protocol (scaled from the paper's CIFAR-100-coarse VGG / ResNet zoos): a
generalization zoo per architecture on the small task (the first 1000 MNIST-1D training
samples, ``claims/conftest.py``) with the ten digits grouped into five superclasses
({0,1}, {2,3}, …) — the nets train on superclasses, the subclasses are the digits. The zoo
varies the paper's eight hyperparameters under its pairing rules (:func:`zoo_design`):
learning rate × {⅓, 1} of the registry's Adam rate capped at the paper's top (3.2e-3; :data:`CORE`)
and optimizer {Adam, SGD with momentum 0.9 at 100 × the Adam rate} crossed; around each
of those four, one at a time, batch size 100 → 32, weight decay 0 → 5e-4 (only at the highest
rate), dropout 0 → 0.2, shift augmentation off → on, width × 1 → 1.5, depth × 1 → 1.5 (of the
scale's own): 26 models, one training each (paper scale: every allowed combination, 108, on
CIFAR-100's coarse classes when ``--netclaims-data-root`` holds it; :func:`hierarchy`).
Measures on the 1000 test samples: pre-activations of every hidden unit layer (before the
ReLU; conv maps max-pooled over positions), k = neurons / classes as the authors' code, c2 on
the activations after the ReLU. Granulated Kendall τ (Jiang et al. 2020) against test
accuracy; its CI resamples, per hyperparameter, the groups of models that differ only in that
hyperparameter.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from netclaims import stats
from netclaims.claims import NotApplicable, claim, grid
from netclaims.metrics import (
    c1_subclass_selectivity,
    c2_subclass_silhouette,
    c3_class_std_ratio,
    c4_class_distance_std_ratio,
    granulated_kendall,
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


def _layers(model: torch.nn.Module, arch) -> tuple[list[str], list[str]]:
    pre = getattr(model, "netclaims_preactivations", None)
    if not pre:
        raise NotApplicable(f"{arch} does not declare its pre-activation modules "
                            "(netclaims_preactivations), which c1, c3 and c4 read")
    return list(pre), list(pre.values())


def _measures_at(model: torch.nn.Module, run, arch, measures: tuple[str, ...] = MEASURES, *,
                 detailed: bool = False) -> dict[str, torch.Tensor]:
    """``measures`` of ``model`` (the run's final net or one of its checkpoints) on the test
    set; ``detailed`` adds c3 with k = 1 and every measure per layer."""
    units, pre = _layers(model, arch)
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
            out[f"{name}_layers"] = torch.tensor(
                [values.get(k, np.nan) for k in (pre if name != "c2" else units)])
    return out


def _measures(run, arch) -> dict[str, torch.Tensor]:
    """c1–c4, c3 with k = 1, per-layer c1–c4, c3 at the first checkpoint and the sharpness
    baseline of one zoo model (cached beside the run)."""
    def compute() -> dict[str, torch.Tensor]:
        final = _measures_at(run.model, run, arch, detailed=True)
        first = _measures_at(run.checkpoint(run.spec.checkpoint_epochs[0]), run, arch, ("c3",))
        x, y = run.data.x_train[:SHARPNESS_SAMPLES], run.data.y_train[:SHARPNESS_SAMPLES]
        return {**final, "c3_first": first["c3"],
                "flatness": torch.tensor(random_sharpness(run.model, x, y, seed=0))}

    params = {"measures": [*MEASURES, "c3_k1", "layers", "first"], "sharpness": SHARPNESS_SAMPLES,
              "samples": MEASURE_SAMPLES}
    return run.derived("intraclass", params, compute)


def _over_training(run, arch) -> dict[str, torch.Tensor]:
    """c1–c4 at every kept checkpoint of one zoo model (cached beside the run; IC-8's figure
    reads it for the best and worst models only)."""
    def compute() -> dict[str, torch.Tensor]:
        epochs = list(run.spec.checkpoint_epochs)
        values = [_measures_at(run.checkpoint(e), run, arch) for e in epochs]
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


@pytest.fixture
def zoo(arch, scale, train_runs, keep_healthy, run_spec, small_task,
        netclaims_settings) -> pd.DataFrame:
    """The generalization zoo of this architecture, one row per model that trained: its
    hyperparameters, its run, test accuracy and measures (per-layer measures as arrays).
    A configuration that did not train is left out, as the paper left out the VGG variants
    that could not reach ~100% training accuracy (section 3.1, footnote 4); the claim's
    record lists it."""
    combos = zoo_design(scale)
    task = {**small_task, **hierarchy(scale, netclaims_settings.data_root)}
    base = run_spec(arch)
    adam_lr = min(base.lr if base.optimizer == "adam" else base.lr / ADAM_TO_SGD,
                  TOP_SGD_RATE / ADAM_TO_SGD)
    variants = [{**task, "optimizer": c["optimizer"],
                 "lr": adam_lr * c["lr_scale"] * (ADAM_TO_SGD if c["optimizer"] == "momentum"
                                                  else 1.0),
                 "batch_size": c["batch_size"], "weight_decay": c["weight_decay"],
                 "dropout": c["dropout"], "augmentation": "auto" if c["augmentation"] else None,
                 "width": base.width * c["width"], "depth": base.depth * c["depth"]}
                for c in combos]
    rows = []
    runs = train_runs(arch, variants, derive=partial(_measures, arch=arch), read=False)
    healthy = {run.spec.key for run in keep_healthy(runs)}
    for combo, run in zip(combos, runs, strict=True):
        if run.spec.key not in healthy:
            continue
        m = _measures(run, arch)
        last = run.history.iloc[-1]
        rows.append({**combo, "run": run, "test_acc": float(last["test_acc"]),
                     "train_acc": float(last["train_acc"]),
                     **{k: float(v) for k, v in m.items() if v.ndim == 0},
                     **{k: v.numpy() for k, v in m.items() if v.ndim == 1}})
    return pd.DataFrame(rows)


def tau_estimate(frame: pd.DataFrame, measure: str) -> stats.Estimate:
    """Total granulated τ of ``measure`` against test accuracy over the zoo's axes."""
    return replace(stats.granulated_tau(frame, measure, "test_acc", list(AXES),
                                        n_resamples=RESAMPLES),
                   statistic=f"granulated tau({measure}, test accuracy)")


def _table_figure(frame: pd.DataFrame, arch):
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


def _scatter_figure(frame: pd.DataFrame, arch):
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


def _granulated_tau(measure: str, zoo: pd.DataFrame, arch, save_figure) -> Evidence:
    """Granulated τ(measure, test accuracy) over the zoo, with the per-axis ψ kept."""
    save_figure(_table_figure(zoo, arch), "tau-table")
    save_figure(_scatter_figure(zoo, arch), "measures-vs-accuracy")
    return Evidence(tau_estimate(zoo, measure),
                    {"psi": {a: (float(np.mean(t)) if t else None) for a, t in
                             group_taus(zoo, measure, "test_acc", list(AXES)).items()}})


@claim("IC-1", finding="c1 (neuron-level subclass selectivity) predicts generalization",
       rule=PREDICTS_GENERALIZATION, requires=ZOO_NEEDS)
def test_IC_1_c1_predicts_generalization(arch, zoo, save_figure):
    """Granulated τ(c1, test accuracy), total > 0, ≥ 0.3 (paper Table 1)."""
    return _granulated_tau("c1", zoo, arch, save_figure)


@claim("IC-2", finding="c2 (layer-level silhouette of subclasses) predicts generalization",
       rule=PREDICTS_GENERALIZATION, requires=ZOO_NEEDS)
def test_IC_2_c2_predicts_generalization(arch, zoo, save_figure):
    """Granulated τ(c2, test accuracy), total > 0, ≥ 0.3 (paper Table 1)."""
    return _granulated_tau("c2", zoo, arch, save_figure)


@claim("IC-3", finding="c3 (neuron-level class/data std ratio) predicts generalization",
       rule=PREDICTS_GENERALIZATION, requires=ZOO_NEEDS)
def test_IC_3_c3_predicts_generalization(arch, zoo, save_figure):
    """Granulated τ(c3, test accuracy), total > 0, ≥ 0.3 (paper Table 1)."""
    return _granulated_tau("c3", zoo, arch, save_figure)


@claim("IC-4", finding="c4 (layer-level std of cosine distances ratio) predicts "
                       "generalization", rule=PREDICTS_GENERALIZATION,
       requires=ZOO_NEEDS)
def test_IC_4_c4_predicts_generalization(arch, zoo, save_figure):
    """Granulated τ(c4, test accuracy), total > 0, ≥ 0.3 (paper Table 1)."""
    return _granulated_tau("c4", zoo, arch, save_figure)


@claim("IC-9", finding="one neuron per class already predicts generalization",
       rule=PREDICTS_GENERALIZATION, requires=ZOO_NEEDS)
def test_IC_9_c3_with_k_1_predicts_generalization(arch, zoo, save_figure):
    """Granulated τ(c3 with k = 1, test accuracy), total > 0, ≥ 0.3 (paper section 4)."""
    return _granulated_tau("c3_k1", zoo, arch, save_figure)


@claim("IC-5", finding="intraclass clustering measures beat a sharpness baseline",
       rule=Rule("greater"), requires=ZOO_NEEDS)
def test_IC_5_c3_beats_sharpness(arch, zoo):
    """total τ(c3) − total τ(sharpness) > 0 (paper Table 1: sharpness from random weight
    perturbations, Jiang et al. 2020).

    Scaled protocol: sharpness σ′ = the largest relative Gaussian weight perturbation that
    raises the training loss (500 training samples) by at most 0.1, 5 draws, bisection
    (larger = flatter, ranked against test accuracy as the paper's 1/σ′² reversed); the CI
    resamples groups per hyperparameter for both measures with the same draws.
    """
    est = replace(stats.granulated_tau(zoo, "c3", "test_acc", list(AXES), minus="flatness",
                                       n_resamples=RESAMPLES),
                  statistic="total tau(c3) - total tau(sharpness)")
    totals = {m: granulated_kendall(zoo, m, "test_acc", list(AXES))["total"]
              for m in ("c3", "flatness")}
    return Evidence(est, {"tau_c3": totals["c3"], "tau_sharpness": totals["flatness"]})


def _layer_figure(zoo: pd.DataFrame, arch, title: str):
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(3.2 * len(MEASURES), 3))
    for ax, measure in zip(axes, MEASURES, strict=True):
        for values in zoo[f"{measure}_layers"]:
            ax.plot(range(1, len(values) + 1), values, alpha=0.4)
        ax.set(xlabel="layer depth", title=measure)
    fig.suptitle(f"{title}, {arch}")
    fig.tight_layout()
    return fig


@claim("IC-6", finding="the measures increase with depth", rule=Rule("greater"), requires=ZOO_NEEDS)
def test_IC_6_measures_increase_with_depth(arch, zoo, save_figure):
    """Spearman ρ(layer depth, per-layer measure) > 0, per model the mean over c1–c4 of ρ,
    then the mean over models with a CI over models (paper Fig. 5)."""
    per_model = []
    for _, row in zoo.iterrows():
        rhos = []
        for measure in MEASURES:
            values = np.asarray(row[f"{measure}_layers"], float)
            keep = np.isfinite(values)
            if keep.sum() >= 3 and np.ptp(values[keep]) > 0:
                depth = np.arange(values.size)[keep]
                rhos.append(stats.CORRELATIONS["spearman"](depth, values[keep]))
        if rhos:
            per_model.append(float(np.mean(rhos)))
    if len(per_model) < 2:
        raise NotApplicable(f"{arch} has fewer than 3 unit layers with a measure that varies")
    save_figure(_layer_figure(zoo, arch, "per-layer measures (paper Fig. 5)"),
                "measures-by-layer")
    est = replace(stats.mean(per_model), statistic="mean over models of rho(depth, measure)")
    return est


@claim("IC-7", finding="c3 and c4 drop sharply at the penultimate layer",
       rule=Rule("less"), requires=ZOO_NEEDS)
def test_IC_7_c3_c4_drop_at_the_penultimate_layer(arch, zoo):
    """measure(penultimate layer) − measure(the layer before it) < 0, the mean of the c3 and
    c4 differences per model, mean over models with a CI over models (paper Fig. 5)."""
    diffs = []
    for _, row in zoo.iterrows():
        pair = [np.asarray(row[f"{m}_layers"], float)[-2:] for m in ("c3", "c4")]
        if all(p.size == 2 and np.all(np.isfinite(p)) for p in pair):
            diffs.append(float(np.mean([p[1] - p[0] for p in pair])))
    if len(diffs) < 2:
        raise NotApplicable(f"{arch} has fewer than two hidden unit layers")
    est = replace(stats.mean(diffs),
                  statistic="measure(penultimate) - measure(layer before)")
    return est


@claim("IC-8", finding="differences between well- and poorly-generalizing models arise early",
       rule=Rule("greater", reference=0.5, inclusive=True), requires=ZOO_NEEDS)
def test_IC_8_differences_arise_early(arch, zoo, save_figure):
    """Fraction of the final c3 gap between the best and worst models already present early
    in training ≥ 0.5 (paper Fig. 6, at 10% of training).

    Scaled protocol: the three best and three worst models by test accuracy, paired by rank
    (best with worst, second with second-worst, …); per pair the c3 gap at the first kept
    checkpoint (1/8 of training, the nearest to 10%) over the final gap; mean over pairs
    with a CI over pairs.
    """
    ranked = zoo.sort_values("test_acc", ascending=False).reset_index(drop=True)
    best, worst = ranked.head(3), ranked.tail(3).iloc[::-1]
    fractions = [(b["c3_first"] - w["c3_first"]) / (b["c3"] - w["c3"])
                 for (_, b), (_, w) in zip(best.iterrows(), worst.iterrows(), strict=True)
                 if b["c3"] != w["c3"]]
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(3.2 * len(MEASURES), 3))
    for group, color, label in ((best, "tab:green", "3 best"), (worst, "tab:red", "3 worst")):
        for i, (_, row) in enumerate(group.iterrows()):
            curves = _over_training(row["run"], arch)
            for ax, measure in zip(axes, MEASURES, strict=True):
                ax.plot(curves["epoch"], curves[measure], color=color, marker="o", ms=3,
                        alpha=0.7, label=label if i == 0 else None)
    for ax, measure in zip(axes, MEASURES, strict=True):
        ax.set(xlabel="epoch", title=measure)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"IC-8 measures over training, best and worst models by test accuracy, {arch}",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, "measures-over-training")
    est = replace(stats.mean(fractions), statistic="early c3 gap / final c3 gap")
    return est
