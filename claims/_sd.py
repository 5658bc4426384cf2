"""The single-directions suite's protocol: its zoos (what each claim trains), the measures
taken from each run (ablation and noise curves, importances, live units), and the figures.
The claims themselves, one per finding, are in ``test_single_directions.py``."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import torch
from _shared import conv_batchnorm

from netclaims import models, stats
from netclaims.claims import Architecture
from netclaims.metrics import (
    Curve,
    ablation_curve,
    class_selectivity,
    element_means,
    live_units,
    noise_curve,
    single_unit_importance,
    unit_statistics,
)
from netclaims.stats import Evidence
from netclaims.units import collect

ORDERINGS = 5


EVAL_SAMPLES = 500


NOISE_SCALES = tuple(np.logspace(-1, 1, 9))


NOISE_REPEATS = 3


CORRUPTED_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


DROPOUT_FRACTIONS = (0.1, 0.2, 0.3)


LR_SCALES = (1 / 3, 1.0, 3.0)


HIT_RATE_ABOVE_CHANCE = "top-10% hit rate > chance"


def full_task_zoo(arch, seeds) -> tuple[list[dict], partial]:
    """SD-7…SD-16: one run per seed on the full task with the registry's protocol, with
    batch norm (where the architecture has a variant with it: SD-7…SD-9 compare them),
    then without; the claims read no training history, so only its end is evaluated."""
    conditions = (True, False) if "batchnorm" in arch.capabilities else (False,)
    return ([{"seed": s, "batchnorm": bn, "evaluate": "checkpoints"}
             for bn in conditions for s in seeds],
            partial(full_task_measures, arch=arch))


def memorization_zoo(arch, seeds, small_task) -> tuple[list[dict], partial]:
    """SD-1, SD-2: one run per corrupted fraction and seed on the small task; each seed
    shuffles its own labels (``noise_seed``), so the seeds are independent replicates."""
    return ([{"seed": s, "label_noise": f, "noise_seed": s, **small_task}
             for f in CORRUPTED_FRACTIONS for s in seeds],
            partial(memorization_measures, arch=arch))


def lr_zoo(arch, seeds, small_task, run_spec) -> tuple[list[dict], partial]:
    """SD-3…SD-5: one run per learning rate of ``LR_SCALES`` (times the registry's) and seed
    on the small task with true labels (the runs at ``lr_scale=1`` are SD-1's uncorrupted
    nets)."""
    def variant(lr_scale: float, seed: int) -> dict:
        extra = {} if lr_scale == 1.0 else {"lr": run_spec(arch).lr * lr_scale}
        return {"seed": seed, "label_noise": 0.0, "noise_seed": seed, **small_task, **extra}
    return ([variant(scale, s) for scale in LR_SCALES for s in seeds],
            partial(ablation_curve_of, arch=arch))


def dropout_rates(seeds) -> list[float]:
    return [DROPOUT_FRACTIONS[i % len(DROPOUT_FRACTIONS)] for i in range(len(seeds))]


def dropout_zoo(arch, seeds, small_task) -> tuple[list[dict], partial]:
    """SD-6: seed i with dropout 0.1, 0.2 or 0.3 (cycling), on true then on fully shuffled
    labels of the small task."""
    return ([{"seed": s, "dropout": p, "label_noise": f, "noise_seed": s, **small_task}
             for s, p in zip(seeds, dropout_rates(seeds), strict=True) for f in (0.0, 1.0)],
            partial(ablation_curve_of, arch=arch, split="train"))


def ablated_layers(model: torch.nn.Module, arch: Architecture) -> list[str]:
    layers = models.stages_of(model).layers
    return layers if "conv" not in arch.capabilities else layers[-3:]


def eval_set(run, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """The first samples of the test set, or of the training set with the labels the run was
    trained on (corrupted ones included: memorizing nets are judged on what they fit)."""
    data = run.data
    if split == "train":
        return data.x_train[:EVAL_SAMPLES], data.y_train[:EVAL_SAMPLES]
    return data.x_test[:EVAL_SAMPLES], data.y_test[:EVAL_SAMPLES]


def ablation_curve_of(run, arch: Architecture, fill: str = "zero", *, split: str = "test",
           epoch: int | None = None, batch_statistics: bool = False) -> Curve:
    """Cumulative ablation curve of the paper's layers on an evaluation set, units clamped to
    zero or to their mean over the training set, for the final model or the checkpoint at
    ``epoch``, batch norms on their running or (``batch_statistics``) on each batch's
    statistics (cached beside the run)."""
    model = run.model if epoch is None else run.checkpoint(epoch)
    layers = ablated_layers(model, arch)

    def compute() -> dict[str, torch.Tensor]:
        means = element_means(model, run.data.x_train, layers) if fill == "mean" else None
        x, y = eval_set(run, split)
        return ablation_curve(model, x, y, layers, orderings=ORDERINGS, seed=run.spec.seed,
                              fill=means, batch_statistics=batch_statistics).to_tensors()

    params = {"layers": layers, "fill": fill, "orderings": ORDERINGS, "samples": EVAL_SAMPLES,
              "split": split, "epoch": epoch, "normalized": "between chance and intact",
              "mean": "per element of a feature map", "batch_statistics": batch_statistics}
    return Curve.from_tensors(run.derived("ablation-curve", params, compute), "accuracy",
                              "fraction")


def noise_curve_of(run, arch: Architecture) -> Curve:
    """Noise curve of the paper's layers on training samples (labels as trained): Gaussian
    noise with per-unit std ``s · std_u`` (std_u over the training set), s log-spaced."""
    model = run.model
    layers = ablated_layers(model, arch)

    def compute() -> dict[str, torch.Tensor]:
        moments = unit_statistics(model, run.data.x_train, layers)
        x, y = eval_set(run, "train")
        return noise_curve(model, x, y, layers, {k: moments[k].std for k in layers},
                           scales=NOISE_SCALES, repeats=NOISE_REPEATS,
                           seed=run.spec.seed).to_tensors()

    params = {"layers": layers, "scales": list(NOISE_SCALES), "repeats": NOISE_REPEATS,
              "samples": EVAL_SAMPLES, "normalized": "between chance and intact"}
    return Curve.from_tensors(run.derived("noise-curve", params, compute), "accuracy",
                              "log10 scale")


def full_task_measures(run, arch: Architecture) -> None:
    """What SD-7…SD-16 read of a full-task run, computed where it trained: the ablation
    curve (with batch norm, also on batch statistics), and for the nets the analyses read
    (with batch norm where :func:`conv_batchnorm`) the mean-ablation curve and the unit
    importances."""
    ablation_curve_of(run, arch)
    if run.spec.batchnorm:
        ablation_curve_of(run, arch, batch_statistics=True)
    if run.spec.batchnorm == conv_batchnorm(arch):
        ablation_curve_of(run, arch, "mean")
        importances_of(run)


def memorization_measures(run, arch: Architecture) -> None:
    """What SD-1 and SD-2 read of a memorization run, computed where it trained."""
    ablation_curve_of(run, arch, split="train")
    noise_curve_of(run, arch)


def third_layers(model: torch.nn.Module) -> tuple[list[str], list[str]]:
    layers = models.stages_of(model).layers
    third = max(1, len(layers) // 3)
    return layers[:third], layers[-third:]


def importances_of(run) -> dict[str, torch.Tensor]:
    """Single-unit importance (test-loss increase) of the units in the earliest and the latest
    third of the unit layers (cached beside the run)."""
    model = run.model
    early, late = third_layers(model)
    layers = list(dict.fromkeys(early + late))

    def compute() -> dict[str, torch.Tensor]:
        x, y = eval_set(run)
        return {layer: single_unit_importance(model, x, y, layer) for layer in layers}

    return run.derived("importance", {"layers": layers, "samples": EVAL_SAMPLES}, compute)


def live_measure(run, layers: list[str], metric) -> tuple[dict, dict]:
    """``metric`` of each unit of ``layers`` on the test set, and which units are alive there
    (:func:`netclaims.metrics.live_units`: a dead unit's measure is 0 by construction)."""
    acts = collect(run.model, run.data.x_test, layers)
    return ({layer: metric(acts[layer], run.data.y_test).double() for layer in layers},
            {layer: live_units(acts[layer]) for layer in layers})


def live_units_of(run, layers: list[str]) -> dict[str, torch.Tensor]:
    """Which units of ``layers`` are alive on the test set."""
    acts = collect(run.model, run.data.x_test, layers)
    return {layer: live_units(acts[layer]) for layer in layers}


def dead_count(live: dict[str, torch.Tensor]) -> int:
    return int(sum(int((~alive).sum()) for alive in live.values()))


def mean_rho(samples: list[tuple], statistic: str) -> Evidence:
    """The mean over seeds of the Spearman ρ within each network (of its units, layers or
    checkpoints): :func:`netclaims.stats.mean_correlation`."""
    est = replace(stats.mean_correlation(samples), statistic=statistic)
    return Evidence(est, {"per_seed_rho": [stats.rank_correlation(x, y) for x, y in samples]})


def feature_map_layers(arch: Architecture, layers: list[str]) -> list[str]:
    """The unit layers SD-8 and SD-9 average over: the feature maps of a conv net (the
    paper's Fig. 6 reads "class selectivity of feature maps" of CIFAR-10 ConvNets), every
    unit layer of a net without convolutions."""
    maps = {u.name for u in arch.layers if len(u.shape) > 1}
    return [layer for layer in layers if layer in maps] or layers


def mean_over_layers(run, arch: Architecture, metric) -> tuple[float, int]:
    """Mean of ``metric`` over the live units of each layer, then over layers; and how many
    dead units were left out."""
    layers = feature_map_layers(arch, models.stages_of(run.model).layers)
    values, live = live_measure(run, layers, metric)
    return (float(np.mean([float(values[layer][live[layer]].mean()) for layer in layers])),
            dead_count(live))


def paired_bn(values: dict[bool, list[float]], statistic: str, **details) -> Evidence:
    """Each seed's value with batch norm minus the same seed's without."""
    est = replace(stats.mean_difference(values[True], values[False], paired=True),
                  statistic=statistic)
    return Evidence(est, {"with_bn": values[True], "without_bn": values[False], **details})


def bn_unit_means(sd_runs, arch: Architecture, metric, statistic: str) -> Evidence:
    """SD-8, SD-9: :func:`mean_over_layers` with and without batch norm, paired by seed."""
    measured = {bn: [mean_over_layers(run, arch, metric) for run in sd_runs(bn)]
                for bn in (True, False)}
    return paired_bn({bn: [v for v, _ in m] for bn, m in measured.items()}, statistic,
                      dead_units_excluded={"with_bn" if bn else "without_bn": [d for _, d in m]
                                           for bn, m in measured.items()})


def memorizing_runs(train_runs, arch, seeds, small_task) -> dict[float, list]:
    """The :func:`memorization_zoo` runs by corrupted fraction."""
    runs = iter(train_runs(arch, *memorization_zoo(arch, seeds, small_task)))
    return {f: [next(runs) for _ in seeds] for f in CORRUPTED_FRACTIONS}


def by_fraction_figure(curves: dict[float, list[Curve]], xlabel: str, title: str):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(curves)))
    for color, (fraction, group) in zip(colors, curves.items(), strict=True):
        mean = np.mean([c.normalized.mean(0) for c in group], axis=0)
        x = group[0].x if group[0].x_axis == "fraction" else np.log10(group[0].x)
        ax.plot(x, mean, color=color, label=f"{fraction:.2f} corrupted")
    ax.set(xlabel=xlabel, ylabel="training accuracy / intact", title=title)
    ax.legend(fontsize=7)
    return fig


def by_corruption(cid: str, curve_of, statistic: str, xlabel: str, figure: str, arch,
                   train_runs, seeds, small_task, save_figure) -> Evidence:
    """ρ(corrupted fraction, AUC of ``curve_of(run)``) over the memorization nets, with the
    curves per fraction as a figure."""
    runs = memorizing_runs(train_runs, arch, seeds, small_task)
    curves = {f: [curve_of(r) for r in group] for f, group in runs.items()}
    save_figure(by_fraction_figure(curves, xlabel, f"{cid} by corrupted fraction, {arch}"),
                figure)
    aucs = {f: [c.auc for c in group] for f, group in curves.items()}
    fractions = [f for f, values in aucs.items() for _ in values]
    values = [v for group in aucs.values() for v in group]
    est = replace(stats.correlation(fractions, values), statistic=statistic)
    return Evidence(est, {"auc_by_fraction": {str(f): v for f, v in aucs.items()}})


def zoo_table(zoo_runs, keep_healthy, arch) -> list[dict]:
    """The SD-3/SD-5 zoo: seeds × learning rates, with each model's AUC and final
    accuracies. A model that did not train (e.g. the conv net at 3 × its learning rate) is
    no member of a zoo of trained networks: it is left out and listed in the record."""
    zoo = []
    for lr_scale in LR_SCALES:
        for run in keep_healthy(zoo_runs(lr_scale)):
            last = run.history.iloc[-1]
            zoo.append({"lr": run.spec.lr, "seed": run.spec.seed,
                        "auc": ablation_curve_of(run, arch).auc,
                        "train_acc": float(last["train_acc"]),
                        "test_acc": float(last["test_acc"])})
    return zoo


def zoo_figure(zoo: list[dict], x: str, xlabel: str, title: str):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    lrs = sorted({m["lr"] for m in zoo})
    for lr, color in zip(lrs, plt.cm.plasma(np.linspace(0, 0.8, len(lrs))), strict=True):
        group = [m for m in zoo if m["lr"] == lr]
        ax.scatter([m[x] for m in group], [m["auc"] for m in group], color=color,
                   label=f"lr {lr:.3g}")
    ax.set(xlabel=xlabel, ylabel="ablation AUC", title=title)
    ax.legend(fontsize=7)
    return fig


def hit_rate(auc: np.ndarray, accuracy: np.ndarray, *, subsets: int = 1000,
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


def si_importance(run, layers: list[str], metric=class_selectivity):
    """``metric`` and importance of the live units of ``layers``."""
    importance = importances_of(run)
    measure, live = live_measure(run, layers, metric)
    return (torch.cat([measure[layer][live[layer]] for layer in layers]),
            torch.cat([importance[layer][live[layer]] for layer in layers]))
