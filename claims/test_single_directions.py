"""Claims of "On the importance of single directions for generalization" (Morcos et al. 2018).

Shared smoke protocol (scaled from the paper's MNIST MLP / CIFAR-10 ConvNet / ImageNet
ResNet): each architecture is trained on MNIST-1D (4000 / 1000) with its registry defaults,
once with batch normalization and once without, for every seed (3 at smoke scale, 5 at paper
scale). Units are taken after the ReLU; conv feature maps are averaged over positions for
selectivity and ablated whole. Ablations follow the paper: every unit layer of an MLP, the last
three unit layers of conv and residual nets. Effects are computed per seed and their CIs are
over seeds (bootstrap), so with 3 seeds the intervals are wide by design.
"""

from __future__ import annotations

from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import torch

from netclaims import models, stats
from netclaims.claims import Architecture, claim
from netclaims.metrics import (
    Curve,
    ablation_curve,
    class_selectivity,
    incoming_l1_norm,
    mutual_information,
    single_unit_importance,
    unit_statistics,
)
from netclaims.stats import Rule, judge
from netclaims.units import collect, incoming_layer

ORDERINGS = 5
EVAL_SAMPLES = 500


def _runs(train_run, arch: Architecture, seeds: list[int], batchnorm: bool) -> list:
    return [train_run(arch, seed=s, batchnorm=batchnorm) for s in seeds]


def _ablated_layers(model: torch.nn.Module, arch: Architecture) -> list[str]:
    layers = models.stages_of(model).layers
    return layers if "conv" not in arch.capabilities else layers[-3:]


def _eval_set(run) -> tuple[torch.Tensor, torch.Tensor]:
    return run.data.x_test[:EVAL_SAMPLES], run.data.y_test[:EVAL_SAMPLES]


def _curve(run, arch: Architecture, fill: str) -> Curve:
    """Cumulative ablation curve of the paper's layers on the evaluation set, units clamped to
    zero or to their mean over the training set (cached beside the run)."""
    model = run.model
    layers = _ablated_layers(model, arch)

    def compute() -> dict[str, torch.Tensor]:
        means = None
        if fill == "mean":
            moments = unit_statistics(model, run.data.x_train, layers)
            means = {layer: moments[layer].mean.float() for layer in layers}
        x, y = _eval_set(run)
        return ablation_curve(model, x, y, layers, orderings=ORDERINGS, seed=run.spec.seed,
                              fill=means).to_tensors()

    params = {"layers": layers, "fill": fill, "orderings": ORDERINGS, "samples": EVAL_SAMPLES}
    return Curve.from_tensors(run.derived("ablation-curve", params, compute), "accuracy",
                              "fraction")


def _zero_curve(run, arch: Architecture) -> Curve:
    return _curve(run, arch, "zero")


def _third_layers(model: torch.nn.Module) -> tuple[list[str], list[str]]:
    layers = models.stages_of(model).layers
    third = max(1, len(layers) // 3)
    return layers[:third], layers[-third:]


def _importance(run) -> dict[str, torch.Tensor]:
    """Single-unit importance (test-loss increase) of the units in the earliest and the latest
    third of the unit layers (cached beside the run)."""
    model = run.model
    early, late = _third_layers(model)
    layers = list(dict.fromkeys(early + late))

    def compute() -> dict[str, torch.Tensor]:
        x, y = _eval_set(run)
        return {layer: single_unit_importance(model, x, y, layer) for layer in layers}

    return run.derived("importance", {"layers": layers, "samples": EVAL_SAMPLES}, compute)


def _unit_measure(run, layers: list[str], metric) -> dict[str, torch.Tensor]:
    acts = collect(run.model, run.data.x_test, layers)
    return {layer: metric(acts[layer], run.data.y_test).double() for layer in layers}


def _per_seed_rho(runs, pairs) -> list[float]:
    """Spearman ρ over the units of each network (one value per seed)."""
    rhos = []
    for run in runs:
        x, y = pairs(run)
        rhos.append(stats.correlation(x, y, n_resamples=99).value)
    return rhos


def _mean_rho(cid: str, finding: str, rhos: list[float], rule: Rule, statistic: str):
    est = replace(stats.mean(rhos), statistic=statistic)
    return judge(cid, est, rule, finding=finding, details={"per_seed_rho": rhos})


def _mean_over_layers(run, metric) -> float:
    model = run.model
    layers = models.stages_of(model).layers
    x, y = run.data.x_test, run.data.y_test
    acts = collect(model, x, layers)
    return float(np.mean([float(metric(acts[layer], y).mean()) for layer in layers]))


def _paired_bn_claim(cid: str, finding: str, arch, train_run, seeds, measure, rule,
                     statistic: str):
    with_bn = [measure(r) for r in _runs(train_run, arch, seeds, True)]
    without = [measure(r) for r in _runs(train_run, arch, seeds, False)]
    est = replace(stats.mean_difference(with_bn, without, paired=True), statistic=statistic)
    return judge(cid, est, rule, finding=finding,
                 details={"with_bn": with_bn, "without_bn": without})


@claim("SD-7", finding="batch norm makes networks more robust to cumulative ablation",
       requires=["stages"])
def test_SD_7_batchnorm_robust_to_ablation(arch, train_run, seeds, save_figure):
    """AUC(BN) − AUC(no BN) > 0 (paper Fig. 5b, CIFAR-10 ConvNets).

    Scaled protocol: per seed, cumulative ablation curve on 500 MNIST-1D test samples, 11
    fractions from 0 to 1, 5 random orderings, test accuracy normalized by the intact
    accuracy; AUC by trapezoid. Effect: paired mean difference over seeds.
    """
    curves: dict[bool, list] = {True: [], False: []}

    def auc(run) -> float:
        curve = _zero_curve(run, arch)
        curves[run.spec.batchnorm].append(curve)
        return curve.auc

    verdict = _paired_bn_claim(
        "SD-7", "batch norm makes networks more robust to cumulative ablation", arch,
        train_run, seeds, auc, Rule("greater"), "AUC(BN) - AUC(no BN)")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for bn, color in ((True, "tab:blue"), (False, "tab:purple")):
        mean = np.mean([c.normalized.mean(0) for c in curves[bn]], axis=0)
        ax.plot(curves[bn][0].x, mean, color=color, label="batch norm" if bn else "no batch norm")
    ax.set(xlabel="fraction of units ablated", ylabel="accuracy / intact accuracy",
           title=f"SD-7 cumulative ablation, {arch}")
    ax.legend()
    save_figure(fig, "ablation-curves")
    return verdict


@claim("SD-8", finding="batch norm lowers the class selectivity of units", requires=["stages"])
def test_SD_8_batchnorm_lowers_selectivity(arch, train_run, seeds):
    """mean SI(BN) − mean SI(no BN) < 0 (paper Fig. 6a).

    Scaled protocol: class selectivity index (class means, eps 1e-6) of every unit after the
    ReLU on the MNIST-1D test set, averaged over units of each layer, then over layers; paired
    difference over seeds.
    """
    return _paired_bn_claim(
        "SD-8", "batch norm lowers the class selectivity of units", arch, train_run, seeds,
        lambda run: _mean_over_layers(run, class_selectivity), Rule("less"),
        "SI(BN) - SI(no BN)")


@claim("SD-9", finding="batch norm raises the mutual information between units and class",
       requires=["stages"])
def test_SD_9_batchnorm_raises_mutual_information(arch, train_run, seeds):
    """mean MI(BN) − mean MI(no BN) > 0 (paper Fig. 6b).

    Scaled protocol: mutual information (bits; 10 equal-frequency bins, Miller–Madow
    corrected) of every unit with the class on the MNIST-1D test set, averaged over units and
    layers; paired difference over seeds.
    """
    return _paired_bn_claim(
        "SD-9", "batch norm raises the mutual information between units and class", arch,
        train_run, seeds, lambda run: _mean_over_layers(run, mutual_information),
        Rule("greater"), "MI(BN) - MI(no BN)")


@claim("SD-14", finding="class selectivity increases with depth", requires=["stages"])
def test_SD_14_selectivity_increases_with_depth(arch, train_run, seeds, save_figure):
    """Spearman ρ(layer depth, mean SI of the layer) > 0, ρ ≥ 0.5 (paper section 3.4).

    Scaled protocol: networks without batch norm; mean SI per unit layer on the MNIST-1D test
    set; ρ over the (depth, SI) points of every seed pooled, CI by resampling points.
    """
    depths, values = [], []
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for run in _runs(train_run, arch, seeds, False):
        model = run.model
        layers = models.stages_of(model).layers
        acts = collect(model, run.data.x_test, layers)
        si = [float(class_selectivity(acts[layer], run.data.y_test).mean()) for layer in layers]
        depths += list(range(len(layers)))
        values += si
        ax.plot(range(len(layers)), si, marker="o", alpha=0.7, label=f"seed {run.spec.seed}")
    ax.set(xlabel="layer depth", ylabel="mean class selectivity",
           title=f"SD-14 selectivity by depth, {arch}")
    ax.legend()
    save_figure(fig, "selectivity-by-depth")
    est = stats.correlation(depths, values, method="spearman")
    return judge("SD-14", est, Rule("greater", min_effect=0.5),
                 finding="class selectivity increases with depth")


@claim("SD-16", finding="ablating units in early layers is more damaging than in later layers",
       requires=["stages"])
def test_SD_16_early_units_more_important(arch, train_run, seeds, save_figure):
    """mean single-unit importance, earliest third of layers − latest third > 0 (paper
    section 3.4: "ablations in early layers were more impactful").

    Scaled protocol: networks without batch norm; importance = increase of the test loss
    (500 MNIST-1D test samples) when one unit alone is ablated (zeroed); per seed the mean
    over units of the earliest third of unit layers minus the latest third; CI over seeds.
    """
    diffs, per_layer = [], []
    for run in _runs(train_run, arch, seeds, False):
        early_layers, late_layers = _third_layers(run.model)
        importance = _importance(run)
        early = torch.cat([importance[layer] for layer in early_layers]).mean()
        late = torch.cat([importance[layer] for layer in late_layers]).mean()
        diffs.append(float(early - late))
        per_layer.append({layer: float(v.mean()) for layer, v in importance.items()})
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for seed_values in per_layer:
        ax.plot(list(seed_values), list(seed_values.values()), marker="o", alpha=0.7)
    ax.set(xlabel="layer", ylabel="mean loss increase", title=f"SD-16 importance, {arch}")
    ax.tick_params(axis="x", rotation=45)
    save_figure(fig, "importance-by-layer")
    est = replace(stats.mean(diffs), statistic="importance(early) - importance(late)")
    return judge("SD-16", est, Rule("greater"),
                 finding="ablating units in early layers is more damaging than in later layers")


def _si_importance(run, layers: list[str], metric=class_selectivity):
    importance = _importance(run)
    measure = _unit_measure(run, layers, metric)
    return (torch.cat([measure[layer] for layer in layers]),
            torch.cat([importance[layer] for layer in layers]))


@claim("SD-10", finding="class selectivity is a poor predictor of a unit's importance",
       requires=["stages"])
def test_SD_10_selectivity_poor_predictor_of_importance(arch, train_run, seeds, save_figure):
    """|Spearman ρ(SI, importance)| small: the CI of ρ within [-0.3, 0.3] (paper Fig. 7).

    Scaled protocol: networks without batch norm; for the units of the earliest and latest
    thirds of the unit layers, SI on the MNIST-1D test set and importance = test-loss increase
    (500 samples) when the unit alone is zeroed; ρ over the units of each network; mean ρ over
    seeds with a bootstrap CI over seeds.
    """
    runs = _runs(train_run, arch, seeds, False)
    fig, ax = plt.subplots(figsize=(5, 3.5))

    def pairs(run):
        early, late = _third_layers(run.model)
        si, imp = _si_importance(run, list(dict.fromkeys(early + late)))
        ax.scatter(si.numpy(), imp.numpy(), s=6, alpha=0.5, label=f"seed {run.spec.seed}")
        return si, imp

    rhos = _per_seed_rho(runs, pairs)
    ax.set(xlabel="class selectivity", ylabel="loss increase when ablated",
           title=f"SD-10 selectivity vs importance, {arch}")
    ax.legend()
    save_figure(fig, "selectivity-vs-importance")
    return _mean_rho("SD-10", "class selectivity is a poor predictor of a unit's importance",
                     rhos, Rule("within", band=(-0.3, 0.3)), "rho(SI, importance)")


@claim("SD-11", finding="where selectivity relates to importance, the relation is negative "
                        "and driven by early layers", requires=["stages"])
def test_SD_11_early_layers_negative_selectivity_importance(arch, train_run, seeds):
    """ρ(SI, importance) in the earliest third of the unit layers < 0 (paper Fig. 7c).

    Scaled protocol: as SD-10, restricted to the units of the earliest third of the layers.
    """
    runs = _runs(train_run, arch, seeds, False)
    rhos = _per_seed_rho(runs, lambda run: _si_importance(run, _third_layers(run.model)[0]))
    return _mean_rho("SD-11", "where selectivity relates to importance, the relation is "
                     "negative and driven by early layers", rhos, Rule("less"),
                     "rho(SI, importance), early layers")


@claim("SD-12", finding="mutual information is also a poor predictor of importance",
       requires=["stages"])
def test_SD_12_mutual_information_poor_predictor(arch, train_run, seeds):
    """|Spearman ρ(MI, importance)| small: the CI of ρ within [-0.3, 0.3] (paper section
    3.4).

    Scaled protocol: as SD-10 with the unit's mutual information with the class (bits, 10
    equal-frequency bins, Miller–Madow) instead of its selectivity.
    """
    runs = _runs(train_run, arch, seeds, False)

    def pairs(run):
        early, late = _third_layers(run.model)
        return _si_importance(run, list(dict.fromkeys(early + late)), mutual_information)

    rhos = _per_seed_rho(runs, pairs)
    return _mean_rho("SD-12", "mutual information is also a poor predictor of importance",
                     rhos, Rule("within", band=(-0.3, 0.3)), "rho(MI, importance)")


@claim("SD-13", finding="ablating to zero is less damaging than clamping to the mean",
       requires=["stages"])
def test_SD_13_zero_ablation_less_damaging_than_mean(arch, train_run, seeds, save_figure):
    """AUC(zero) − AUC(mean) > 0 (paper appendix: ablation to the empirical mean).

    Scaled protocol: networks without batch norm; the SD-7 ablation curves (500 test samples,
    11 fractions, 5 orderings, the paper's layers) with units clamped to 0 and to their mean
    over the training set (every position of a feature map counted); paired over seeds.
    """
    runs = _runs(train_run, arch, seeds, False)
    zero = [_zero_curve(run, arch) for run in runs]
    mean = [_curve(run, arch, "mean") for run in runs]
    est = replace(stats.mean_difference([c.auc for c in zero], [c.auc for c in mean],
                                        paired=True), statistic="AUC(zero) - AUC(mean)")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for curves, color, label in ((zero, "tab:green", "zero"), (mean, "tab:red", "mean")):
        ax.plot(curves[0].x, np.mean([c.normalized.mean(0) for c in curves], axis=0),
                color=color, label=f"clamped to {label}")
    ax.set(xlabel="fraction of units ablated", ylabel="accuracy / intact accuracy",
           title=f"SD-13 zero vs mean ablation, {arch}")
    ax.legend()
    save_figure(fig, "zero-vs-mean")
    return judge("SD-13", est, Rule("greater"),
                 finding="ablating to zero is less damaging than clamping to the mean")


@claim("SD-15", finding="class selectivity is not positively related to the L1 norm of a "
                        "unit's incoming weights", requires=["stages"])
def test_SD_15_selectivity_not_related_to_weight_norm(arch, train_run, seeds):
    """Spearman ρ(SI, L1 norm of incoming weights) ≤ 0, CI upper bound ≤ 0.2 (paper
    appendix).

    Scaled protocol: networks without batch norm; every unit layer whose feeding conv or
    linear layer can be found (the nearest one before it in execution order with as many
    outputs); SI on the MNIST-1D test set; ρ over the units of each network; mean over seeds.
    """
    runs = _runs(train_run, arch, seeds, False)

    def pairs(run):
        model = run.model
        layers = models.stages_of(model).layers
        modules = dict(model.named_modules())
        norms = [incoming_l1_norm(modules[incoming_layer(model, layer, run.data.x_test)])
                 for layer in layers]
        si = _unit_measure(run, layers, class_selectivity)
        return torch.cat([si[layer] for layer in layers]), torch.cat(norms)

    rhos = _per_seed_rho(runs, pairs)
    return _mean_rho("SD-15", "class selectivity is not positively related to the L1 norm "
                     "of a unit's incoming weights", rhos,
                     Rule("less", reference=0.2, inclusive=True), "rho(SI, L1 norm)")
