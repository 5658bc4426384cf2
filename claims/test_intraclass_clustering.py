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
from _ic import (
    ADAM_TO_SGD,
    AXES,
    MEASURES,
    PREDICTS_GENERALIZATION,
    RESAMPLES,
    TOP_SGD_RATE,
    ZOO_NEEDS,
    granulated_tau_evidence,
    hierarchy,
    layer_figure,
    measures_of,
    over_training,
    zoo_design,
)

from netclaims import stats
from netclaims.claims import NotApplicable, claim
from netclaims.metrics import (
    granulated_kendall,
)
from netclaims.stats import Evidence, Rule


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
    runs = train_runs(arch, variants, derive=partial(measures_of, arch=arch), read=False)
    healthy = {run.spec.key for run in keep_healthy(runs)}
    for combo, run in zip(combos, runs, strict=True):
        if run.spec.key not in healthy:
            continue
        m = measures_of(run, arch)
        last = run.history.iloc[-1]
        rows.append({**combo, "run": run, "test_acc": float(last["test_acc"]),
                     "train_acc": float(last["train_acc"]),
                     **{k: float(v) for k, v in m.items() if v.ndim == 0},
                     **{k: v.numpy() for k, v in m.items() if v.ndim == 1}})
    return pd.DataFrame(rows)


@claim("IC-1", finding="c1 (neuron-level subclass selectivity) predicts generalization",
       rule=PREDICTS_GENERALIZATION, requires=ZOO_NEEDS)
def test_IC_1_c1_predicts_generalization(arch, zoo, save_figure):
    """Granulated τ(c1, test accuracy), total > 0, ≥ 0.3 (paper Table 1)."""
    return granulated_tau_evidence("c1", zoo, arch, save_figure)


@claim("IC-2", finding="c2 (layer-level silhouette of subclasses) predicts generalization",
       rule=PREDICTS_GENERALIZATION, requires=ZOO_NEEDS)
def test_IC_2_c2_predicts_generalization(arch, zoo, save_figure):
    """Granulated τ(c2, test accuracy), total > 0, ≥ 0.3 (paper Table 1)."""
    return granulated_tau_evidence("c2", zoo, arch, save_figure)


@claim("IC-3", finding="c3 (neuron-level class/data std ratio) predicts generalization",
       rule=PREDICTS_GENERALIZATION, requires=ZOO_NEEDS)
def test_IC_3_c3_predicts_generalization(arch, zoo, save_figure):
    """Granulated τ(c3, test accuracy), total > 0, ≥ 0.3 (paper Table 1)."""
    return granulated_tau_evidence("c3", zoo, arch, save_figure)


@claim("IC-4", finding="c4 (layer-level std of cosine distances ratio) predicts "
                       "generalization", rule=PREDICTS_GENERALIZATION,
       requires=ZOO_NEEDS)
def test_IC_4_c4_predicts_generalization(arch, zoo, save_figure):
    """Granulated τ(c4, test accuracy), total > 0, ≥ 0.3 (paper Table 1)."""
    return granulated_tau_evidence("c4", zoo, arch, save_figure)


@claim("IC-9", finding="one neuron per class already predicts generalization",
       rule=PREDICTS_GENERALIZATION, requires=ZOO_NEEDS)
def test_IC_9_c3_with_k_1_predicts_generalization(arch, zoo, save_figure):
    """Granulated τ(c3 with k = 1, test accuracy), total > 0, ≥ 0.3 (paper section 4)."""
    return granulated_tau_evidence("c3_k1", zoo, arch, save_figure)


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


@claim("IC-6", finding="the measures increase with depth", rule=Rule("greater"), requires=ZOO_NEEDS)
def test_IC_6_measures_increase_with_depth(arch, zoo, save_figure):
    """Spearman ρ(layer depth, per-layer measure) > 0, per model the mean over c1–c4 of ρ,
    then the mean over models with a CI over models (paper Fig. 5)."""
    per_model = []
    for _, row in zoo.iterrows():
        rhos = []
        for measure in MEASURES:
            values = np.asarray(row[f"{measure}layers"], float)
            keep = np.isfinite(values)
            if keep.sum() >= 3 and np.ptp(values[keep]) > 0:
                depth = np.arange(values.size)[keep]
                rhos.append(stats.CORRELATIONS["spearman"](depth, values[keep]))
        if rhos:
            per_model.append(float(np.mean(rhos)))
    if len(per_model) < 2:
        raise NotApplicable(f"{arch} has fewer than 3 unit layers with a measure that varies")
    save_figure(layer_figure(zoo, arch, "per-layer measures (paper Fig. 5)"),
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
        pair = [np.asarray(row[f"{m}layers"], float)[-2:] for m in ("c3", "c4")]
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
            curves = over_training(row["run"], arch)
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
