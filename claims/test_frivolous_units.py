"""Claims of "Frivolous units: wider networks are not really that wide" (Casper et al. 2021).

Shared smoke protocol (scaled from the paper's CIFAR-10 AlexNets / ResNet56s, ImageNet
ResNet18s and synthetic-data MLPs): every architecture is trained at width factors ¼, ½, 1,
2 and 4, where 1x is a quarter of the registry's default width, so the 4x model is the
registry's model (MLP: 16…256 units per layer; conv net: 2…32 channels in the first layer),
unless the ¼x net would have a layer of a single unit: then 1x is half the default (ResNet:
k = 2…32; with k = 1 the ¼x ResNet stays near chance). Training uses the small task shared
with the memorization claims (the first 1000 MNIST-1D training samples; the paper's small
experiments use 1000 examples), 5 seeds (:data:`SEEDS`). On 500 test samples, per net:

* prunability: every unit of every unit layer (each position of a feature map its own unit,
  as the paper) knocked out at random in fractions 0, 1/6, …, 1, 3 draws; the fraction of
  units that can go while ≥ 80% of the predictions stay unchanged (linear interpolation, best
  draw), times k/4 (in units of the 4x model);
* redundancy: per layer, the fraction of units whose smallest principal components explain
  ≤ 5% of the variance (feature maps are units, positions samples), times k/4, averaged over
  layers;
* gain g: the mean over consecutive doublings of value(2k)/value(k) of the mean-over-seeds
  curve; its CI is the jackknife's over seeds (each seed left out in turn).

The secondary conditions (regularizers, initializations) use widths ¼, 1 and 4 and the gain
per doubling of each quadrupling, against the plain series at the same widths.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pytest
from _fu import (
    FRIVOLOUS,
    INIT_CONDITIONS,
    INITIALIZATIONS,
    PLAIN,
    RANDOM_LABELS,
    REGULARIZERS,
    SHORT_FACTORS,
    TEACHER_CONDITIONS,
    WIDTH_FACTORS,
    WidthSeries,
    base_width,
    frivolous_gain,
    gain_figure,
    gains_of,
    measures_of,
    plain_gain,
    width_axis,
    zoos_of,
)

from netclaims import stats
from netclaims.claims import claim
from netclaims.stats import Evidence, Rule

SEEDS = {"smoke": 5}
"""Seeds per condition at smoke scale: a width series of small nets trains in seconds, and at
3 seeds most of the suite's effects could not be decided (docs/statistics.md;
``--netclaims-seeds`` overrides)."""


@pytest.fixture
def seeds(seeds_for) -> list[int]:
    return seeds_for(SEEDS)


@pytest.fixture
def width_series(arch, train_runs, prefetch_runs, seeds, small_task, run_spec,
                 claims_data) -> Callable[..., dict]:
    """``width_series({name: spec_fields, ...}, factors=WIDTH_FACTORS, task=None)``: for
    each condition, the nets of every width factor and seed on ``task`` (spec fields;
    default the small task), measured; one zoo for all conditions, so the session's
    executor trains them side by side, and every other series of the architecture that a
    claim of the session reads is started in the pool first (in claim order), so it stays
    busy while claims measure.
    The history is evaluated at the checkpoints only: the claims read the final test
    accuracy."""
    one_x = base_width(lambda w: run_spec(arch, width=w, **small_task).build_model(claims_data),
                       claims_data.x_test[:2])

    def variants(conditions: Mapping[str, dict], factors: Sequence[float],
                 task: dict | None) -> list[dict]:
        base = small_task if task is None else task
        return [{"seed": s, "noise_seed": s, "width": one_x * f,
                 "evaluate": "checkpoints", **base, **fields}
                for fields in conditions.values() for f in factors for s in seeds]

    def make(conditions: Mapping[str, dict], factors: Sequence[float] = WIDTH_FACTORS,
             task: dict | None = None) -> dict[str, WidthSeries]:
        for readers, *zoo in zoos_of(arch):
            prefetch_runs(arch, variants(*zoo), derive=measures_of, readers=readers)
        runs = iter(train_runs(arch, variants(conditions, factors, task), derive=measures_of))
        return {name: WidthSeries(factors, {f: [next(runs) for _ in seeds] for f in factors})
                for name in conditions}
    return make


@claim("FU-1", finding="test accuracy does not degrade as width grows",
       rule=Rule("greater", reference=-1.0, min_effect=0.0, inclusive=True),
       requires=["stages", "width"])
def test_FU_1_accuracy_does_not_degrade_with_width(arch, width_series, save_figure):
    """accuracy(4x) − accuracy(¼x) ≥ 0, CI lower bound ≥ −1 point (paper Fig. 1).

    Scaled protocol: the plain width series; final test accuracy (full MNIST-1D test set) in
    points, paired by seed.
    """
    series = width_series(PLAIN)["plain"]
    acc = series.values["accuracy"] * 100
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(series.factors, acc.T, marker="o", alpha=0.6)
    ax.set(ylabel="test accuracy (%)", title=f"FU-1 accuracy by width, {arch}")
    width_axis(ax, series.factors)
    save_figure(fig, "accuracy-by-width")
    est = replace(stats.mean_difference(acc[:, -1], acc[:, 0], paired=True),
                  statistic="accuracy(4x) - accuracy(1/4x), points")
    return Evidence(est, {"accuracy_by_width": acc.mean(0).tolist()})


@claim("FU-2", finding="prunable units outpace width growth",
       rule=Rule("greater", reference=2.0), requires=["stages", "width"])
def test_FU_2_prunable_units_outpace_width(arch, width_series, save_figure):
    """g(prunable) > 2 (paper Fig. 3a, 4)."""
    return plain_gain("FU-2", arch, width_series, save_figure, "prunable")


@claim("FU-3", finding="redundant units outpace or keep pace with width growth",
       rule=Rule("greater", reference=2.0, inclusive=True), requires=["stages", "width"])
def test_FU_3_redundant_units_keep_pace_with_width(arch, width_series, save_figure):
    """g(redundant) ≥ 2 (paper Fig. 3b, 4)."""
    return plain_gain("FU-3", arch, width_series, save_figure, "redundant")


@claim("FU-4", finding="non-prunable units grow slower than width",
       rule=Rule("less", reference=2.0), requires=["stages", "width"])
def test_FU_4_non_prunable_units_grow_slower(arch, width_series, save_figure):
    """g(non-prunable) < 2 (paper appendix: non-frivolous units less-than-double).

    One measurement with FU-2: prunable and non-prunable units add up to the width, so this
    is FU-2's count seen from the other side, not independent evidence; the catalogue states
    both, so both are reported.
    """
    return plain_gain("FU-4", arch, width_series, save_figure, "non-prunable")


@claim("FU-5", finding="frivolous units also proliferate in nets trained on random labels",
       rule=Rule("greater", reference=2.0), requires=["stages", "width"])
def test_FU_5_frivolous_units_with_random_labels(arch, width_series, save_figure):
    """g(prunable or redundant) with random labels > 2 (paper Fig. 4a).

    Scaled protocol: the width series trained on fully shuffled labels of the small task
    (which every width of the default architectures fits); the estimate is the larger of
    the prunable and redundant gains; its interval combines the two gains' jackknife
    intervals at Bonferroni level.
    """
    both = width_series({**RANDOM_LABELS, **PLAIN})
    random, plain = both["random labels"], both["plain"]
    save_figure(gain_figure({"true labels": plain, "random labels": random},
                             ("prunable", "redundant"), f"FU-5 random labels, {arch}"),
                "random-label-gains")
    est = stats.simultaneous(gains_of({"random": random}), random.seeds,
                             partial(frivolous_gain, series="random"),
                             name="g(prunable or redundant), random labels")
    return Evidence(est, {"g_prunable": random.gain("prunable"),
                          "g_redundant": random.gain("redundant")})


@claim("FU-6", finding="explicit regularizers change the trends only modestly",
       rule=Rule("less", reference=0.5), requires=["stages", "width"])
def test_FU_6_regularizers_change_trends_modestly(arch, width_series, save_figure):
    """max over regularizers and measures of |g(regularized) − g(plain)| / g(plain) < 0.5
    (paper Fig. 4b: AlexNets with augmentation, dropout or weight decay).

    Scaled protocol: widths ¼, 1, 4; dropout 0.2 on every unit layer, weight decay 5e-4, or
    the data's default augmentation (random shifts for sequences), each alone; gains of
    prunable and redundant units; the largest relative change is the statistic, its
    interval the largest of the changes' jackknife intervals at Bonferroni level (a seed left
    out of every condition at once).
    """
    regularized = width_series({**PLAIN, **REGULARIZERS}, SHORT_FACTORS)
    plain = regularized.pop("plain")

    def change(idx: np.ndarray, measure: str, series: WidthSeries) -> float:
        base = plain.gain(measure, idx)
        return abs(series.gain(measure, idx) - base) / base

    changes = {(name, m): partial(change, measure=m, series=s)
               for name, s in regularized.items() for m in FRIVOLOUS}

    save_figure(gain_figure({"plain": plain, **regularized}, ("prunable", "redundant"),
                             f"FU-6 regularizers, {arch}"), "regularizer-gains")
    est = stats.simultaneous(changes, plain.seeds, lambda v: max(v.values()),
                             name="max |g(regularized) - g(plain)| / g(plain)")
    return Evidence(est, {name: {m: s.gain(m) for m in ("prunable", "redundant")}
                          for name, s in {"plain": plain, **regularized}.items()})


@claim("FU-7", finding="initialization variance trades prunable against redundant units",
       rule=Rule("less", reference=0.0), requires=["stages", "width"])
def test_FU_7_initialization_trades_prunable_for_redundant(arch, width_series, save_figure):
    """Δg_prunable and Δg_redundant of opposite signs between the high-variance (He) and
    the low-variance (Glorot, LeCun) initializations (paper Fig. 2, 4c).

    Scaled protocol: widths ¼, 1, 4, normal He / Glorot / LeCun initializations (biases 0);
    for He vs Glorot and He vs LeCun the product Δg_prunable · Δg_redundant (negative when
    the signs are opposite); the statistic is the larger of the two products, so it is
    below 0 only when both comparisons trade one kind for the other; its interval is the
    larger of the products' jackknife intervals at Bonferroni level.
    """
    series = width_series(INIT_CONDITIONS, SHORT_FACTORS)
    high, *lows = INITIALIZATIONS

    def product(idx: np.ndarray, low: str) -> float:
        dp = series[high].gain("prunable", idx) - series[low].gain("prunable", idx)
        dr = series[high].gain("redundant", idx) - series[low].gain("redundant", idx)
        return dp * dr

    save_figure(gain_figure(series, ("prunable", "redundant"),
                             f"FU-7 initializations, {arch}"), "initialization-gains")
    est = stats.simultaneous({low: partial(product, low=low) for low in lows},
                             series[high].seeds, lambda v: max(v.values()),
                             name="max over low inits of dg_prunable * dg_redundant")
    return Evidence(est, {init: {m: s.gain(m) for m in ("prunable", "redundant")}
                          for init, s in series.items()})


@claim("FU-8", finding="frivolous units emerge on uncorrelated data labelled by a random "
                       "teacher",
       rule=Rule("greater", reference=2.0), requires=["stages", "width", "feature_vectors"])
def test_FU_8_frivolous_units_on_teacher_data(arch, width_series, save_figure):
    """g(prunable or redundant) on the teacher task > 2 for each input dimension (paper
    Fig. 4d: MLPs on 1000 Gaussian inputs of 10 and 10,000 dimensions, binary labels from a
    random teacher MLP a quarter of the 1x size).

    Scaled protocol: the teacher task at 10 and 1000 input dimensions (1000 training and
    1000 test samples); the width series of the architecture, trained with its registry
    protocol; the statistic is, over the two dimensions, the smaller of the frivolous gains
    (the larger of prunable and redundant), its interval combining the gains' jackknife
    intervals at Bonferroni level. Needs an architecture that takes feature vectors, as the
    paper's MLPs.
    """
    series = width_series(TEACHER_CONDITIONS, task={})
    save_figure(gain_figure(series,
                             ("prunable", "redundant"), f"FU-8 teacher task, {arch}"),
                "teacher-gains")
    seeds = next(iter(series.values())).seeds
    est = stats.simultaneous(
        gains_of(series), seeds, lambda v: min(frivolous_gain(v, dim) for dim in series),
        name="min over dims of g(prunable or redundant)")
    return Evidence(est, {d: {m: s.gain(m) for m in ("prunable", "redundant")}
                          for d, s in series.items()})
