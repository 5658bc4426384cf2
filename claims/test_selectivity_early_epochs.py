"""Claims of "On the special role of class-selective neurons in early training" (Ranadive,
Thakurdesai, Morcos, Leavitt & Gal 2023; ResNet-50 on ImageNet in the paper).

Shared smoke protocol: the small task of ``claims/conftest.py`` (the first 1000 MNIST-1D
training samples) trained for 20 epochs (paper: 90 ImageNet epochs; paper scale here: 40 on the
full set) with the registry's optimizer, once per seed (3 at smoke, 5 at paper) in nine
conditions: unregularized; the selectivity regularizer against selectivity switched on at epoch
0, 1, …, 5 and kept on; switched on at epoch 0 and off after 4 epochs; and in favour of
selectivity for the first 4 epochs. Epochs are counted from 0 as in the paper ("switched on at
epoch e" = from the (e+1)-th pass over the data; the checkpoint after e passes is "epoch e").
The regularizer follows the paper: ``loss = CE − α · mean SI`` over the units of the early and
intermediate stages (against: α < 0) or of every stage (in favour: α > 0, the paper's appendix
A.5.2); α is the paper's (−20 against, +5 in favour) scaled by the ratio of the initial cross-
entropies, ln C / ln 1000 (C = the task's classes: −6.7 and +1.7 on MNIST-1D). The
unregularized and the from-epoch-0 runs keep checkpoints at initialization, 4 points inside the
first epoch, every epoch up to 5 and every 5 epochs after. Selectivity: class selectivity index
of every unit after the ReLU (conv maps averaged over positions) on the first 1000 test
samples, averaged over the live units of each layer (units never active are left out), then
over the layers of a stage. Effects are per seed; CIs over seeds (Student t), so with 3 seeds
they are wide.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from netclaims import models, stats
from netclaims.claims import ReadOnLookup, checkpoint_schedule, claim
from netclaims.metrics import (
    ablation_curve,
    above_chance,
    class_balance,
    class_selectivity,
    linear_cka,
    live_units,
    selectivity_order,
)
from netclaims.regularizers import Regularizer
from netclaims.stats import Evidence, Rule, seed_mean, seed_paired
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
ABLATION_WINDOW = 5.0
"""SE-6/SE-7: the early window of checkpoints (epochs after initialization) for the slopes."""
FIRST_EPOCHS = 2.0
"""SE-13: class over-representation is read at the checkpoints of the first 2 epochs."""

NONE, FROM_0, OFF, FOR = "unregularized", "against from 0", "against 0-3, then off", "for 0-3"
TRACED = (NONE, FROM_0)


def _against(start: int, alpha: float, stop: int | None = None) -> Regularizer:
    return Regularizer("selectivity", alpha, start=start + 1,
                       stop=None if stop is None else stop + 1,
                       params={"stages": list(REGULARIZED)})


def conditions(num_classes: int) -> dict[str, tuple[Regularizer, ...]]:
    """The nine regularizer conditions, α scaled by ln C / ln 1000."""
    scale = math.log(num_classes) / math.log(PAPER_CLASSES)
    against, favour = PAPER_ALPHA_AGAINST * scale, PAPER_ALPHA_FOR * scale
    out = {NONE: ()}
    out.update({f"against from {e}": (_against(e, against),) for e in START_EPOCHS})
    out[OFF] = (_against(0, against, stop=OFF_AFTER),)
    out[FOR] = (Regularizer("selectivity", favour, start=1, stop=OFF_AFTER + 1),)
    return out


@pytest.fixture
def se_runs(arch, train_runs, read_runs, run_spec, seeds, scale, claims_data,
            small_task) -> Mapping[str, list]:
    """``{condition: [run per seed]}`` for the nine conditions of the module docstring; a
    claim reads (and is judged on the health of) only the conditions it looks up."""
    epochs = EPOCHS[scale]
    # the claims read final accuracies and the checkpoints' dynamics, never the history
    # between checkpoints
    base = {"epochs": epochs, "evaluate": "checkpoints"}
    if "dataset_options" in small_task:
        base["dataset_options"] = small_task["dataset_options"]
    train_size = base.get("dataset_options", {}).get("train_size", claims_data.x_train.shape[0])
    steps = math.ceil(train_size / run_spec(arch, **base).batch_size)
    traced = checkpoint_schedule(epochs, steps)
    variants = {name: [{"seed": s, **base, "regularizers": regs,
                        **(traced if name in TRACED else {})} for s in seeds]
                for name, regs in conditions(claims_data.num_classes).items()}
    runs = iter(train_runs(arch, [v for group in variants.values() for v in group],
                           derive=_dynamics_if_traced, read=False))
    return ReadOnLookup({name: [next(runs) for _ in seeds] for name in variants}, read_runs)


def _dynamics(run) -> dict[str, np.ndarray]:
    """Per checkpoint of a traced run (cached beside it): its epoch, mean SI per stage, linear
    CKA between the last layers of the early and the late stage, the top-5 predicted-class
    count on held-out data, and for unregularized runs, inside the early window and at the
    end, the normalized ablation AUC of the early+intermediate and of the late units in
    selective order (most selective first) and in 5 random orders (their mean)."""
    def compute() -> dict[str, torch.Tensor]:
        out: dict[str, list] = {k: [] for k in ("epoch", "si", "cka", "top5", "auc")}
        timeline = run.timeline
        last = timeline[-1][1]
        for name, epoch in timeline:
            model = run.checkpoint_named(name)
            stages = models.stages_of(model)
            x, y = run.data.x_test[:SI_SAMPLES], run.data.y_test[:SI_SAMPLES]
            acts = collect(model, x, stages.layers)
            si = [_stage_selectivity(acts, y, stages[stage]) for stage in stages.names]
            full = collect(model, x, [stages[stages.names[0]][-1], stages[stages.names[-1]][-1]],
                           reduce="none")
            early, late = (t.flatten(1) for t in full.values())
            with torch.no_grad():
                logits = model(x)
            auc = [np.nan] * 4
            if not run.spec.regularizers and (0 < epoch <= ABLATION_WINDOW or epoch == last):
                auc = _ablation_aucs(run, model, stages)
            out["epoch"].append(epoch)
            out["si"].append(si)
            out["cka"].append(_cka_or_nan(early, late))
            out["top5"].append(class_balance(logits, top=5))
            out["auc"].append(auc)
        return {k: torch.tensor(np.asarray(v, dtype=np.float64)) for k, v in out.items()}

    params = {"si_samples": SI_SAMPLES, "ablation_samples": ABLATION_SAMPLES,
              "orderings": ORDERINGS, "window": ABLATION_WINDOW, "units": "live",
              "ablation": "per stage, ordered on held-out samples, chance-corrected"}
    return {k: v.numpy() for k, v in run.derived("se-dynamics", params, compute).items()}


def _dynamics_if_traced(run) -> None:
    """:func:`_dynamics` of a run of a :data:`TRACED` condition (those with checkpoints
    inside the first epoch), computed where it trained."""
    if run.spec.checkpoint_steps:
        _dynamics(run)


def _cka_or_nan(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA, or NaN when a layer is dead (constant): a regularized net can lose a whole
    stage, and only SE-8 reads CKA, on unregularized runs, where a NaN would surface as an
    error with its reason."""
    if bool((x.std(0) == 0).all()) or bool((y.std(0) == 0).all()):
        return math.nan
    return linear_cka(x, y)


def _stage_selectivity(acts: dict[str, torch.Tensor], y: torch.Tensor,
                       layers: list[str]) -> float:
    """Mean SI over the live units of each layer, then over the stage's layers (NaN for a
    stage without a live unit)."""
    means = []
    for layer in layers:
        live = live_units(acts[layer])
        if bool(live.any()):
            means.append(float(class_selectivity(acts[layer][:, live], y).mean()))
    return float(np.mean(means)) if means else math.nan


def _ablation_aucs(run, model, stages) -> list[float]:
    """[selective early+intermediate, random early+intermediate, selective late, random
    late]. Each stage (the paper's module) is ablated on its own and the early and
    intermediate AUCs are averaged; units are ordered by their SI on held-out test samples
    (dead units at random positions), and the ablated net is scored on other test samples.
    A checkpoint not yet above chance has no ablation curve (NaN): there is nothing to lose."""
    split = min(ABLATION_SAMPLES, run.data.x_test.shape[0] // 2)  # a small test set: halves
    x, y_abl = run.data.x_test[:split], run.data.y_test[:split]
    if not above_chance(model, x, y_abl):
        return [math.nan] * 4
    x_si, y_si = run.data.x_test[split:], run.data.y_test[split:]
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


def _final_acc(run) -> float:
    return float(run.history["test_acc"].iloc[-1]) * 100


def _peak_and_final(dyn: dict, stage: int) -> tuple[float, float]:
    epochs, si = dyn["epoch"], dyn["si"][:, stage]
    window = (epochs > 0) & (epochs <= PEAK_WINDOW * epochs[-1])
    return float(si[window].max()), float(si[-1])


def _early_stage_indices(run) -> list[int]:
    names = models.stages_of(run.model).names
    return [names.index(s) for s in REGULARIZED if s in names]


def _selectivity_figure(se_runs, arch, save_figure, name: str = "selectivity-over-training"):
    """Mean SI per stage over training, the unregularized and the from-epoch-0 runs side by
    side (mean over seeds), with the window where SE-1 looks for the peak shaded."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    stages = models.stages_of(se_runs.shown(NONE)[0].model).names
    for ax, condition in zip(axes, TRACED, strict=True):
        dyns = [_dynamics(r) for r in se_runs.shown(condition)]
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


def _accuracy_figure(se_runs, arch, save_figure):
    """Final test accuracy of every condition (one dot per seed, their mean as a bar), the
    quantity SE-9, SE-10, SE-11 and SE-14 compare (the paper's Fig. 6 and 8)."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, condition in enumerate(se_runs):
        acc = [_final_acc(r) for r in se_runs.shown(condition)]
        ax.bar(i, np.mean(acc), color="tab:blue" if condition in (NONE, FROM_0) else "tab:grey",
               alpha=0.5)
        ax.scatter([i] * len(acc), acc, color="black", s=10, zorder=3)
    ax.set_xticks(range(len(se_runs)), list(se_runs), rotation=35, ha="right", fontsize=7)
    low = min(_final_acc(r) for condition in se_runs for r in se_runs.shown(condition))
    ax.set(ylabel="final test accuracy (%)", ylim=(max(0.0, low - 5), None),
           title=f"selectivity regularizer conditions, {arch}")
    fig.tight_layout()
    save_figure(fig, "accuracy-by-condition")


# --------------------------------------------------------------------------- SE-1 … SE-3


@claim("SE-1", finding="early and intermediate selectivity rises in the first epochs, then "
       "recedes", rule=Rule("greater", min_effect=0.1), requires=SE_NEEDS)
def test_SE_1_selectivity_peaks_early_then_recedes(arch, se_runs, save_figure):
    """(peak − final) / final mean SI > 0 with peak ≥ 1.1 × final, for the early and the
    intermediate stage (paper Fig. 2; the peak searched in the first 20% of training).

    Scaled protocol: unregularized runs; per seed the smaller of the two stages' relative
    excess (both stages must show it); mean over seeds.
    """
    values = []
    for run in se_runs[NONE]:
        dyn = _dynamics(run)
        excess = [(peak - final) / final for peak, final in
                  (_peak_and_final(dyn, i) for i in _early_stage_indices(run))]
        values.append(min(excess))
    _selectivity_figure(se_runs, arch, save_figure)
    return seed_mean(values, statistic="(peak - final) / final SI, early & intermediate (min)")


@claim("SE-2", finding="the late stage shows no comparable decline",
       rule=Rule("less"), requires=SE_NEEDS)
def test_SE_2_late_stage_does_not_decline(arch, se_runs):
    """(peak − final)/peak of the late stage minus the mean of the same for the early and
    intermediate stages < 0 (paper Fig. 2).

    Scaled protocol: unregularized runs, peaks in the first 20% of training; per seed.
    """
    values = []
    for run in se_runs[NONE]:
        dyn = _dynamics(run)
        decline = [(p - f) / p for p, f in (_peak_and_final(dyn, i)
                                            for i in range(dyn["si"].shape[1]))]
        early = [decline[i] for i in _early_stage_indices(run)]
        values.append(decline[-1] - float(np.mean(early)))
    return seed_mean(values, statistic="decline(late) - decline(early, intermediate)")


@claim("SE-3", finding="selectivity settles late > intermediate > early",
       rule=Rule("greater", min_effect=0.5), requires=SE_NEEDS)
def test_SE_3_selectivity_settles_by_depth(arch, se_runs):
    """Spearman ρ(stage depth, final mean SI) > 0, ρ ≥ 0.5 (paper Fig. 2).

    Scaled protocol: unregularized runs; per seed, ρ over the (stage index, final SI) points
    of that net (points of one net are not independent of each other); mean over seeds with
    a Student-t CI and the exact stratified permutation p-value.
    """
    finals = [_dynamics(run)["si"][-1] for run in se_runs[NONE]]
    samples = [(np.arange(final.size), final) for final in finals]
    est = replace(stats.mean_correlation(samples),
                  statistic="mean over seeds of rho(stage depth, final SI)")
    return Evidence(est, {"per_seed_rho": [stats.rank_correlation(*xy) for xy in samples],
                          "final_si": [f.tolist() for f in finals]})


# --------------------------------------------------------------------------- SE-4 … SE-7


def _auc_column(group: str, order: str) -> int:
    return {"early": 0, "late": 2}[group] + {"selective": 0, "random": 1}[order]


def _final_auc_gap(se_runs, group: str) -> list[float]:
    return [float(d["auc"][-1, _auc_column(group, "selective")]
                  - d["auc"][-1, _auc_column(group, "random")])
            for d in map(_dynamics, se_runs[NONE])]


@claim("SE-4", finding="selective-first ablation of early/intermediate units hurts less than "
       "random", rule=Rule("greater"), requires=SE_NEEDS)
def test_SE_4_selective_ablation_milder_early_stages(arch, se_runs):
    """AUC(selective order) − AUC(random order) > 0 for the early and intermediate units of a
    trained net (paper Fig. 4).

    Scaled protocol: final unregularized nets; per stage (the paper's module), the same
    fraction of units ablated (clamped to 0) in each of its layers, most selective first (SI
    on 500 held-out test samples; dead units at random positions) or in 5 random orders;
    accuracy on 500 other test samples normalized between chance and the intact net; the
    early and intermediate stages' AUCs averaged; per seed.
    """
    return seed_mean(_final_auc_gap(se_runs, "early"),
                     statistic="AUC(selective) - AUC(random), early & intermediate")


@claim("SE-5", finding="in the late stage selective-first ablation hurts more than random",
       rule=Rule("less"), requires=SE_NEEDS)
def test_SE_5_selective_ablation_harsher_late_stage(arch, se_runs):
    """AUC(selective order) − AUC(random order) < 0 for the late stage (paper Fig. 4).

    Scaled protocol: as SE-4, the late stage's layers.
    """
    return seed_mean(_final_auc_gap(se_runs, "late"),
                     statistic="AUC(selective) - AUC(random), late")


def _window_slopes(run, order: str) -> float:
    dyn = _dynamics(run)
    auc = dyn["auc"][:, _auc_column("early", order)]
    window = (dyn["epoch"] > 0) & (dyn["epoch"] <= ABLATION_WINDOW) & np.isfinite(auc)
    return float(np.polyfit(dyn["epoch"][window], auc[window], 1)[0])


def _ablation_figure(se_runs, arch, save_figure):
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for order, color in (("selective", "tab:red"), ("random", "tab:blue")):
        for i, run in enumerate(se_runs[NONE]):
            dyn = _dynamics(run)
            keep = ~np.isnan(dyn["auc"][:, 0])
            ax.plot(dyn["epoch"][keep], dyn["auc"][keep, _auc_column("early", order)],
                    color=color, marker="o", ms=3, alpha=0.7,
                    label=f"{order} order" if i == 0 else None)
    ax.axvspan(0, ABLATION_WINDOW, color="grey", alpha=0.12, label="slope window")
    ax.set(xlabel="epoch", ylabel="ablation AUC (normalized)",
           title=f"early+intermediate ablation over training, {arch}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, "ablation-auc-over-training")


@claim("SE-6", finding="selective-first ablation is more damaging early in training",
       rule=Rule("greater"), requires=SE_NEEDS)
def test_SE_6_selective_ablation_damage_falls_over_training(arch, se_runs, save_figure):
    """Slope of the selective-order ablation AUC of early and intermediate units over the
    checkpoints of an early window > 0 (paper Fig. 5).

    Scaled protocol: unregularized runs; the checkpoints after initialization up to epoch 5
    (4 inside the first epoch, then every epoch); least-squares slope per seed (AUC per
    epoch).
    """
    _ablation_figure(se_runs, arch, save_figure)
    slopes = [_window_slopes(run, "selective") for run in se_runs[NONE]]
    return seed_mean(slopes, statistic="slope of selective-order AUC, early window")


@claim("SE-7", finding="random-order ablation damage is roughly constant over training",
       rule=Rule("less", reference=1.0), requires=SE_NEEDS)
def test_SE_7_random_ablation_damage_constant(arch, se_runs):
    """|slope of the random-order AUC| / |slope of the selective-order AUC| < 1, same window
    and units as SE-6 (paper Fig. 5).

    Scaled protocol: the slopes of SE-6 per seed; the ratio of their means over seeds,
    jackknife CI over seeds on the log scale (a ratio's interval is skewed).
    """
    selective = np.array([_window_slopes(r, "selective") for r in se_runs[NONE]])
    randoms = np.array([_window_slopes(r, "random") for r in se_runs[NONE]])
    est = stats.jackknife(lambda idx: abs(randoms[idx].mean()) / abs(selective[idx].mean()),
                          len(selective), name="|slope random| / |slope selective|", log=True)
    return Evidence(est, {"selective": selective.tolist(), "random": randoms.tolist()})


# --------------------------------------------------------------------------- SE-8


@claim("SE-8", finding="early and late representations are more similar in the first epochs",
       rule=Rule("greater"), requires=SE_NEEDS)
def test_SE_8_early_late_similarity_falls(arch, se_runs, save_figure):
    """Mean CKA(early stage, late stage) over the first checkpoints minus over the last ones
    > 0 (paper Fig. 7).

    Scaled protocol: unregularized runs; linear CKA between the (flattened) outputs of the
    last layer of the early stage and of the late stage on 1000 test samples; first = the
    checkpoints inside the first epoch and at its end, last = the last three; per seed.
    """
    values = []
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for run in se_runs[NONE]:
        dyn = _dynamics(run)
        first = (dyn["epoch"] > 0) & (dyn["epoch"] <= 1)
        values.append(float(dyn["cka"][first].mean() - dyn["cka"][-3:].mean()))
        ax.plot(np.maximum(dyn["epoch"], 0.05), dyn["cka"], marker="o", ms=3, alpha=0.8,
                label=f"seed {run.spec.seed}")
    ax.set(xscale="log", xlabel="epoch (log; 0 drawn at 0.05)", ylabel="linear CKA",
           title=f"CKA(early stage, late stage) over training, {arch}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, "early-late-cka")
    return seed_mean(values, statistic="CKA(first epoch) - CKA(end)")


# --------------------------------------------------------------------------- SE-9 … SE-14


def _peak_epoch(se_runs) -> int:
    """The start epoch "at the peak": the epoch (0..5) after which the mean SI of the
    regularized stages peaks in the unregularized runs, median over seeds."""
    peaks = []
    for run in se_runs[NONE]:
        dyn = _dynamics(run)
        whole = np.isin(dyn["epoch"], START_EPOCHS)
        si = dyn["si"][:, _early_stage_indices(run)].mean(1)
        peaks.append(float(dyn["epoch"][whole][np.argmax(si[whole])]))
    return int(np.clip(round(float(np.median(peaks))), min(START_EPOCHS), max(START_EPOCHS)))


@claim("SE-9", finding="regularizing against selectivity from epoch 0 impairs accuracy more "
       "than from the peak", rule=Rule("greater", min_effect=1.0), requires=SE_NEEDS)
def test_SE_9_regularizing_from_start_hurts_more(arch, se_runs, save_figure):
    """Final test accuracy(regularizer on from the selectivity peak) − (on from epoch 0) > 0,
    at least 1 point (paper Fig. 6: α = −20, on from epoch 5 vs 0).

    Scaled protocol: α against scaled as in the module docstring, on the early and
    intermediate stages; "the peak" is the epoch (0…5) after which the regularized stages'
    mean SI peaks in the unregularized runs (median over seeds); paired over seeds; points.
    """
    peak = _peak_epoch(se_runs)
    _accuracy_figure(se_runs, arch, save_figure)
    return seed_paired([_final_acc(r) for r in se_runs[f"against from {peak}"]],
                       [_final_acc(r) for r in se_runs[FROM_0]],
                       statistic=f"acc(from peak = epoch {peak}) - acc(from 0), points")


@claim("SE-10", finding="switching the regularizer on at any epoch after the first performs "
       "about as well as at the peak", rule=Rule("less"), requires=SE_NEEDS)
def test_SE_10_first_epoch_is_the_critical_period(arch, se_runs):
    """(max − min final accuracy over start epochs 1…5) − the SE-9 gap < 0 (paper Fig. 8:
    the critical period is the first epoch).

    Scaled protocol: accuracies averaged over seeds per start epoch. The range is the largest
    of the differences between two start epochs, so the statistic is the largest over
    ordered pairs (a, b) of start epochs of ``acc(a) − acc(b) − gap``, each a mean of
    per-seed values; its interval is the largest of their intervals at Bonferroni level.
    """
    peak = _peak_epoch(se_runs)
    acc = {e: np.array([_final_acc(r) for r in se_runs[f"against from {e}"]])
           for e in START_EPOCHS}
    later = [e for e in START_EPOCHS if e >= 1]

    def difference(idx: np.ndarray, a: int, b: int) -> float:
        gap = acc[peak][idx].mean() - acc[0][idx].mean()
        return float(acc[a][idx].mean() - acc[b][idx].mean() - gap)

    est = stats.simultaneous({(a, b): partial(difference, a=a, b=b)
                              for a in later for b in later if a != b},
                             len(acc[0]), lambda v: max(v.values()),
                             name="range(acc, start 1..5) - SE-9 gap, points")
    return Evidence(est, {str(e): v.tolist() for e, v in acc.items()})


@claim("SE-11", finding="regularizing in favour of selectivity early does not improve "
       "accuracy", rule=Rule("less", reference=0.5, min_effect=0.0), requires=SE_NEEDS)
def test_SE_11_more_selectivity_early_does_not_help(arch, se_runs):
    """Final accuracy(α > 0 for the first 4 epochs) − accuracy(unregularized) ≤ 0 with the
    CI's upper bound below +0.5 points (paper Fig. 13-14).

    Scaled protocol: α in favour scaled as in the module docstring, on every stage, epochs
    0–3 (paper appendix A.5.2); paired over seeds; points.
    """
    return seed_paired([_final_acc(r) for r in se_runs[FOR]],
                       [_final_acc(r) for r in se_runs[NONE]],
                       statistic="acc(for, epochs 0-3) - acc(unregularized), points")


@claim("SE-12", finding="the regularizer suppresses selectivity in the regularized stages",
       rule=Rule("less"), requires=SE_NEEDS)
def test_SE_12_regularizer_suppresses_selectivity(arch, se_runs, save_figure):
    """Mean SI of the regularized stages, regularized from epoch 0 − unregularized, at the
    peak epoch < 0 (paper Fig. 6).

    Scaled protocol: the peak epoch of SE-9; paired over seeds.
    """
    peak = _peak_epoch(se_runs)

    def si_at_peak(run) -> float:
        dyn = _dynamics(run)
        return float(dyn["si"][dyn["epoch"] == peak][0, _early_stage_indices(run)].mean())

    _selectivity_figure(se_runs, arch, save_figure)
    return seed_paired([si_at_peak(r) for r in se_runs[FROM_0]],
                       [si_at_peak(r) for r in se_runs[NONE]],
                       statistic=f"SI(regularized) - SI(unregularized) at epoch {peak}")


@claim("SE-13", finding="regularizing from epoch 0 over-represents some classes early",
       rule=Rule("greater"), requires=SE_NEEDS)
def test_SE_13_regularizer_skews_early_predictions(arch, se_runs):
    """Mean count of the 5 most predicted classes on held-out data, regularized from epoch 0
    − unregularized, over the first epochs > 0 (paper Fig. 9).

    Scaled protocol: the checkpoints after initialization within the first 2 epochs, 1000
    test samples; averaged over those checkpoints, paired over seeds.
    """
    def early_top5(run) -> float:
        dyn = _dynamics(run)
        first = (dyn["epoch"] > 0) & (dyn["epoch"] <= FIRST_EPOCHS)
        return float(dyn["top5"][first].mean())

    return seed_paired([early_top5(r) for r in se_runs[FROM_0]],
                       [early_top5(r) for r in se_runs[NONE]],
                       statistic="top-5 class count(from 0) - (unregularized)")


@claim("SE-14", finding="switched off after the first epochs the model recovers; kept on it "
       "does not", rule=Rule("greater"), requires=SE_NEEDS)
def test_SE_14_recovery_after_switching_off(arch, se_runs):
    """Final accuracy(on at epoch 0, off after 4 epochs) − (on at epoch 0, kept on) > 0
    (paper Fig. 15).

    Scaled protocol: paired over seeds; points.
    """
    return seed_paired([_final_acc(r) for r in se_runs[OFF]],
                       [_final_acc(r) for r in se_runs[FROM_0]],
                       statistic="acc(off after 4) - acc(kept on), points")
