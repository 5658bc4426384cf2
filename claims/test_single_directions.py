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

import matplotlib.pyplot as plt
import numpy as np
import torch

from netclaims import models, stats
from netclaims.claims import Architecture, claim
from netclaims.metrics import (
    ablation_curve,
    class_selectivity,
    mutual_information,
    single_unit_importance,
)
from netclaims.stats import Rule, judge
from netclaims.units import collect

ORDERINGS = 5
EVAL_SAMPLES = 500


def _runs(train_run, arch: Architecture, seeds: list[int], batchnorm: bool) -> list:
    return [train_run(arch, seed=s, batchnorm=batchnorm) for s in seeds]


def _ablated_layers(model: torch.nn.Module, arch: Architecture) -> list[str]:
    layers = models.stages_of(model).layers
    return layers if "conv" not in arch.capabilities else layers[-3:]


def _eval_set(run) -> tuple[torch.Tensor, torch.Tensor]:
    return run.data.x_test[:EVAL_SAMPLES], run.data.y_test[:EVAL_SAMPLES]


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
    est = stats.mean_difference(with_bn, without, paired=True)
    est = stats.Estimate(statistic, est.value, est.ci_low, est.ci_high, est.n, est.p_value,
                         est.method)
    return judge(cid, est, rule, finding=finding,
                 details={"with_bn": with_bn, "without_bn": without}), with_bn, without


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
        x, y = _eval_set(run)
        curve = ablation_curve(run.model, x, y, _ablated_layers(run.model, arch),
                               orderings=ORDERINGS, seed=run.spec.seed)
        curves[run.spec.batchnorm].append(curve)
        return curve.auc

    verdict, _, _ = _paired_bn_claim(
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
    verdict, _, _ = _paired_bn_claim(
        "SD-8", "batch norm lowers the class selectivity of units", arch, train_run, seeds,
        lambda run: _mean_over_layers(run, class_selectivity), Rule("less"),
        "SI(BN) - SI(no BN)")
    return verdict


@claim("SD-9", finding="batch norm raises the mutual information between units and class",
       requires=["stages"])
def test_SD_9_batchnorm_raises_mutual_information(arch, train_run, seeds):
    """mean MI(BN) − mean MI(no BN) > 0 (paper Fig. 6b).

    Scaled protocol: mutual information (bits; 10 equal-frequency bins, Miller–Madow
    corrected) of every unit with the class on the MNIST-1D test set, averaged over units and
    layers; paired difference over seeds.
    """
    verdict, _, _ = _paired_bn_claim(
        "SD-9", "batch norm raises the mutual information between units and class", arch,
        train_run, seeds, lambda run: _mean_over_layers(run, mutual_information),
        Rule("greater"), "MI(BN) - MI(no BN)")
    return verdict


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
        model = run.model
        layers = models.stages_of(model).layers
        third = max(1, len(layers) // 3)
        x, y = _eval_set(run)
        importance = {layer: single_unit_importance(model, x, y, layer)
                      for layer in layers[:third] + layers[-third:]}
        early = torch.cat([importance[layer] for layer in layers[:third]]).mean()
        late = torch.cat([importance[layer] for layer in layers[-third:]]).mean()
        diffs.append(float(early - late))
        per_layer.append({layer: float(v.mean()) for layer, v in importance.items()})
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for seed_values in per_layer:
        ax.plot(list(seed_values), list(seed_values.values()), marker="o", alpha=0.7)
    ax.set(xlabel="layer", ylabel="mean loss increase", title=f"SD-16 importance, {arch}")
    ax.tick_params(axis="x", rotation=45)
    save_figure(fig, "importance-by-layer")
    est = stats.mean(diffs)
    est = stats.Estimate("importance(early) - importance(late)", est.value, est.ci_low,
                         est.ci_high, est.n, est.p_value, est.method)
    return judge("SD-16", est, Rule("greater"),
                 finding="ablating units in early layers is more damaging than in later layers")
