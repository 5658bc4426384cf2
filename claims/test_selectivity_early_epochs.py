"""Claims of "On the special role of class-selective neurons in early training" (Ranadive,
Thakurdesai, Morcos, Leavitt & Gal 2023; ResNet-50 on ImageNet in the paper).

Shared smoke protocol: the small task of ``claims/conftest.py`` (the first 1000 MNIST-1D
training samples) trained for 20 epochs (paper: 90 ImageNet epochs; paper scale here: 40 on the
full set) with the registry's optimizer, conv nets with batch norm where they have it (as the
paper's ResNet-50; without it the conv net's dense layer dies under the regularizer from
epoch 0: the features' offsets grow, which lowers SI, and the net sits at chance), once per
seed (5, :data:`SEEDS`) in nine
conditions: unregularized; the selectivity regularizer against selectivity switched on at epoch
0, 1, …, 5 and kept on; switched on at epoch 0 and off after 4 epochs; and in favour of
selectivity for the first 4 epochs. Epochs are counted from 0 as in the paper ("switched on at
epoch e" = from the (e+1)-th pass over the data; the checkpoint after e passes is "epoch e").
The regularizer follows the paper: ``loss = CE − α · mean SI`` over the units of the early and
intermediate stages (against: α < 0) or of every stage (in favour: α > 0, the paper's appendix
A.5.2); α is the paper's (−20 against, +5 in favour) scaled by the ratio of the initial cross-
entropies, ln C / ln 1000 (C = the task's classes: −6.7 and +1.7 on MNIST-1D). The
unregularized and the from-epoch-0 runs keep checkpoints at initialization, 4 points inside the
first epoch, every epoch up to 5 and every 5 epochs after. Units are read at the blocks'
outputs, as the paper reads ResNet-50's bottleneck blocks (a residual net's block outputs, a
plain net's unit layers; the regularizer reads the same units). Selectivity: class
selectivity index of every unit (conv maps averaged over positions) on the first 1000 test
samples, averaged over the live units of each layer (units never active are left out), then
over the layers of a stage. Effects are per seed; CIs over seeds (Student t), so with 5 seeds
they are still wide.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pytest
from _se import (
    EPOCHS,
    FIRST_EPOCHS,
    FOR,
    FROM_0,
    NONE,
    OFF,
    SE_NEEDS,
    START_EPOCHS,
    TRACED,
    ablation_figure,
    accuracy_figure,
    conditions,
    dynamics,
    dynamics_if_traced,
    early_stage_indices,
    final_acc,
    final_auc_gap,
    peak_and_final,
    peak_epoch,
    selectivity_figure,
    window_slopes,
)
from _shared import conv_batchnorm

from netclaims import stats
from netclaims.claims import ReadOnLookup, checkpoint_schedule, claim
from netclaims.stats import Evidence, Rule, seed_mean, seed_paired

SEEDS = {"smoke": 5}
"""Seeds per condition at smoke scale: its nets train in seconds, and at 3 seeds most of the
suite's effects could not be decided (docs/statistics.md; ``--netclaims-seeds`` overrides)."""


@pytest.fixture
def seeds(seeds_for) -> list[int]:
    return seeds_for(SEEDS)


@pytest.fixture
def se_runs(arch, train_runs, read_runs, run_spec, seeds, scale, claims_data,
            small_task) -> Mapping[str, list]:
    """``{condition: [run per seed]}`` for the nine conditions of the module docstring; a
    claim reads (and is judged on the health of) only the conditions it looks up."""
    epochs = EPOCHS[scale]
    # the claims read final accuracies and the checkpoints' dynamics, never the history
    # between checkpoints
    base = {"epochs": epochs, "evaluate": "checkpoints"}
    if conv_batchnorm(arch):  # as the paper's ResNet-50
        base["batchnorm"] = True
    if "dataset_options" in small_task:
        base["dataset_options"] = small_task["dataset_options"]
    train_size = base.get("dataset_options", {}).get("train_size", claims_data.x_train.shape[0])
    steps = math.ceil(train_size / run_spec(arch, **base).batch_size)
    traced = checkpoint_schedule(epochs, steps)
    variants = {name: [{"seed": s, **base, "regularizers": regs,
                        **(traced if name in TRACED else {})} for s in seeds]
                for name, regs in conditions(claims_data.num_classes).items()}
    runs = iter(train_runs(arch, [v for group in variants.values() for v in group],
                           derive=dynamics_if_traced, read=False))
    return ReadOnLookup({name: [next(runs) for _ in seeds] for name in variants}, read_runs)


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
        dyn = dynamics(run)
        excess = [(peak - final) / final for peak, final in
                  (peak_and_final(dyn, i) for i in early_stage_indices(run))]
        values.append(min(excess))
    selectivity_figure(se_runs, arch, save_figure)
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
        dyn = dynamics(run)
        decline = [(p - f) / p for p, f in (peak_and_final(dyn, i)
                                            for i in range(dyn["si"].shape[1]))]
        early = [decline[i] for i in early_stage_indices(run)]
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
    finals = [dynamics(run)["si"][-1] for run in se_runs[NONE]]
    samples = [(np.arange(final.size), final) for final in finals]
    est = replace(stats.mean_correlation(samples),
                  statistic="mean over seeds of rho(stage depth, final SI)")
    return Evidence(est, {"per_seed_rho": [stats.rank_correlation(*xy) for xy in samples],
                          "final_si": [f.tolist() for f in finals]})


# --------------------------------------------------------------------------- SE-4 … SE-7


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
    return seed_mean(final_auc_gap(se_runs, "early"),
                     statistic="AUC(selective) - AUC(random), early & intermediate")


@claim("SE-5", finding="in the late stage selective-first ablation hurts more than random",
       rule=Rule("less"), requires=SE_NEEDS)
def test_SE_5_selective_ablation_harsher_late_stage(arch, se_runs):
    """AUC(selective order) − AUC(random order) < 0 for the late stage (paper Fig. 4).

    Scaled protocol: as SE-4, the late stage's layers.
    """
    return seed_mean(final_auc_gap(se_runs, "late"),
                     statistic="AUC(selective) - AUC(random), late")


@claim("SE-6", finding="selective-first ablation is more damaging early in training",
       rule=Rule("greater"), requires=SE_NEEDS)
def test_SE_6_selective_ablation_damage_falls_over_training(arch, se_runs, save_figure):
    """Slope of the selective-order ablation AUC of early and intermediate units over the
    checkpoints of an early window > 0 (paper Fig. 5).

    Scaled protocol: unregularized runs; the early window by accuracy: the checkpoints from
    the first at which the net has a quarter of its final gain over chance to the first at
    which it has three quarters (at least three; an epoch of the small task is 10 optimizer
    steps, an ImageNet epoch thousands); least-squares slope per seed (AUC per epoch).
    """
    ablation_figure(se_runs, arch, save_figure)
    slopes = [window_slopes(run, "selective") for run in se_runs[NONE]]
    return seed_mean(slopes, statistic="slope of selective-order AUC, early window")


@claim("SE-7", finding="random-order ablation damage is roughly constant over training",
       rule=Rule("less", reference=1.0), requires=SE_NEEDS)
def test_SE_7_random_ablation_damage_constant(arch, se_runs):
    """|slope of the random-order AUC| / |slope of the selective-order AUC| < 1, same window
    and units as SE-6 (paper Fig. 5).

    Scaled protocol: the slopes of SE-6 per seed; the ratio of their means over seeds,
    jackknife CI over seeds on the log scale (a ratio's interval is skewed).
    """
    selective = np.array([window_slopes(r, "selective") for r in se_runs[NONE]])
    randoms = np.array([window_slopes(r, "random") for r in se_runs[NONE]])
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
        dyn = dynamics(run)
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


@claim("SE-9", finding="regularizing against selectivity from epoch 0 impairs accuracy more "
       "than from the peak", rule=Rule("greater", min_effect=1.0), requires=SE_NEEDS)
def test_SE_9_regularizing_from_start_hurts_more(arch, se_runs, save_figure):
    """Final test accuracy(regularizer on from the selectivity peak) − (on from epoch 0) > 0,
    at least 1 point (paper Fig. 6: α = −20, on from epoch 5 vs 0).

    Scaled protocol: α against scaled as in the module docstring, on the early and
    intermediate stages; "the peak" is the epoch (0…5) after which the regularized stages'
    mean SI peaks in the unregularized runs (median over seeds); paired over seeds; points.
    """
    peak = peak_epoch(se_runs)
    accuracy_figure(se_runs, arch, save_figure)
    return seed_paired([final_acc(r) for r in se_runs[f"against from {peak}"]],
                       [final_acc(r) for r in se_runs[FROM_0]],
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
    peak = peak_epoch(se_runs)
    acc = {e: np.array([final_acc(r) for r in se_runs[f"against from {e}"]])
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
    return seed_paired([final_acc(r) for r in se_runs[FOR]],
                       [final_acc(r) for r in se_runs[NONE]],
                       statistic="acc(for, epochs 0-3) - acc(unregularized), points")


@claim("SE-12", finding="the regularizer suppresses selectivity in the regularized stages",
       rule=Rule("less"), requires=SE_NEEDS)
def test_SE_12_regularizer_suppresses_selectivity(arch, se_runs, save_figure):
    """Mean SI of the regularized stages, regularized from epoch 0 − unregularized, at the
    peak epoch < 0 (paper Fig. 6).

    Scaled protocol: the peak epoch of SE-9; paired over seeds.
    """
    peak = peak_epoch(se_runs)

    def si_at_peak(run) -> float:
        dyn = dynamics(run)
        return float(dyn["si"][dyn["epoch"] == peak][0, early_stage_indices(run)].mean())

    selectivity_figure(se_runs, arch, save_figure)
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
        dyn = dynamics(run)
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
    return seed_paired([final_acc(r) for r in se_runs[OFF]],
                       [final_acc(r) for r in se_runs[FROM_0]],
                       statistic="acc(off after 4) - acc(kept on), points")
