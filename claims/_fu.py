"""The frivolous-units suite's protocol: its width series (what each claim trains), the
measures taken from each net (prunable and redundant units, accuracy), the gains and the
figures. The claims themselves, one per finding, are in ``test_frivolous_units.py``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import NullFormatter

from netclaims import models, stats
from netclaims.metrics import (
    ablation_curve,
    prunable_fraction,
    redundant_fraction,
    width_gain,
)
from netclaims.stats import Evidence
from netclaims.units import collect

WIDTH_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)


SHORT_FACTORS = (0.25, 1.0, 4.0)


BASE_WIDTHS = (0.25, 0.5, 1.0)
"""Candidates for the 1x model's width multiplier, narrowest first: a quarter of the
registry's default unless the ¼x net would be too narrow (:func:`base_width`)."""


MIN_UNITS = 2
"""The ¼x net's narrowest unit layer keeps at least this many units: a one-channel layer is
a bottleneck no width series of the paper has (the smoke ResNet at a quarter of a quarter
width has one channel in its first stage and stays near chance: training accuracy
0.23–0.27, against 0.47–0.57 with two)."""


PRUNE_FRACTIONS = tuple(np.linspace(0, 1, 7))


PRUNE_DRAWS = 3


EVAL_SAMPLES = 500


REGULARIZERS = {"dropout": {"dropout": 0.2}, "weight decay": {"weight_decay": 5e-4},
                "augmentation": {"augmentation": "auto"}}


INITIALIZATIONS = ("he_normal", "glorot_normal", "lecun_normal")


TEACHER_DIMS = (10, 1000)
"""Input dimensions of the teacher task (paper: 10 and 10,000)."""


def base_width(build: Callable[[float], torch.nn.Module], inputs: torch.Tensor) -> float:
    """The first of :data:`BASE_WIDTHS` whose ¼x net (``build(width)``) has at least
    :data:`MIN_UNITS` units in each unit layer on ``inputs``."""
    for base in BASE_WIDTHS:
        model = build(base * min(WIDTH_FACTORS))
        layers = models.stages_of(model).layers
        if min(a.shape[1] for a in collect(model, inputs, layers).values()) >= MIN_UNITS:
            return base
    return BASE_WIDTHS[-1]


def measures_of(run) -> dict[str, float]:
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
        raw = {f: [measures_of(r) for r in runs[f]] for f in self.factors}
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


def zoos_of(arch) -> list[tuple[tuple[str, ...], dict, Sequence[float], dict | None]]:
    """``(claims that read it, conditions, factors, task)`` of every width series the
    claims train on ``arch``, in claim order."""
    zoos = [(("FU-1", "FU-2", "FU-3", "FU-4"), PLAIN, WIDTH_FACTORS, None),
            (("FU-5",), {**RANDOM_LABELS, **PLAIN}, WIDTH_FACTORS, None),
            (("FU-6",), {**PLAIN, **REGULARIZERS}, SHORT_FACTORS, None),
            (("FU-7",), INIT_CONDITIONS, SHORT_FACTORS, None)]
    if "feature_vectors" in arch.capabilities:
        zoos.append((("FU-8",), TEACHER_CONDITIONS, WIDTH_FACTORS, {}))
    return zoos


def gain_estimate(series: WidthSeries, measure: str, name: str) -> stats.Estimate:
    return stats.jackknife(lambda idx: series.gain(measure, idx), series.seeds, name=name)


def width_axis(ax, factors: Sequence[float]) -> None:
    """A log width axis labelled with the width factors (¼x … 4x) only."""
    ax.set_xscale("log")
    ax.set_xticks(list(factors), [f"{Fraction(f).limit_denominator()}x" for f in factors])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("width factor")


def gain_figure(panels: dict[str, WidthSeries], measures: Sequence[str], title: str):
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
        width_axis(ax, series.factors)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plain_gain(cid: str, arch, width_series, save_figure, measure: str) -> Evidence:
    """g(measure) of the plain width series, with the counts by width kept."""
    series = width_series(PLAIN)["plain"]
    save_figure(gain_figure({"plain": series}, ("prunable", "redundant", "non-prunable"),
                             f"{cid} frivolous units by width, {arch}"), "gains")
    return Evidence(gain_estimate(series, measure, f"g({measure})"),
                    {f"mean_{measure}": series.values[measure].mean(0).tolist()})


FRIVOLOUS = ("prunable", "redundant")


def gains_of(series: dict[str, WidthSeries]) -> dict[tuple[str, str], Callable]:
    """g(prunable) and g(redundant) of each series as functions of the seeds used, leaving
    out a gain that is undefined on every seed (no unit of that kind at any width)."""
    out = {}
    for name, s in series.items():
        for measure in FRIVOLOUS:
            if np.isfinite(s.gain(measure)):
                out[name, measure] = partial(s.gain, measure)
    return out


def frivolous_gain(gains: dict[tuple[str, str], float], series: str) -> float:
    """g of frivolous units of a series: the larger of its prunable and redundant gains."""
    return max(v for (name, _), v in gains.items() if name == series)
