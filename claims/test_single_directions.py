"""Claims of "On the importance of single directions for generalization" (Morcos et al. 2018).

Shared smoke protocol (scaled from the paper's MNIST MLP / CIFAR-10 ConvNet / ImageNet ResNet):
for SD-7…SD-16 each architecture is trained on MNIST-1D (4000 / 1000) with its registry
defaults, once with batch normalization and once without, for every seed (3 at smoke scale, 5
at paper scale); SD-7…SD-9 compare the two, SD-10…SD-16 read the "analysis nets": with batch
norm for conv nets (the paper: "batch normalization was used for all convolutional networks"),
without for MLPs. SD-1…SD-6 use the small task shared with the frivolous-units claims
(``claims/conftest.py``): the first 1000 training samples, trained long enough to fit them even
with shuffled labels, 8 checkpoints kept; with 0–100% of the labels shuffled (SD-1, SD-2, SD-6)
or at 1/3, 1 and 3 times the registry's learning rate (the SD-3/SD-5 zoo). Units are taken
after the ReLU; conv feature maps are averaged over positions for selectivity and ablated
whole. Ablations follow the paper: every unit layer of an MLP, the last three unit layers of
conv and residual nets; curves are normalized between chance (0) and the intact net (1). Units
never active on the evaluation set are left out of per-unit means and correlations, and
counted. Effects are computed per seed and their CIs are over seeds (Student t; correlations
within a network also get a stratified permutation p-value), so with 3 seeds the intervals are
wide by design.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from _sd import (
    HIT_RATE_ABOVE_CHANCE,
    LR_SCALES,
    ablation_curve_of,
    bn_unit_means,
    by_corruption,
    dead_count,
    dropout_rates,
    dropout_zoo,
    eval_set,
    full_task_zoo,
    hit_rate,
    importances_of,
    live_measure,
    live_units_of,
    lr_zoo,
    mean_rho,
    memorization_zoo,
    noise_curve_of,
    paired_bn,
    si_importance,
    third_layers,
    zoo_figure,
    zoo_table,
)
from _shared import conv_batchnorm

from netclaims import models, stats
from netclaims.claims import claim
from netclaims.metrics import (
    above_chance,
    class_selectivity,
    curve_auc,
    incoming_l1_norm,
    mutual_information,
)
from netclaims.stats import Evidence, Rule
from netclaims.units import incoming_layer


@pytest.fixture(autouse=True)
def _zoos_started(arch, prefetch_runs, run_spec, seeds, small_task) -> None:
    """Every zoo that a claim of this file the session runs reads on the architecture,
    started in the pool in claim order before a claim waits for its own, so the pool stays
    busy while claims measure."""
    if "stages" not in arch.capabilities:
        return
    zoos = ((("SD-1", "SD-2"), memorization_zoo(arch, seeds, small_task)),
            (("SD-3", "SD-4", "SD-5"), lr_zoo(arch, seeds, small_task, run_spec)),
            (("SD-6",), dropout_zoo(arch, seeds, small_task)),
            (tuple(f"SD-{i}" for i in range(7, 17)), full_task_zoo(arch, seeds)))
    for readers, (variants, derive) in zoos:
        prefetch_runs(arch, variants, derive=derive, readers=readers)


@pytest.fixture
def sd_runs(arch, train_runs, read_runs, seeds) -> Callable[[bool], list]:
    """``sd_runs(batchnorm)``: the :func:`full_task_zoo` runs with or without batch
    norm."""
    def make(batchnorm: bool) -> list:
        runs = train_runs(arch, *full_task_zoo(arch, seeds), read=False)
        return read_runs(runs[:len(seeds)] if batchnorm else runs[-len(seeds):])
    return make


@pytest.fixture
def zoo_runs(arch, train_runs, run_spec, seeds, small_task) -> Callable[[float], list]:
    """``zoo_runs(lr_scale)``: the :func:`lr_zoo` runs at one learning-rate scale, not yet
    read (a claim reads them with ``read_runs`` or ``keep_healthy``)."""
    def make(lr_scale: float) -> list:
        runs = train_runs(arch, *lr_zoo(arch, seeds, small_task, run_spec), read=False)
        start = LR_SCALES.index(lr_scale) * len(seeds)
        return runs[start:start + len(seeds)]
    return make


@claim("SD-1", finding="networks that memorize are more sensitive to cumulative ablation",
       rule=Rule("less", min_effect=-0.5), requires=["stages"])
def test_SD_1_memorizing_nets_more_ablation_sensitive(arch, train_runs, seeds, small_task,
                                                      save_figure):
    """Spearman ρ(corrupted-label fraction, ablation AUC) < 0, ρ ≤ −0.5 (paper Fig. 1).

    Scaled protocol: per seed, nets trained on the first 1000 MNIST-1D training samples with
    0, 25, 50, 75 and 100% of the labels shuffled (each seed its own shuffle) for enough
    epochs to fit them (paper: MNIST MLP, CIFAR-10 ConvNet, ImageNet ResNet trained to fit);
    cumulative ablation of the paper's layers on 500 training samples scored against the
    labels as trained (training accuracy, as the paper), 5 random orderings, normalized
    between chance and the intact training accuracy. ρ over the 5 × seeds (fraction, AUC)
    points.
    """
    return by_corruption(
        "SD-1", lambda run: ablation_curve_of(run, arch, split="train"),
        "rho(corrupted fraction, ablation AUC)", "fraction of units ablated",
        "ablation-by-corruption", arch, train_runs, seeds, small_task, save_figure)


@claim("SD-2", finding="networks that memorize are more sensitive to noise added to every "
                       "unit", rule=Rule("less", min_effect=-0.5), requires=["stages"])
def test_SD_2_memorizing_nets_more_noise_sensitive(arch, train_runs, seeds, small_task,
                                                   save_figure):
    """Spearman ρ(corrupted-label fraction, noise-curve AUC) < 0, ρ ≤ −0.5 (paper Fig. 2).

    Scaled protocol: the SD-1 nets; Gaussian noise added at once to every unit of the
    paper's layers with std ``s · std_u`` (std_u the unit's std over the training set), 9
    scales s log-spaced in [0.1, 10], 3 noise draws; training accuracy on 500 training
    samples normalized by the intact one; AUC over log10 s divided by its range.
    """
    return by_corruption(
        "SD-2", lambda run: noise_curve_of(run, arch), "rho(corrupted fraction, noise AUC)",
        "log10 noise scale (× unit std)", "noise-by-corruption", arch, train_runs, seeds,
        small_task, save_figure)


@claim("SD-3", finding="networks that generalize worse rely more on single directions",
       rule=Rule("less"), requires=["stages"])
def test_SD_3_worse_generalization_more_reliance(arch, zoo_runs, keep_healthy, save_figure):
    """Spearman ρ(ablation AUC, generalization error) < 0 (paper Fig. 3).

    Scaled protocol: a zoo of identical topology and data (the small task, true labels, the
    architecture's default batch norm), seeds × learning rates (the registry's × 1/3, 1, 3;
    paper: 200 CIFAR-10 ConvNets
    differing in seed, data order and learning rate); generalization error = final training
    accuracy − test accuracy; AUC of the SD-7 ablation curve (500 test samples, 5
    orderings). ρ over the models.
    """
    zoo = zoo_table(zoo_runs, keep_healthy, arch)
    for m in zoo:
        m["gen_error"] = m["train_acc"] - m["test_acc"]
    save_figure(zoo_figure(zoo, "gen_error", "generalization error (train − test acc.)",
                            f"SD-3 AUC vs generalization error, {arch}"), "auc-vs-gen-error")
    est = replace(stats.correlation([m["auc"] for m in zoo], [m["gen_error"] for m in zoo]),
                  statistic="rho(AUC, generalization error)")
    return Evidence(est, {"zoo": zoo})


@claim("SD-5", finding="ablation AUC selects hyperparameters",
       rule=Rule("greater", min_effect=0.5, also=(HIT_RATE_ABOVE_CHANCE,)), requires=["stages"])
def test_SD_5_auc_selects_hyperparameters(arch, zoo_runs, keep_healthy, save_figure):
    """Spearman ρ(ablation AUC, test accuracy) > 0, ρ ≥ 0.5, and the best-AUC model of a
    random quarter of the zoo lands in its top 10% by test accuracy more often than chance
    (paper Fig. 4c: ρ = 0.914 over 192 CIFAR-10 models of 96 hyperparameter settings).

    Scaled protocol: the SD-3 zoo (seeds × 3 learning rates); 1000 random subsets of a
    quarter of the zoo (at least 2 models). The verdict is the rule on ρ; a hit rate at or
    below chance turns a PASS into INCONCLUSIVE (the rule's second condition).
    """
    zoo = zoo_table(zoo_runs, keep_healthy, arch)
    auc = np.array([m["auc"] for m in zoo])
    accuracy = np.array([m["test_acc"] for m in zoo])
    rate, chance = hit_rate(auc, accuracy)
    save_figure(zoo_figure(zoo, "test_acc", "test accuracy",
                            f"SD-5 AUC vs test accuracy, {arch}"), "auc-vs-test-accuracy")
    est = replace(stats.correlation(auc, accuracy), statistic="rho(AUC, test accuracy)")
    return Evidence(est, {"zoo": zoo, "hit_rate": rate, "chance": chance},
                    checks={HIT_RATE_ABOVE_CHANCE: rate > chance})


@claim("SD-4", finding="over training, ablation AUC and test loss are negatively correlated",
       rule=Rule("less", min_effect=-0.4), requires=["stages"])
def test_SD_4_auc_tracks_test_loss_over_training(arch, zoo_runs, read_runs, save_figure):
    """Spearman ρ(ablation AUC, test loss) over checkpoints < 0, ρ ≤ −0.4 (paper Fig. 4a-b:
    ρ = −0.728 for an MNIST MLP).

    Scaled protocol: the SD-1 nets with true labels (small task, 8 checkpoints spread over
    training; the paper's MLP trained on full MNIST); at each checkpoint above chance (a net
    at chance, e.g. at initialization, has no normalized curve), the SD-7 ablation curve (500
    test samples, 5 orderings) and the test loss from the training history; ρ per seed, mean
    ρ over seeds with a CI over seeds.
    """
    samples, traces = [], []
    for run in read_runs(zoo_runs(1.0)):
        history = run.history.set_index("epoch")
        epochs = [e for e in run.spec.checkpoint_epochs
                  if above_chance(run.checkpoint(e), *eval_set(run))]
        aucs = [ablation_curve_of(run, arch, epoch=e).auc for e in epochs]
        losses = history.loc[epochs, "test_loss"].to_numpy()
        samples.append((aucs, losses))
        traces.append((epochs, aucs, history))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    loss_ax = ax.twinx()
    for i, (epochs, aucs, history) in enumerate(traces):
        ax.plot(epochs, aucs, color="tab:green", marker="o", alpha=0.7,
                label="ablation AUC" if i == 0 else None)
        loss_ax.plot(history.index, history["train_loss"], color="tab:blue", alpha=0.5, marker=".",
                     label="train loss" if i == 0 else None)
        loss_ax.plot(history.index, history["test_loss"], color="tab:red", alpha=0.5, marker=".",
                     label="test loss" if i == 0 else None)
    ax.set(xlabel="epoch", ylabel="ablation AUC", title=f"SD-4 AUC and losses, {arch}")
    loss_ax.set_ylabel("loss")
    fig.legend(loc="lower center", fontsize=7, ncol=3)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    save_figure(fig, "auc-and-loss-over-training")
    return mean_rho(samples, "rho(AUC, test loss)")


@claim("SD-6", finding="dropout protects against ablation only up to the dropout fraction",
       rule=Rule("greater"), requires=["stages"])
def test_SD_6_dropout_protects_only_up_to_its_fraction(arch, train_runs, seeds, small_task,
                                                       save_figure):
    """AUC(true labels) − AUC(corrupted labels) over the part of the ablation curve past the
    dropout fraction > 0 (paper Fig. 5a: MNIST MLPs with dropout 0.1, 0.2, 0.3).

    Scaled protocol: the memorization task of SD-1 with dropout on every unit layer; seed i
    uses dropout 0.1, 0.2 or 0.3 (cycling) and is trained once on true and once on fully
    shuffled labels; ablation curves on 500 training samples (labels as trained, 5
    orderings); AUC over fractions past the dropout fraction, divided by its width; paired
    difference per seed, mean over seeds.
    """
    rates = dropout_rates(seeds)
    runs = iter(train_runs(arch, *dropout_zoo(arch, seeds, small_task)))
    diffs, pairs = [], []
    for p in rates:
        true, corrupted = (ablation_curve_of(next(runs), arch, split="train") for _ in range(2))
        past_dropout = [float(np.mean([curve_auc(c.x, row, start=p) for row in c.normalized]))
                        for c in (true, corrupted)]
        diffs.append(past_dropout[0] - past_dropout[1])
        pairs.append((p, true, corrupted))
    fig, axes = plt.subplots(1, len(pairs), figsize=(3.2 * len(pairs), 3.2), sharey=True,
                             squeeze=False)
    for ax, (p, true, corrupted) in zip(axes[0], pairs, strict=True):
        ax.plot(true.x, true.normalized.mean(0), color="tab:blue", label="true labels")
        ax.plot(corrupted.x, corrupted.normalized.mean(0), color="tab:red",
                label="shuffled labels")
        ax.axvline(p, color="gray", linestyle="--")
        ax.set(xlabel="fraction ablated", title=f"dropout {p}")
    axes[0][0].set_ylabel("training accuracy / intact")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"SD-6 dropout and ablation (dashed: dropout fraction), {arch}")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    save_figure(fig, "dropout-curves")
    est = replace(stats.mean(diffs), statistic="AUC past dropout, true - corrupted")
    return Evidence(est, {"per_seed": diffs})


@claim("SD-7", finding="batch norm makes networks more robust to cumulative ablation",
       rule=Rule("greater"), requires=["stages", "batchnorm"])
def test_SD_7_batchnorm_robust_to_ablation(arch, sd_runs, save_figure):
    """AUC(BN) − AUC(no BN) > 0 (paper Fig. 5b, CIFAR-10 ConvNets).

    Scaled protocol: per seed, cumulative ablation curve on 500 MNIST-1D test samples, 11
    fractions from 0 to 1, 5 random orderings, test accuracy normalized between chance and
    the intact accuracy; AUC by trapezoid. Downstream batch norms use their running
    statistics (eval mode; the paper does not say which it used); the same difference with
    the batch norms on each batch's statistics is reported beside it (details and figure).
    Effect: paired mean difference over seeds.
    """
    curves: dict[bool, list] = {True: [], False: []}

    def auc(run) -> float:
        curve = ablation_curve_of(run, arch)
        curves[run.spec.batchnorm].append(curve)
        return curve.auc

    batch = [ablation_curve_of(run, arch, batch_statistics=True) for run in sd_runs(True)]
    evidence = paired_bn({bn: [auc(run) for run in sd_runs(bn)] for bn in (True, False)},
                          "AUC(BN) - AUC(no BN)",
                          batch_statistics={"with_bn": [c.auc for c in batch]})
    without = evidence.details["without_bn"]
    evidence.details["batch_statistics"]["AUC(BN) - AUC(no BN)"] = float(
        np.mean([c.auc - w for c, w in zip(batch, without, strict=True)]))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for group, color, label in ((curves[True], "tab:blue", "batch norm (running statistics)"),
                                (batch, "tab:cyan", "batch norm (batch statistics)"),
                                (curves[False], "tab:purple", "no batch norm")):
        mean = np.mean([c.normalized.mean(0) for c in group], axis=0)
        ax.plot(group[0].x, mean, color=color, label=label,
                linestyle="--" if group is batch else "-")
    ax.set(xlabel="fraction of units ablated", ylabel="(accuracy − chance) / (intact − chance)",
           title=f"SD-7 cumulative ablation, {arch}")
    ax.legend(fontsize=7)
    save_figure(fig, "ablation-curves")
    return evidence


@claim("SD-8", finding="batch norm lowers the class selectivity of units",
       rule=Rule("less"), requires=["stages", "batchnorm", "nonnegative_units"])
def test_SD_8_batchnorm_lowers_selectivity(arch, sd_runs):
    """mean SI(BN) − mean SI(no BN) < 0 (paper Fig. 6a).

    Scaled protocol: class selectivity index (class means, eps 1e-6) of every live unit after
    the ReLU on the MNIST-1D test set, averaged over the live units of each layer, then over
    the layers: the conv feature maps of a conv net (the paper's "class selectivity of feature
    maps"), every unit layer of an MLP; dead units left out and counted; paired difference
    over seeds.
    """
    return bn_unit_means(sd_runs, arch, class_selectivity, "SI(BN) - SI(no BN)")


@claim("SD-9", finding="batch norm raises the mutual information between units and class",
       rule=Rule("greater"), requires=["stages", "batchnorm"])
def test_SD_9_batchnorm_raises_mutual_information(arch, sd_runs):
    """mean MI(BN) − mean MI(no BN) > 0 (paper Fig. 6b).

    Scaled protocol: mutual information (bits; 10 equal-frequency bins, Miller–Madow
    corrected) of every live unit with the class on the MNIST-1D test set, averaged over the
    live units and the layers of SD-8; paired difference over seeds.
    """
    return bn_unit_means(sd_runs, arch, mutual_information, "MI(BN) - MI(no BN)")


@claim("SD-14", finding="class selectivity increases with depth",
       rule=Rule("greater", min_effect=0.5), requires=["stages", "nonnegative_units"])
def test_SD_14_selectivity_increases_with_depth(arch, sd_runs, save_figure):
    """Spearman ρ(layer depth, mean SI of the layer) > 0, ρ ≥ 0.5 (paper section 3.4).

    Scaled protocol: the analysis nets (with batch norm for conv nets, as the paper; MLPs
    without); mean SI over the live units of each unit layer on the MNIST-1D test
    set; per seed, ρ over the (depth, SI) points of that net (the layers of one net are not
    independent samples); mean over seeds with a Student-t CI and the exact stratified
    permutation p-value.
    """
    samples, dead = [], []
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for run in sd_runs(conv_batchnorm(arch)):
        model = run.model
        layers = models.stages_of(model).layers
        values, live = live_measure(run, layers, class_selectivity)
        si = [float(values[layer][live[layer]].mean()) for layer in layers]
        dead.append(dead_count(live))
        samples.append((np.arange(len(layers)), si))
        ax.plot(range(len(layers)), si, marker="o", alpha=0.7, label=f"seed {run.spec.seed}")
    ax.set(xlabel="layer depth", ylabel="mean class selectivity",
           title=f"SD-14 selectivity by depth, {arch}")
    ax.legend()
    save_figure(fig, "selectivity-by-depth")
    evidence = mean_rho(samples, "mean over seeds of rho(layer depth, mean SI)")
    return replace(evidence, details={**evidence.details, "dead_units_excluded": dead})


@claim("SD-16", finding="ablating units in early layers is more damaging than in later layers",
       rule=Rule("greater"), requires=["stages"])
def test_SD_16_early_units_more_important(arch, sd_runs, save_figure):
    """mean single-unit importance, earliest third of layers − latest third > 0 (paper
    section 3.4: "ablations in early layers were more impactful").

    Scaled protocol: the analysis nets (see SD-14); importance = increase of the test loss
    (500 MNIST-1D test samples) when one unit alone is ablated (zeroed); per seed the mean
    over units of the earliest third of unit layers minus the latest third; CI over seeds.
    """
    diffs, per_layer, dead = [], [], []
    for run in sd_runs(conv_batchnorm(arch)):
        early_layers, late_layers = third_layers(run.model)
        importance = importances_of(run)
        live = live_units_of(run, list(importance))
        early, late = (torch.cat([importance[layer][live[layer]] for layer in group]).mean()
                       for group in (early_layers, late_layers))
        diffs.append(float(early - late))
        dead.append(dead_count(live))
        per_layer.append({layer: float(v[live[layer]].mean()) for layer, v in importance.items()})
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for seed_values in per_layer:
        ax.plot(list(seed_values), list(seed_values.values()), marker="o", alpha=0.7)
    ax.set(xlabel="layer", ylabel="mean loss increase", title=f"SD-16 importance, {arch}")
    ax.tick_params(axis="x", rotation=45)
    save_figure(fig, "importance-by-layer")
    return stats.seed_mean(diffs, statistic="importance(early) - importance(late)",
                           details={"dead_units_excluded": dead})


@claim("SD-10", finding="class selectivity is a poor predictor of a unit's importance",
       rule=Rule("within", band=(-0.3, 0.3)), requires=["stages", "nonnegative_units"])
def test_SD_10_selectivity_poor_predictor_of_importance(arch, sd_runs, save_figure):
    """|Spearman ρ(SI, importance)| small: the CI of ρ within [-0.3, 0.3] (paper Fig. 7).

    Scaled protocol: the analysis nets (see SD-14); for the live units of the earliest and latest
    thirds of the unit layers, SI on the MNIST-1D test set and importance = test-loss increase
    (500 samples) when the unit alone is zeroed; ρ over the units of each network; mean ρ over
    seeds with a Student-t CI over seeds.
    """
    runs = sd_runs(conv_batchnorm(arch))
    by_layer: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def pairs(run):
        early, late = third_layers(run.model)
        layers = list(dict.fromkeys(early + late))
        for layer in layers:
            by_layer.setdefault(layer, []).append(si_importance(run, [layer]))
        return si_importance(run, layers)

    samples = [pairs(run) for run in runs]
    fig, axes = plt.subplots(1, len(by_layer), figsize=(2.8 * len(by_layer), 3), sharey=True,
                             squeeze=False)
    for ax, (layer, points) in zip(axes[0], by_layer.items(), strict=True):
        ax.scatter(torch.cat([p[0] for p in points]).numpy(),
                   torch.cat([p[1] for p in points]).numpy(), s=6, alpha=0.5)
        ax.set(xlabel="class selectivity", title=layer)
    axes[0][0].set_ylabel("loss increase when ablated")
    fig.suptitle(f"SD-10/11 selectivity vs importance per layer (seeds pooled), {arch}")
    fig.tight_layout()
    save_figure(fig, "selectivity-vs-importance")
    return mean_rho(samples, "rho(SI, importance)")


@claim("SD-11", finding="where selectivity relates to importance, the relation is negative "
                        "and driven by early layers",
       rule=Rule("less"), requires=["stages", "nonnegative_units"])
def test_SD_11_early_layers_negative_selectivity_importance(arch, sd_runs):
    """ρ(SI, importance) in the earliest third of the unit layers < 0 (paper Fig. 7c).

    Scaled protocol: as SD-10, restricted to the units of the earliest third of the layers.
    """
    runs = sd_runs(conv_batchnorm(arch))
    samples = [si_importance(run, third_layers(run.model)[0]) for run in runs]
    return mean_rho(samples, "rho(SI, importance), early layers")


@claim("SD-12", finding="mutual information is also a poor predictor of importance",
       rule=Rule("within", band=(-0.3, 0.3)), requires=["stages"])
def test_SD_12_mutual_information_poor_predictor(arch, sd_runs):
    """|Spearman ρ(MI, importance)| small: the CI of ρ within [-0.3, 0.3] (paper section
    3.4).

    Scaled protocol: as SD-10 with the unit's mutual information with the class (bits, 10
    equal-frequency bins, Miller–Madow) instead of its selectivity.
    """
    runs = sd_runs(conv_batchnorm(arch))

    def pairs(run):
        early, late = third_layers(run.model)
        return si_importance(run, list(dict.fromkeys(early + late)), mutual_information)

    samples = [pairs(run) for run in runs]
    return mean_rho(samples, "rho(MI, importance)")


@claim("SD-13", finding="ablating to zero is less damaging than clamping to the mean",
       rule=Rule("greater"), requires=["stages"])
def test_SD_13_zero_ablation_less_damaging_than_mean(arch, sd_runs, save_figure):
    """AUC(zero) − AUC(mean) > 0 (paper appendix: ablation to the empirical mean).

    Scaled protocol: the analysis nets (see SD-14); the SD-7 ablation curves (500 test samples,
    11 fractions, 5 orderings, the paper's layers) with units clamped to 0 and to their mean
    over the training set, each element of a feature map to its own mean as the paper
    (appendix A.1); paired over seeds.
    """
    runs = sd_runs(conv_batchnorm(arch))
    zero = [ablation_curve_of(run, arch) for run in runs]
    mean = [ablation_curve_of(run, arch, "mean") for run in runs]
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
    return est


@claim("SD-15", finding="class selectivity is not positively related to the L1 norm of a "
                        "unit's incoming weights", rule=Rule("less", reference=0.2, inclusive=True),
       requires=["stages", "nonnegative_units"])
def test_SD_15_selectivity_not_related_to_weight_norm(arch, sd_runs):
    """Spearman ρ(SI, L1 norm of incoming weights) ≤ 0, CI upper bound ≤ 0.2 (paper
    appendix).

    Scaled protocol: the analysis nets; every unit layer whose feeding conv or linear layer
    can be found (the nearest one before it in execution order with as many outputs); SI on
    the MNIST-1D test set; ρ over the live units of each layer (both SI and weight norms
    change with depth, so units of different layers are not pooled), averaged over the
    layers of a net; mean over seeds.
    """
    per_seed, per_layer = [], []
    for run in sd_runs(conv_batchnorm(arch)):
        model = run.model
        layers = models.stages_of(model).layers
        modules = dict(model.named_modules())
        si, live = live_measure(run, layers, class_selectivity)
        rhos = {}
        for layer in layers:
            norm = incoming_l1_norm(modules[incoming_layer(model, layer, run.data.x_test)])
            if int(live[layer].sum()) >= 3:
                rhos[layer] = stats.rank_correlation(si[layer][live[layer]],
                                                     norm[live[layer]])
        per_seed.append(float(np.mean(list(rhos.values()))))
        per_layer.append(rhos)
    return stats.seed_mean(per_seed, statistic="mean over layers of rho(SI, L1 norm)",
                           details={"per_layer": per_layer})
