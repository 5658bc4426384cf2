"""Claims of "Training dynamics of representations: perfect fitting and epoch-wise double
descent" (the representation-dynamics paper; ResNet-18 and ViT-B/16 on CIFAR-10 with and
without 20% label noise, Adam at a constant 1e-4 for 4000 epochs).

Shared smoke protocol: the small task of ``claims/conftest.py`` (the first 1000 MNIST-1D
training samples) trained with the registry's optimizer and learning rate held constant (the
paper's constant-rate Adam; no decay that would end the evolution early) for twice the epochs
that fit 1000 shuffled labels (MLP and conv net 80, smoke ResNet 50; paper scale: twice that
on the full set), so that the nets reach perfect fitting early and then train on inside the
perfect-fitting regime. Three families per seed (3 at smoke, 5 at paper): true labels; 20% of
the labels shuffled ("noisy"); noisy at a quarter of the registry width ("narrow", RD-3).
Checkpoints at initialization (epoch 0), every epoch to 10, then every 5. CKA: linear CKA of
the flattened outputs of a unit layer on the first 1000 test samples (one full batch; the
paper averages 4 batches of 512), each checkpoint's centered Gram matrix computed once and
every pair taken from them (``cka_matrix``). The perfect-fitting epoch is the first whose
training accuracy on the labels as trained is 100%. Linear probes (RD-7, RD-10): on the first
and the deepest unit layer at every checkpoint, trained on the 1000 training samples with the
labels as trained (Adam 1e-3, 20 epochs, seeded) and scored on the test samples. Effects are
per seed; CIs over seeds.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from _rd import (
    CKA_SAMPLES,
    CLEAN,
    NARROW,
    NOISY,
    SMOOTHING,
    TRANSITION_TOLERANCE,
    blocks,
    dynamics_figure,
    epoch_ticks,
    families_of,
    heatmap_figure,
    heatmaps,
    init_minus_best,
    off_diagonal_mean,
    perfect_fit_epoch,
    probes_of,
    rd_zoo,
    unit_layers,
)

from netclaims import stats
from netclaims.claims import claim
from netclaims.metrics import (
    cka_matrix,
    decision_region_similarity,
    double_descent,
    moving_average,
)
from netclaims.stats import Rule, seed_mean, seed_paired
from netclaims.units import collect


@pytest.fixture
def rd_runs(arch, train_runs, read_runs, prefetch_runs, run_spec, seeds, small_task_of):
    """``rd_runs(family) -> [run per seed]`` for the families of the module docstring, all
    of an architecture's families trained in one zoo (the built-in transformer's one family
    at a time: by default it serves only RD-9, which reads the noisy family). When the
    session also runs RD-9 on the built-in transformer, its zoo, the longest, is started
    first, so that it shares the pool with the other architectures' zoos instead of ending
    the session with one worker training a transformer while the others wait."""
    def make(family: str) -> list:
        if str(arch) != "transformer":
            zoo, derive = rd_zoo("transformer", (NOISY,), seeds, small_task_of("transformer"),
                                  run_spec)
            prefetch_runs("transformer", zoo[NOISY], derive=derive, readers=("RD-9",))
        families = (family,) if str(arch) == "transformer" else families_of(arch)
        zoo, derive = rd_zoo(arch, families, seeds, small_task_of(arch), run_spec)
        runs = train_runs(arch, [v for group in zoo.values() for v in group], derive=derive,
                          read=False)
        start = list(zoo).index(family) * len(seeds)
        return read_runs(runs[start:start + len(seeds)])
    return make


# --------------------------------------------------------------------------- RD-1 … RD-4


@claim("RD-1", finding="the first layer barely moves from its initialization",
       rule=Rule("greater", reference=0.8, inclusive=True), requires=["stages"])
def test_RD_1_first_layer_stays_near_init(arch, rd_runs, save_figure):
    """min over checkpoints of CKA(first unit layer at t, at initialization) ≥ 0.8 (paper
    Figs. 1a, 2a).

    Scaled protocol: true-label runs; per seed the minimum of the heatmap's first column;
    mean over seeds, judged against 0.8.
    """
    clean, noisy = rd_runs(CLEAN), rd_runs(NOISY)
    values = []
    for run in clean:
        maps = heatmaps(run)
        values.append(float(maps[unit_layers(run.model)[0]][:, 0].min()))
    heatmap_figure({CLEAN: clean[0], NOISY: noisy[0]}, arch, save_figure, "cka-heatmaps")
    return seed_mean(values, statistic="min over t of CKA(first layer at t, init)")


@claim("RD-2", finding="in the perfect-fitting regime the first layer is closer to its "
       "initialization than to the best early-stopping epoch",
       rule=Rule("greater"), requires=["stages"])
def test_RD_2_first_layer_returns_towards_init(arch, rd_runs):
    """CKA(final, init) − CKA(final, best-test-accuracy epoch) of the first unit layer > 0
    (paper Figs. 1a, 2a).

    Scaled protocol: noisy runs at the registry width (the widest here); the best epoch is the
    kept checkpoint with the highest test accuracy before perfect fitting (the paper's best
    early-stopping epoch lies before it); per seed.
    """
    runs = rd_runs(NOISY)
    values = [init_minus_best(r) for r in runs]
    return seed_mean(values, statistic="CKA(final, init) - CKA(final, best epoch), first layer",
                     details={"perfect_fit_epochs": [perfect_fit_epoch(r) for r in runs]})


@claim("RD-3", finding="the return towards initialization needs width", rule=Rule("greater"),
       requires=["stages", "width"])
def test_RD_3_return_needs_width(arch, rd_runs):
    """RD-2's statistic at the registry width minus at a quarter of it > 0 (paper Figs. 8-10).

    Scaled protocol: noisy runs at width 1 and 0.25, paired by seed.
    """
    wide, narrow = rd_runs(NOISY), rd_runs(NARROW)
    return seed_paired([init_minus_best(r) for r in wide], [init_minus_best(r) for r in narrow],
                       statistic="RD-2 statistic, width 1 - width 1/4")


@claim("RD-4", finding="the first layer is nearly as similar to an unrelated initialization as "
       "to its own", rule=Rule("within", band=(0.0, 0.05)), requires=["stages"])
def test_RD_4_own_init_barely_closer_than_another(arch, rd_runs):
    """CKA(final, own initialization) − CKA(final, another seed's initialization) of the first
    unit layer within [0, 0.05] (paper appendix H.1, Fig. 19).

    Scaled protocol: noisy runs; seed i is compared with the initialization of seed i+1
    (cyclically), on the same 1000 test samples.
    """
    runs = rd_runs(NOISY)
    x = runs[0].data.x_test[:CKA_SAMPLES]
    values = []
    for i, run in enumerate(runs):
        other = runs[(i + 1) % len(runs)]
        layer = unit_layers(run.model)[0]
        reps = [collect(m, x, [layer], reduce="none")[layer].flatten(1)
                for m in (run.model, run.checkpoint(0), other.checkpoint(0))]
        cka = cka_matrix(reps[:1], reps[1:])[0]
        values.append(float(cka[0] - cka[1]))
    return seed_mean(values, statistic="CKA(final, own init) - CKA(final, other init)")


# --------------------------------------------------------------------------- RD-5 … RD-8


@claim("RD-5", finding="with label noise the deeper layers evolve much more", rule=Rule("less"),
       requires=["stages"])
def test_RD_5_noise_makes_deep_layers_churn(arch, rd_runs):
    """Mean off-diagonal CKA of the deepest unit layer, noisy − true labels < 0 (paper Figs.
    1e-f vs 2e-f).

    Scaled protocol: paired by seed (same initialization, same data order).
    """
    def deepest(run) -> float:
        return off_diagonal_mean(heatmaps(run)[unit_layers(run.model)[-1]])

    return seed_paired([deepest(r) for r in rd_runs(NOISY)], [deepest(r) for r in rd_runs(CLEAN)],
                       statistic="off-diagonal CKA of the deepest layer, noisy - clean")


@claim("RD-6", finding="with label noise the test error shows epoch-wise double descent",
       rule=Rule("greater"), requires=["stages"])
def test_RD_6_epochwise_double_descent(arch, rd_runs, save_figure):
    """Double-descent depth of the test error > 0: min(rise, −fall) at the point where both
    show most, with rise = error there − the lowest error before it and fall = final error −
    error there; the catalogue's two parts (rise > 0, final − peak < 0) in one number that is
    positive only when both hold (paper Figs. 2g, 7g).

    Scaled protocol: noisy runs; test error of every epoch smoothed by a centered 5-epoch
    moving average; per seed. Whether MNIST-1D at this size shows epoch-wise double descent is
    what the claim measures: the figure shows the curves.
    """
    runs = rd_runs(NOISY)
    shapes = [double_descent(moving_average(1 - r.history["test_acc"].to_numpy(), SMOOTHING))
              for r in runs]
    values = [shape.depth for shape in shapes]
    dynamics_figure(runs, arch, save_figure)
    return seed_mean(values, statistic="double-descent depth of test error",
                     details={"rise_and_fall": [(s.rise, s.fall) for s in shapes]})


@claim("RD-7", finding="only probes on the deeper layers show their own double descent",
       rule=Rule("greater"), requires=["stages"])
def test_RD_7_probe_double_descent_in_deep_layers(arch, rd_runs, save_figure):
    """Double-descent depth of the probe test error, deepest unit layer − first unit layer > 0
    (paper Fig. 6).

    Scaled protocol: noisy runs; probes at every checkpoint (see the module docstring); depth
    as in RD-6 on the probe error over checkpoints (unsmoothed: checkpoints are sparser than
    epochs); per seed.
    """
    runs = rd_runs(NOISY)
    values = []
    for run in runs:
        error = probes_of(run)["error"]
        values.append(double_descent(error[:, 1]).depth - double_descent(error[:, 0]).depth)
    dynamics_figure(runs, arch, save_figure)
    return seed_mean(values, statistic="probe double-descent depth, deepest - first")


@claim("RD-8", finding="representations form similarity blocks, more marked with label noise",
       rule=Rule("greater"), requires=["stages"])
def test_RD_8_similarity_blocks_sharper_with_noise(arch, rd_runs):
    """Block contrast (mean CKA inside the detected blocks − across them), noisy − true labels
    > 0 (paper section 3.3).

    Scaled protocol: per unit layer the best split of the checkpoints from epoch 5 on (the
    onset of learning is left out, :data:`TRANSIENT_EPOCHS`) into two contiguous blocks (one
    transition, ``metrics.similarity_blocks``), found in checkpoint order (every epoch to 10,
    then every 5) without weighting by epochs; contrast averaged over the unit layers; paired
    by seed.
    """
    def contrast(run) -> float:
        maps = heatmaps(run)
        return float(np.mean([blocks(maps, layer)[0] for layer in unit_layers(run.model)]))

    return seed_paired([contrast(r) for r in rd_runs(NOISY)], [contrast(r) for r in rd_runs(CLEAN)],
                       statistic="block contrast, noisy - clean")


# --------------------------------------------------------------------------- RD-9, RD-10


@claim("RD-9", finding="in a transformer the perfect-fitting epoch marks a transition in every "
       "block", rule=Rule("greater", reference=0.5, inclusive=True), requires=["transformer"])
def test_RD_9_transformer_transition_at_perfect_fit(arch, rd_runs, save_figure):
    """Fraction of transformer blocks whose detected block boundary lies within ±10% of
    training of the perfect-fitting epoch ≥ 0.5 (paper Figs. 3, 17).

    Scaled protocol: the built-in small transformer (3 pre-norm blocks over patches of 4
    positions), noisy runs; per block the best two-block split of its MLP units' CKA heatmap
    (RD-8, after the initial transient); per seed the fraction of blocks whose boundary is
    within ±10% of the perfect-fitting epoch (the catalogue's tolerance; a run that never
    fits perfectly counts 0).
    """
    runs = rd_runs(NOISY)
    values = []
    for run in runs:
        maps = heatmaps(run)
        fit = perfect_fit_epoch(run)
        hits = [abs(blocks(maps, layer)[1] - fit) <= TRANSITION_TOLERANCE * fit
                for layer in unit_layers(run.model)]
        values.append(float(np.mean(hits)) if math.isfinite(fit) else 0.0)
    heatmap_figure({NOISY: runs[0]}, arch, save_figure, "cka-heatmaps")
    return seed_mean(values, statistic="fraction of blocks with a transition at perfect fitting",
                     details={"perfect_fit_epochs": [perfect_fit_epoch(r) for r in runs]})


@claim("RD-10", finding="DRS agrees with CKA", rule=Rule("greater"), requires=["stages"])
def test_RD_10_drs_agrees_with_cka(arch, rd_runs, save_figure):
    """Spearman ρ between DRS and CKA over checkpoint pairs > 0, per layer (paper section 4,
    Fig. 6 and appendix).

    Scaled protocol: noisy runs; the probes of RD-7 on the first and the deepest unit layer;
    DRS of every pair of checkpoints over 5 dbViz planes of 20 × 20 points; ρ over the pairs
    (i < j) per layer, averaged over the two layers; per seed.
    """
    runs = rd_runs(NOISY)
    values, shown = [], None
    for run in runs:
        maps, planes = heatmaps(run), probes_of(run)["planes"]
        layers = unit_layers(run.model)
        e = planes.shape[0]
        pairs = np.triu_indices(e, 1)
        rhos = []
        for side, layer in enumerate((layers[0], layers[-1])):
            drs = np.ones((e, e))
            for i, j in zip(*pairs, strict=True):
                drs[i, j] = drs[j, i] = decision_region_similarity(
                    torch.from_numpy(planes[i, side]), torch.from_numpy(planes[j, side]))
            rhos.append(stats.rank_correlation(drs[pairs], maps[layer][pairs]))
            if shown is None or len(shown) < 2:
                shown = (shown or []) + [(layer, drs, maps[layer], maps["epoch"])]
        values.append(float(np.mean(rhos)))
    fig, axes = plt.subplots(2, 2, figsize=(6.5, 6))
    for row, (layer, drs, cka, epochs) in zip(axes, shown, strict=True):
        for ax, grid, title in ((row[0], drs, "DRS"), (row[1], cka, "CKA")):
            ax.imshow(grid, vmin=0, vmax=1, cmap="magma", origin="lower")
            epoch_ticks(ax, epochs)
            ax.set_title(f"{title}: {layer}", fontsize=8)
            ax.set(xlabel="epoch", ylabel="epoch")
    fig.suptitle(f"DRS beside CKA between checkpoints (seed {runs[0].spec.seed}), {arch}",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, "drs-vs-cka")
    return seed_mean(values, statistic="rho(DRS, CKA) over checkpoint pairs")
