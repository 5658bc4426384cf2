"""Claims of "Frivolous units: wider networks are not really that wide" (Casper et al. 2021).

Shared smoke protocol (scaled from the paper's CIFAR-10 AlexNets / ResNet56s, ImageNet
ResNet18s and synthetic-data MLPs): every architecture is trained at width factors ¼, ½, 1,
2 and 4, where 1x is a quarter of the registry's default width, so the 4x model is the
registry's model (MLP: 16…256 units per layer; conv net: 2…32 channels in the first layer;
ResNet: k = 1…16). Training uses the small task shared with the memorization claims (the
first 1000 MNIST-1D training samples; the paper's small experiments use 1000 examples), 3
seeds. On 500 test samples, per net:

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
from fractions import Fraction
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.ticker import NullFormatter

from netclaims import models, stats
from netclaims.claims import claim
from netclaims.metrics import (
    ablation_curve,
    prunable_fraction,
    redundant_fraction,
    width_gain,
)
from netclaims.stats import Evidence, Rule
from netclaims.units import collect

WIDTH_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
SHORT_FACTORS = (0.25, 1.0, 4.0)
BASE_WIDTH = 0.25
"""The 1x model's width multiplier: a quarter of the registry's default."""
PRUNE_FRACTIONS = tuple(np.linspace(0, 1, 7))
PRUNE_DRAWS = 3
EVAL_SAMPLES = 500
REGULARIZERS = {"dropout": {"dropout": 0.2}, "weight decay": {"weight_decay": 5e-4},
                "augmentation": {"augmentation": "auto"}}
INITIALIZATIONS = ("he_normal", "glorot_normal", "lecun_normal")
TEACHER_DIMS = (10, 1000)
"""Input dimensions of the teacher task (paper: 10 and 10,000)."""


def _measures(run) -> dict[str, float]:
    """Test accuracy, prunable and redundant fractions of one net (raw, before the k/4
    scaling), cached beside the run."""
    def compute() -> dict[str, torch.Tensor]:
        model = run.model
        layers = models.stages_of(model).layers
        x, y = run.data.x_test[:EVAL_SAMPLES], run.data.y_test[:EVAL_SAMPLES]
        curve = ablation_curve(model, x, y, layers, fractions=PRUNE_FRACTIONS,
                               orderings=PRUNE_DRAWS, measure="unchanged", per_position=True,
                               seed=run.spec.seed)
        acts = collect(model, x, layers, reduce="none")
        redundancy = np.mean([redundant_fraction(acts[layer]) for layer in layers])
        return {"prunable": torch.tensor(prunable_fraction(curve.x, curve.values)),
                "redundant": torch.tensor(float(redundancy)),
                "accuracy": torch.tensor(float(run.history.iloc[-1]["test_acc"]))}

    params = {"fractions": list(PRUNE_FRACTIONS), "draws": PRUNE_DRAWS,
              "samples": EVAL_SAMPLES}
    return {k: float(v) for k, v in run.derived("frivolous", params, compute).items()}


class WidthSeries:
    """Measures of a width series: ``values[measure]`` is a ``(seeds, widths)`` array, with
    prunable, redundant and non-prunable counts in units of the 4x model (× k/4)."""

    def __init__(self, factors: Sequence[float], runs: dict[float, list]) -> None:
        self.factors = list(factors)
        raw = {f: [_measures(r) for r in runs[f]] for f in self.factors}
        scale = np.array(self.factors) / max(self.factors)
        column = lambda key: np.array([[m[key] for m in raw[f]] for f in self.factors]).T  # noqa: E731
        self.values = {"prunable": column("prunable") * scale,
                       "redundant": column("redundant") * scale,
                       "non-prunable": (1 - column("prunable")) * scale,
                       "accuracy": column("accuracy")}

    @property
    def seeds(self) -> int:
        return self.values["accuracy"].shape[0]

    def gain(self, measure: str, seeds: np.ndarray | None = None) -> float:
        """g of the mean-over-seeds curve of ``measure`` (over the given seed indices);
        NaN when every doubling has a zero."""
        rows = self.values[measure] if seeds is None else self.values[measure][seeds]
        try:
            return width_gain(self.factors, rows.mean(0))
        except ValueError:
            return float("nan")


PLAIN = {"plain": {}}
RANDOM_LABELS = {"random labels": {"label_noise": 1.0}}
INIT_CONDITIONS = {init: {"init": init} for init in INITIALIZATIONS}
TEACHER_CONDITIONS = {f"dim {dim}": {"dataset": "teacher", "dataset_options": {"dim": dim}}
                      for dim in TEACHER_DIMS}
"""The teacher task replaces the small task (``task={}``)."""


def _zoos(arch) -> list[tuple[tuple[str, ...], dict, Sequence[float], dict | None]]:
    """``(claims that read it, conditions, factors, task)`` of every width series the
    claims train on ``arch``, in claim order."""
    zoos = [(("FU-1", "FU-2", "FU-3", "FU-4"), PLAIN, WIDTH_FACTORS, None),
            (("FU-5",), {**RANDOM_LABELS, **PLAIN}, WIDTH_FACTORS, None),
            (("FU-6",), {**PLAIN, **REGULARIZERS}, SHORT_FACTORS, None),
            (("FU-7",), INIT_CONDITIONS, SHORT_FACTORS, None)]
    if "feature_vectors" in arch.capabilities:
        zoos.append((("FU-8",), TEACHER_CONDITIONS, WIDTH_FACTORS, {}))
    return zoos


@pytest.fixture
def width_series(arch, train_runs, prefetch_runs, seeds, small_task) -> Callable[..., dict]:
    """``width_series({name: spec_fields, ...}, factors=WIDTH_FACTORS, task=None)``: for
    each condition, the nets of every width factor and seed on ``task`` (spec fields;
    default the small task), measured; one zoo for all conditions, so the session's
    executor trains them side by side, and every other series of the architecture that a
    claim of the session reads is started in the pool first (in claim order), so it stays
    busy while claims measure.
    The history is evaluated at the checkpoints only: the claims read the final test
    accuracy."""
    def variants(conditions: Mapping[str, dict], factors: Sequence[float],
                 task: dict | None) -> list[dict]:
        base = small_task if task is None else task
        return [{"seed": s, "noise_seed": s, "width": BASE_WIDTH * f,
                 "evaluate": "checkpoints", **base, **fields}
                for fields in conditions.values() for f in factors for s in seeds]

    def make(conditions: Mapping[str, dict], factors: Sequence[float] = WIDTH_FACTORS,
             task: dict | None = None) -> dict[str, WidthSeries]:
        for readers, *zoo in _zoos(arch):
            prefetch_runs(arch, variants(*zoo), derive=_measures, readers=readers)
        runs = iter(train_runs(arch, variants(conditions, factors, task), derive=_measures))
        return {name: WidthSeries(factors, {f: [next(runs) for _ in seeds] for f in factors})
                for name in conditions}
    return make


def _gain_estimate(series: WidthSeries, measure: str, name: str) -> stats.Estimate:
    return stats.jackknife(lambda idx: series.gain(measure, idx), series.seeds, name=name)


def _width_axis(ax, factors: Sequence[float]) -> None:
    """A log width axis labelled with the width factors (¼x … 4x) only."""
    ax.set_xscale("log")
    ax.set_xticks(list(factors), [f"{Fraction(f).limit_denominator()}x" for f in factors])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("width factor")


def _gain_figure(panels: dict[str, WidthSeries], measures: Sequence[str], title: str):
    """Counts (in units of the 4x model) against width on log-log axes, g annotated."""
    fig, axes = plt.subplots(1, len(measures), figsize=(4 * len(measures), 3.4),
                             squeeze=False)
    for ax, measure in zip(axes[0], measures, strict=True):
        for label, series in panels.items():
            mean = series.values[measure].mean(0)
            shown = mean > 0
            ax.plot(np.array(series.factors)[shown], mean[shown], marker="o",
                    label=f"{label}: g={series.gain(measure):.2f}")
        ax.plot(series.factors, np.array(series.factors) / max(series.factors), "k:",
                label="width (g=2)")
        ax.set(yscale="log", ylabel=f"{measure} units / 4x model size", title=measure)
        _width_axis(ax, series.factors)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


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
    _width_axis(ax, series.factors)
    save_figure(fig, "accuracy-by-width")
    est = replace(stats.mean_difference(acc[:, -1], acc[:, 0], paired=True),
                  statistic="accuracy(4x) - accuracy(1/4x), points")
    return Evidence(est, {"accuracy_by_width": acc.mean(0).tolist()})


def _plain_gain(cid: str, arch, width_series, save_figure, measure: str) -> Evidence:
    """g(measure) of the plain width series, with the counts by width kept."""
    series = width_series(PLAIN)["plain"]
    save_figure(_gain_figure({"plain": series}, ("prunable", "redundant", "non-prunable"),
                             f"{cid} frivolous units by width, {arch}"), "gains")
    return Evidence(_gain_estimate(series, measure, f"g({measure})"),
                    {f"mean_{measure}": series.values[measure].mean(0).tolist()})


@claim("FU-2", finding="prunable units outpace width growth",
       rule=Rule("greater", reference=2.0), requires=["stages", "width"])
def test_FU_2_prunable_units_outpace_width(arch, width_series, save_figure):
    """g(prunable) > 2 (paper Fig. 3a, 4)."""
    return _plain_gain("FU-2", arch, width_series, save_figure, "prunable")


@claim("FU-3", finding="redundant units outpace or keep pace with width growth",
       rule=Rule("greater", reference=2.0, inclusive=True), requires=["stages", "width"])
def test_FU_3_redundant_units_keep_pace_with_width(arch, width_series, save_figure):
    """g(redundant) ≥ 2 (paper Fig. 3b, 4)."""
    return _plain_gain("FU-3", arch, width_series, save_figure, "redundant")


@claim("FU-4", finding="non-prunable units grow slower than width",
       rule=Rule("less", reference=2.0), requires=["stages", "width"])
def test_FU_4_non_prunable_units_grow_slower(arch, width_series, save_figure):
    """g(non-prunable) < 2 (paper appendix: non-frivolous units less-than-double).

    One measurement with FU-2: prunable and non-prunable units add up to the width, so this
    is FU-2's count seen from the other side, not independent evidence; the catalogue states
    both, so both are reported.
    """
    return _plain_gain("FU-4", arch, width_series, save_figure, "non-prunable")


FRIVOLOUS = ("prunable", "redundant")


def _gains(series: dict[str, WidthSeries]) -> dict[tuple[str, str], Callable]:
    """g(prunable) and g(redundant) of each series as functions of the seeds used, leaving
    out a gain that is undefined on every seed (no unit of that kind at any width)."""
    out = {}
    for name, s in series.items():
        for measure in FRIVOLOUS:
            if np.isfinite(s.gain(measure)):
                out[name, measure] = partial(s.gain, measure)
    return out


def _frivolous_gain(gains: dict[tuple[str, str], float], series: str) -> float:
    """g of frivolous units of a series: the larger of its prunable and redundant gains."""
    return max(v for (name, _), v in gains.items() if name == series)


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
    save_figure(_gain_figure({"true labels": plain, "random labels": random},
                             ("prunable", "redundant"), f"FU-5 random labels, {arch}"),
                "random-label-gains")
    est = stats.simultaneous(_gains({"random": random}), random.seeds,
                             partial(_frivolous_gain, series="random"),
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

    save_figure(_gain_figure({"plain": plain, **regularized}, ("prunable", "redundant"),
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

    save_figure(_gain_figure(series, ("prunable", "redundant"),
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
    save_figure(_gain_figure(series,
                             ("prunable", "redundant"), f"FU-8 teacher task, {arch}"),
                "teacher-gains")
    seeds = next(iter(series.values())).seeds
    est = stats.simultaneous(
        _gains(series), seeds, lambda v: min(_frivolous_gain(v, dim) for dim in series),
        name="min over dims of g(prunable or redundant)")
    return Evidence(est, {d: {m: s.gain(m) for m in ("prunable", "redundant")}
                          for d, s in series.items()})
