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
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from netclaims import models, stats
from netclaims.claims import Architecture, claim
from netclaims.metrics import (
    Curve,
    ablation_curve,
    above_chance,
    class_selectivity,
    curve_auc,
    element_means,
    incoming_l1_norm,
    live_units,
    mutual_information,
    noise_curve,
    single_unit_importance,
    unit_statistics,
)
from netclaims.stats import Evidence, Rule
from netclaims.units import collect, incoming_layer

ORDERINGS = 5
EVAL_SAMPLES = 500
NOISE_SCALES = tuple(np.logspace(-1, 1, 9))
NOISE_REPEATS = 3
CORRUPTED_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
DROPOUT_FRACTIONS = (0.1, 0.2, 0.3)
LR_SCALES = (1 / 3, 1.0, 3.0)
HIT_RATE_ABOVE_CHANCE = "top-10% hit rate > chance"


def _full_task_zoo(arch, seeds) -> tuple[list[dict], partial]:
    """SD-7…SD-16: one run per seed on the full task with the registry's protocol, with
    batch norm (where the architecture has a variant with it: SD-7…SD-9 compare them),
    then without; the claims read no training history, so only its end is evaluated."""
    conditions = (True, False) if "batchnorm" in arch.capabilities else (False,)
    return ([{"seed": s, "batchnorm": bn, "evaluate": "checkpoints"}
             for bn in conditions for s in seeds],
            partial(_full_task_measures, arch=arch))


def _memorization_zoo(arch, seeds, small_task) -> tuple[list[dict], partial]:
    """SD-1, SD-2: one run per corrupted fraction and seed on the small task; each seed
    shuffles its own labels (``noise_seed``), so the seeds are independent replicates."""
    return ([{"seed": s, "label_noise": f, "noise_seed": s, **small_task}
             for f in CORRUPTED_FRACTIONS for s in seeds],
            partial(_memorization_measures, arch=arch))


def _lr_zoo(arch, seeds, small_task, run_spec) -> tuple[list[dict], partial]:
    """SD-3…SD-5: one run per learning rate of ``LR_SCALES`` (times the registry's) and seed
    on the small task with true labels (the runs at ``lr_scale=1`` are SD-1's uncorrupted
    nets)."""
    def variant(lr_scale: float, seed: int) -> dict:
        extra = {} if lr_scale == 1.0 else {"lr": run_spec(arch).lr * lr_scale}
        return {"seed": seed, "label_noise": 0.0, "noise_seed": seed, **small_task, **extra}
    return ([variant(scale, s) for scale in LR_SCALES for s in seeds],
            partial(_curve, arch=arch))


def _dropout_rates(seeds) -> list[float]:
    return [DROPOUT_FRACTIONS[i % len(DROPOUT_FRACTIONS)] for i in range(len(seeds))]


def _dropout_zoo(arch, seeds, small_task) -> tuple[list[dict], partial]:
    """SD-6: seed i with dropout 0.1, 0.2 or 0.3 (cycling), on true then on fully shuffled
    labels of the small task."""
    return ([{"seed": s, "dropout": p, "label_noise": f, "noise_seed": s, **small_task}
             for s, p in zip(seeds, _dropout_rates(seeds), strict=True) for f in (0.0, 1.0)],
            partial(_curve, arch=arch, split="train"))


@pytest.fixture(autouse=True)
def _zoos_started(arch, prefetch_runs, run_spec, seeds, small_task) -> None:
    """Every zoo that a claim of this file the session runs reads on the architecture,
    started in the pool in claim order before a claim waits for its own, so the pool stays
    busy while claims measure."""
    if "stages" not in arch.capabilities:
        return
    zoos = ((("SD-1", "SD-2"), _memorization_zoo(arch, seeds, small_task)),
            (("SD-3", "SD-4", "SD-5"), _lr_zoo(arch, seeds, small_task, run_spec)),
            (("SD-6",), _dropout_zoo(arch, seeds, small_task)),
            (tuple(f"SD-{i}" for i in range(7, 17)), _full_task_zoo(arch, seeds)))
    for readers, (variants, derive) in zoos:
        prefetch_runs(arch, variants, derive=derive, readers=readers)


@pytest.fixture
def sd_runs(arch, train_runs, read_runs, seeds) -> Callable[[bool], list]:
    """``sd_runs(batchnorm)``: the :func:`_full_task_zoo` runs with or without batch
    norm."""
    def make(batchnorm: bool) -> list:
        runs = train_runs(arch, *_full_task_zoo(arch, seeds), read=False)
        return read_runs(runs[:len(seeds)] if batchnorm else runs[-len(seeds):])
    return make


@pytest.fixture
def zoo_runs(arch, train_runs, run_spec, seeds, small_task) -> Callable[[float], list]:
    """``zoo_runs(lr_scale)``: the :func:`_lr_zoo` runs at one learning-rate scale, not yet
    read (a claim reads them with ``read_runs`` or ``keep_healthy``)."""
    def make(lr_scale: float) -> list:
        runs = train_runs(arch, *_lr_zoo(arch, seeds, small_task, run_spec), read=False)
        start = LR_SCALES.index(lr_scale) * len(seeds)
        return runs[start:start + len(seeds)]
    return make


def _ablated_layers(model: torch.nn.Module, arch: Architecture) -> list[str]:
    layers = models.stages_of(model).layers
    return layers if "conv" not in arch.capabilities else layers[-3:]


def _eval_set(run, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """The first samples of the test set, or of the training set with the labels the run was
    trained on (corrupted ones included: memorizing nets are judged on what they fit)."""
    data = run.data
    if split == "train":
        return data.x_train[:EVAL_SAMPLES], data.y_train[:EVAL_SAMPLES]
    return data.x_test[:EVAL_SAMPLES], data.y_test[:EVAL_SAMPLES]


def _curve(run, arch: Architecture, fill: str = "zero", *, split: str = "test",
           epoch: int | None = None, batch_statistics: bool = False) -> Curve:
    """Cumulative ablation curve of the paper's layers on an evaluation set, units clamped to
    zero or to their mean over the training set, for the final model or the checkpoint at
    ``epoch``, batch norms on their running or (``batch_statistics``) on each batch's
    statistics (cached beside the run)."""
    model = run.model if epoch is None else run.checkpoint(epoch)
    layers = _ablated_layers(model, arch)

    def compute() -> dict[str, torch.Tensor]:
        means = element_means(model, run.data.x_train, layers) if fill == "mean" else None
        x, y = _eval_set(run, split)
        return ablation_curve(model, x, y, layers, orderings=ORDERINGS, seed=run.spec.seed,
                              fill=means, batch_statistics=batch_statistics).to_tensors()

    params = {"layers": layers, "fill": fill, "orderings": ORDERINGS, "samples": EVAL_SAMPLES,
              "split": split, "epoch": epoch, "normalized": "between chance and intact",
              "mean": "per element of a feature map", "batch_statistics": batch_statistics}
    return Curve.from_tensors(run.derived("ablation-curve", params, compute), "accuracy",
                              "fraction")


def _noise_curve(run, arch: Architecture) -> Curve:
    """Noise curve of the paper's layers on training samples (labels as trained): Gaussian
    noise with per-unit std ``s · std_u`` (std_u over the training set), s log-spaced."""
    model = run.model
    layers = _ablated_layers(model, arch)

    def compute() -> dict[str, torch.Tensor]:
        moments = unit_statistics(model, run.data.x_train, layers)
        x, y = _eval_set(run, "train")
        return noise_curve(model, x, y, layers, {k: moments[k].std for k in layers},
                           scales=NOISE_SCALES, repeats=NOISE_REPEATS,
                           seed=run.spec.seed).to_tensors()

    params = {"layers": layers, "scales": list(NOISE_SCALES), "repeats": NOISE_REPEATS,
              "samples": EVAL_SAMPLES, "normalized": "between chance and intact"}
    return Curve.from_tensors(run.derived("noise-curve", params, compute), "accuracy",
                              "log10 scale")


def _analysis_bn(arch: Architecture) -> bool:
    """Whether SD-10…SD-16 read the nets with batch norm: for conv nets, as the paper ("batch
    normalization was used for all convolutional networks"), where the architecture has that
    variant; MLPs without, as the paper's MNIST MLPs."""
    return "conv" in arch.capabilities and "batchnorm" in arch.capabilities


def _full_task_measures(run, arch: Architecture) -> None:
    """What SD-7…SD-16 read of a full-task run, computed where it trained: the ablation
    curve (with batch norm, also on batch statistics), and for the analysis nets
    (:func:`_analysis_bn`) the mean-ablation curve and the unit importances."""
    _curve(run, arch)
    if run.spec.batchnorm:
        _curve(run, arch, batch_statistics=True)
    if run.spec.batchnorm == _analysis_bn(arch):
        _curve(run, arch, "mean")
        _importance(run)


def _memorization_measures(run, arch: Architecture) -> None:
    """What SD-1 and SD-2 read of a memorization run, computed where it trained."""
    _curve(run, arch, split="train")
    _noise_curve(run, arch)


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


def _live_measure(run, layers: list[str], metric) -> tuple[dict, dict]:
    """``metric`` of each unit of ``layers`` on the test set, and which units are alive there
    (:func:`netclaims.metrics.live_units`: a dead unit's measure is 0 by construction)."""
    acts = collect(run.model, run.data.x_test, layers)
    return ({layer: metric(acts[layer], run.data.y_test).double() for layer in layers},
            {layer: live_units(acts[layer]) for layer in layers})


def _live(run, layers: list[str]) -> dict[str, torch.Tensor]:
    """Which units of ``layers`` are alive on the test set."""
    acts = collect(run.model, run.data.x_test, layers)
    return {layer: live_units(acts[layer]) for layer in layers}


def _dead(live: dict[str, torch.Tensor]) -> int:
    return int(sum(int((~alive).sum()) for alive in live.values()))


def _mean_rho(samples: list[tuple], statistic: str) -> Evidence:
    """The mean over seeds of the Spearman ρ within each network (of its units, layers or
    checkpoints): :func:`netclaims.stats.mean_correlation`."""
    est = replace(stats.mean_correlation(samples), statistic=statistic)
    return Evidence(est, {"per_seed_rho": [stats.rank_correlation(x, y) for x, y in samples]})


def _feature_map_layers(arch: Architecture, layers: list[str]) -> list[str]:
    """The unit layers SD-8 and SD-9 average over: the feature maps of a conv net (the
    paper's Fig. 6 reads "class selectivity of feature maps" of CIFAR-10 ConvNets), every
    unit layer of a net without convolutions."""
    maps = {u.name for u in arch.layers if len(u.shape) > 1}
    return [layer for layer in layers if layer in maps] or layers


def _mean_over_layers(run, arch: Architecture, metric) -> tuple[float, int]:
    """Mean of ``metric`` over the live units of each layer, then over layers; and how many
    dead units were left out."""
    layers = _feature_map_layers(arch, models.stages_of(run.model).layers)
    values, live = _live_measure(run, layers, metric)
    return (float(np.mean([float(values[layer][live[layer]].mean()) for layer in layers])),
            _dead(live))


def _paired_bn(values: dict[bool, list[float]], statistic: str, **details) -> Evidence:
    """Each seed's value with batch norm minus the same seed's without."""
    est = replace(stats.mean_difference(values[True], values[False], paired=True),
                  statistic=statistic)
    return Evidence(est, {"with_bn": values[True], "without_bn": values[False], **details})


def _bn_unit_means(sd_runs, arch: Architecture, metric, statistic: str) -> Evidence:
    """SD-8, SD-9: :func:`_mean_over_layers` with and without batch norm, paired by seed."""
    measured = {bn: [_mean_over_layers(run, arch, metric) for run in sd_runs(bn)]
                for bn in (True, False)}
    return _paired_bn({bn: [v for v, _ in m] for bn, m in measured.items()}, statistic,
                      dead_units_excluded={"with_bn" if bn else "without_bn": [d for _, d in m]
                                           for bn, m in measured.items()})


def _memorizing_runs(train_runs, arch, seeds, small_task) -> dict[float, list]:
    """The :func:`_memorization_zoo` runs by corrupted fraction."""
    runs = iter(train_runs(arch, *_memorization_zoo(arch, seeds, small_task)))
    return {f: [next(runs) for _ in seeds] for f in CORRUPTED_FRACTIONS}


def _by_fraction_figure(curves: dict[float, list[Curve]], xlabel: str, title: str):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(curves)))
    for color, (fraction, group) in zip(colors, curves.items(), strict=True):
        mean = np.mean([c.normalized.mean(0) for c in group], axis=0)
        x = group[0].x if group[0].x_axis == "fraction" else np.log10(group[0].x)
        ax.plot(x, mean, color=color, label=f"{fraction:.2f} corrupted")
    ax.set(xlabel=xlabel, ylabel="training accuracy / intact", title=title)
    ax.legend(fontsize=7)
    return fig


def _by_corruption(cid: str, curve_of, statistic: str, xlabel: str, figure: str, arch,
                   train_runs, seeds, small_task, save_figure) -> Evidence:
    """ρ(corrupted fraction, AUC of ``curve_of(run)``) over the memorization nets, with the
    curves per fraction as a figure."""
    runs = _memorizing_runs(train_runs, arch, seeds, small_task)
    curves = {f: [curve_of(r) for r in group] for f, group in runs.items()}
    save_figure(_by_fraction_figure(curves, xlabel, f"{cid} by corrupted fraction, {arch}"),
                figure)
    aucs = {f: [c.auc for c in group] for f, group in curves.items()}
    fractions = [f for f, values in aucs.items() for _ in values]
    values = [v for group in aucs.values() for v in group]
    est = replace(stats.correlation(fractions, values), statistic=statistic)
    return Evidence(est, {"auc_by_fraction": {str(f): v for f, v in aucs.items()}})


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
    return _by_corruption(
        "SD-1", lambda run: _curve(run, arch, split="train"),
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
    return _by_corruption(
        "SD-2", lambda run: _noise_curve(run, arch), "rho(corrupted fraction, noise AUC)",
        "log10 noise scale (× unit std)", "noise-by-corruption", arch, train_runs, seeds,
        small_task, save_figure)


def _zoo(zoo_runs, keep_healthy, arch) -> list[dict]:
    """The SD-3/SD-5 zoo: seeds × learning rates, with each model's AUC and final
    accuracies. A model that did not train (e.g. the conv net at 3 × its learning rate) is
    no member of a zoo of trained networks: it is left out and listed in the record."""
    zoo = []
    for lr_scale in LR_SCALES:
        for run in keep_healthy(zoo_runs(lr_scale)):
            last = run.history.iloc[-1]
            zoo.append({"lr": run.spec.lr, "seed": run.spec.seed, "auc": _curve(run, arch).auc,
                        "train_acc": float(last["train_acc"]),
                        "test_acc": float(last["test_acc"])})
    return zoo


def _zoo_figure(zoo: list[dict], x: str, xlabel: str, title: str):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    lrs = sorted({m["lr"] for m in zoo})
    for lr, color in zip(lrs, plt.cm.plasma(np.linspace(0, 0.8, len(lrs))), strict=True):
        group = [m for m in zoo if m["lr"] == lr]
        ax.scatter([m[x] for m in group], [m["auc"] for m in group], color=color,
                   label=f"lr {lr:.3g}")
    ax.set(xlabel=xlabel, ylabel="ablation AUC", title=title)
    ax.legend(fontsize=7)
    return fig


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
    zoo = _zoo(zoo_runs, keep_healthy, arch)
    for m in zoo:
        m["gen_error"] = m["train_acc"] - m["test_acc"]
    save_figure(_zoo_figure(zoo, "gen_error", "generalization error (train − test acc.)",
                            f"SD-3 AUC vs generalization error, {arch}"), "auc-vs-gen-error")
    est = replace(stats.correlation([m["auc"] for m in zoo], [m["gen_error"] for m in zoo]),
                  statistic="rho(AUC, generalization error)")
    return Evidence(est, {"zoo": zoo})


def _hit_rate(auc: np.ndarray, accuracy: np.ndarray, *, subsets: int = 1000,
              seed: int = 0) -> tuple[float, float]:
    """How often the best-AUC model of a random quarter of the zoo is in that quarter's top
    10% by test accuracy, and that rate by chance."""
    rng = np.random.default_rng(seed)
    size = max(2, len(auc) // 4)
    top = max(1, int(np.ceil(0.1 * size)))
    hits = 0
    for _ in range(subsets):
        pick = rng.choice(len(auc), size, replace=False)
        ranked = pick[np.argsort(-accuracy[pick], kind="stable")][:top]
        hits += int(pick[np.argmax(auc[pick])] in ranked)
    return hits / subsets, top / size


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
    zoo = _zoo(zoo_runs, keep_healthy, arch)
    auc = np.array([m["auc"] for m in zoo])
    accuracy = np.array([m["test_acc"] for m in zoo])
    rate, chance = _hit_rate(auc, accuracy)
    save_figure(_zoo_figure(zoo, "test_acc", "test accuracy",
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
                  if above_chance(run.checkpoint(e), *_eval_set(run))]
        aucs = [_curve(run, arch, epoch=e).auc for e in epochs]
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
    return _mean_rho(samples, "rho(AUC, test loss)")


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
    rates = _dropout_rates(seeds)
    runs = iter(train_runs(arch, *_dropout_zoo(arch, seeds, small_task)))
    diffs, pairs = [], []
    for p in rates:
        true, corrupted = (_curve(next(runs), arch, split="train") for _ in range(2))
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
        curve = _curve(run, arch)
        curves[run.spec.batchnorm].append(curve)
        return curve.auc

    batch = [_curve(run, arch, batch_statistics=True) for run in sd_runs(True)]
    evidence = _paired_bn({bn: [auc(run) for run in sd_runs(bn)] for bn in (True, False)},
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
    return _bn_unit_means(sd_runs, arch, class_selectivity, "SI(BN) - SI(no BN)")


@claim("SD-9", finding="batch norm raises the mutual information between units and class",
       rule=Rule("greater"), requires=["stages", "batchnorm"])
def test_SD_9_batchnorm_raises_mutual_information(arch, sd_runs):
    """mean MI(BN) − mean MI(no BN) > 0 (paper Fig. 6b).

    Scaled protocol: mutual information (bits; 10 equal-frequency bins, Miller–Madow
    corrected) of every live unit with the class on the MNIST-1D test set, averaged over the
    live units and the layers of SD-8; paired difference over seeds.
    """
    return _bn_unit_means(sd_runs, arch, mutual_information, "MI(BN) - MI(no BN)")


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
    for run in sd_runs(_analysis_bn(arch)):
        model = run.model
        layers = models.stages_of(model).layers
        values, live = _live_measure(run, layers, class_selectivity)
        si = [float(values[layer][live[layer]].mean()) for layer in layers]
        dead.append(_dead(live))
        samples.append((np.arange(len(layers)), si))
        ax.plot(range(len(layers)), si, marker="o", alpha=0.7, label=f"seed {run.spec.seed}")
    ax.set(xlabel="layer depth", ylabel="mean class selectivity",
           title=f"SD-14 selectivity by depth, {arch}")
    ax.legend()
    save_figure(fig, "selectivity-by-depth")
    evidence = _mean_rho(samples, "mean over seeds of rho(layer depth, mean SI)")
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
    for run in sd_runs(_analysis_bn(arch)):
        early_layers, late_layers = _third_layers(run.model)
        importance = _importance(run)
        live = _live(run, list(importance))
        early, late = (torch.cat([importance[layer][live[layer]] for layer in group]).mean()
                       for group in (early_layers, late_layers))
        diffs.append(float(early - late))
        dead.append(_dead(live))
        per_layer.append({layer: float(v[live[layer]].mean()) for layer, v in importance.items()})
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for seed_values in per_layer:
        ax.plot(list(seed_values), list(seed_values.values()), marker="o", alpha=0.7)
    ax.set(xlabel="layer", ylabel="mean loss increase", title=f"SD-16 importance, {arch}")
    ax.tick_params(axis="x", rotation=45)
    save_figure(fig, "importance-by-layer")
    return stats.seed_mean(diffs, statistic="importance(early) - importance(late)",
                           details={"dead_units_excluded": dead})


def _si_importance(run, layers: list[str], metric=class_selectivity):
    """``metric`` and importance of the live units of ``layers``."""
    importance = _importance(run)
    measure, live = _live_measure(run, layers, metric)
    return (torch.cat([measure[layer][live[layer]] for layer in layers]),
            torch.cat([importance[layer][live[layer]] for layer in layers]))


@claim("SD-10", finding="class selectivity is a poor predictor of a unit's importance",
       rule=Rule("within", band=(-0.3, 0.3)), requires=["stages", "nonnegative_units"])
def test_SD_10_selectivity_poor_predictor_of_importance(arch, sd_runs, save_figure):
    """|Spearman ρ(SI, importance)| small: the CI of ρ within [-0.3, 0.3] (paper Fig. 7).

    Scaled protocol: the analysis nets (see SD-14); for the live units of the earliest and latest
    thirds of the unit layers, SI on the MNIST-1D test set and importance = test-loss increase
    (500 samples) when the unit alone is zeroed; ρ over the units of each network; mean ρ over
    seeds with a Student-t CI over seeds.
    """
    runs = sd_runs(_analysis_bn(arch))
    by_layer: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def pairs(run):
        early, late = _third_layers(run.model)
        layers = list(dict.fromkeys(early + late))
        for layer in layers:
            by_layer.setdefault(layer, []).append(_si_importance(run, [layer]))
        return _si_importance(run, layers)

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
    return _mean_rho(samples, "rho(SI, importance)")


@claim("SD-11", finding="where selectivity relates to importance, the relation is negative "
                        "and driven by early layers",
       rule=Rule("less"), requires=["stages", "nonnegative_units"])
def test_SD_11_early_layers_negative_selectivity_importance(arch, sd_runs):
    """ρ(SI, importance) in the earliest third of the unit layers < 0 (paper Fig. 7c).

    Scaled protocol: as SD-10, restricted to the units of the earliest third of the layers.
    """
    runs = sd_runs(_analysis_bn(arch))
    samples = [_si_importance(run, _third_layers(run.model)[0]) for run in runs]
    return _mean_rho(samples, "rho(SI, importance), early layers")


@claim("SD-12", finding="mutual information is also a poor predictor of importance",
       rule=Rule("within", band=(-0.3, 0.3)), requires=["stages"])
def test_SD_12_mutual_information_poor_predictor(arch, sd_runs):
    """|Spearman ρ(MI, importance)| small: the CI of ρ within [-0.3, 0.3] (paper section
    3.4).

    Scaled protocol: as SD-10 with the unit's mutual information with the class (bits, 10
    equal-frequency bins, Miller–Madow) instead of its selectivity.
    """
    runs = sd_runs(_analysis_bn(arch))

    def pairs(run):
        early, late = _third_layers(run.model)
        return _si_importance(run, list(dict.fromkeys(early + late)), mutual_information)

    samples = [pairs(run) for run in runs]
    return _mean_rho(samples, "rho(MI, importance)")


@claim("SD-13", finding="ablating to zero is less damaging than clamping to the mean",
       rule=Rule("greater"), requires=["stages"])
def test_SD_13_zero_ablation_less_damaging_than_mean(arch, sd_runs, save_figure):
    """AUC(zero) − AUC(mean) > 0 (paper appendix: ablation to the empirical mean).

    Scaled protocol: the analysis nets (see SD-14); the SD-7 ablation curves (500 test samples,
    11 fractions, 5 orderings, the paper's layers) with units clamped to 0 and to their mean
    over the training set, each element of a feature map to its own mean as the paper
    (appendix A.1); paired over seeds.
    """
    runs = sd_runs(_analysis_bn(arch))
    zero = [_curve(run, arch) for run in runs]
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
    for run in sd_runs(_analysis_bn(arch)):
        model = run.model
        layers = models.stages_of(model).layers
        modules = dict(model.named_modules())
        si, live = _live_measure(run, layers, class_selectivity)
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
