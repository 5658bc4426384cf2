"""Calibration of every judging path: on null data a claim PASSes (or FAILs) no more often than
its nominal level, at the n the suite uses.

Each case draws a null effect the way a claim's data arrive (per-seed values, independent
zoo members, points within a network, gains of a mean-over-seeds curve, the smoke zoo's
granulated τ) and judges it with the rule; the PASS and FAIL rates over the draws must stay
at the one-sided level of a 95% interval, 0.025, plus simulation error. ``python
tests/test_calibration.py`` prints the table of ``docs/statistics.md`` (null rates and power).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from netclaims import stats
from netclaims.metrics import width_gain
from netclaims.stats import Estimate, Outcome, Rule

NOMINAL = 0.025
WIDTHS = (0.25, 0.5, 1.0, 2.0, 4.0)
AXES = ("lr_scale", "batch_size", "weight_decay", "optimizer", "dropout", "augmentation",
        "width", "depth")


def smoke_zoo() -> pd.DataFrame:
    """The design of the IC smoke zoo: 2 × 2 core settings, around each one of the other
    axes raised at a time, weight decay only at the higher learning rate (26 models)."""
    plain = dict.fromkeys(AXES[2:], 0)
    rows = []
    for lr in (0, 1):
        for batch in (0, 1):
            for axis in (None, *plain):
                if axis == "weight_decay" and lr == 0:
                    continue
                rows.append({"lr_scale": lr, "batch_size": batch, **plain,
                             **({axis: 1} if axis else {})})
    return pd.DataFrame(rows)


ZOO = smoke_zoo()


def curves(rng: np.random.Generator, seeds: int, effect: float = 0.0) -> np.ndarray:
    """Per-seed values of a quantity that grows as width^(1 + effect/10) (gain 2 at no
    effect, 2.14 at effect 1), with 20% multiplicative noise per point."""
    noise = np.exp(rng.normal(0, 0.2, (seeds, len(WIDTHS))))
    return np.array(WIDTHS) ** (1 + effect / 10) * noise


def gain(values: np.ndarray) -> Callable[[np.ndarray], float]:
    return lambda idx: width_gain(WIDTHS, values[idx].mean(0))


def zoo_frame(rng: np.random.Generator, effect: float = 0.0) -> pd.DataFrame:
    frame = ZOO.copy()
    frame["acc"] = rng.normal(size=len(frame))
    frame["m"] = effect * frame["acc"] + rng.normal(size=len(frame))
    frame["s"] = frame["acc"] * 0.5 + rng.normal(size=len(frame))
    frame["s2"] = frame["acc"] * 0.5 + effect * frame["acc"] + rng.normal(size=len(frame))
    return frame


def within(points: int, seeds: int, sign: float = 1.0) -> Callable:
    return lambda rng, d=0.0: stats.mean_correlation(
        [(np.arange(points), sign * d * np.arange(points) / points + rng.normal(size=points))
         for _ in range(seeds)], seed=int(rng.integers(2**31)))


def paired(seeds: int, sign: float = 1.0) -> Callable:
    """Two conditions per seed, each seed shifting both (a seed effect of 2 sd)."""
    def draw(rng: np.random.Generator, d: float = 0.0) -> Estimate:
        seed_effect = 2.0 * np.arange(seeds)
        return stats.mean_difference(sign * d + rng.normal(size=seeds) + seed_effect,
                                     rng.normal(size=seeds) + seed_effect, paired=True)
    return draw


# name -> (draw(rng, effect) -> Estimate, rule), the claims each path serves in brackets; a
# positive effect moves the data towards the rule's predicted direction (in sd of the noise)
CASES: dict[str, tuple[Callable[..., Estimate], Rule]] = {
    "mean, 3 seeds (SD-6, SD-16, RD)":
        (lambda rng, d=0.0: stats.mean(d + rng.normal(size=3)), Rule("greater")),
    "mean, 5 seeds (SE; paper scale)":
        (lambda rng, d=0.0: stats.mean(d + rng.normal(size=5)), Rule("greater")),
    "mean, 10 seeds":
        (lambda rng, d=0.0: stats.mean(d + rng.normal(size=10)), Rule("greater")),
    "mean, 3 seeds, heavy tails (t3)":
        (lambda rng, d=0.0: stats.mean(-d + rng.standard_t(3, size=3)), Rule("less")),
    "paired difference, 3 seeds (SD-7...9, SD-13)":
        (paired(3), Rule("greater")),
    "paired difference, 5 seeds (FU-1, SE-9...14)":
        (paired(5, -1.0), Rule("less")),
    "correlation of 15 zoo members, tied x (SD-1, SD-2)":
        (lambda rng, d=0.0: stats.correlation(
            np.repeat([0, 0.25, 0.5, 0.75, 1.0], 3),
            -d * np.repeat([0, 0.25, 0.5, 0.75, 1.0], 3) + rng.normal(size=15),
            seed=int(rng.integers(2**31)), n_resamples=999), Rule("less")),
    "correlation of 9 zoo members (SD-3, SD-5)":
        (lambda rng, d=0.0: (lambda x: stats.correlation(
            x, d * x + rng.normal(size=9), seed=int(rng.integers(2**31)), n_resamples=999))(
                rng.normal(size=9)), Rule("greater")),
    "within-net rho, 3 stages x 3 seeds": (within(3, 3), Rule("greater")),
    "within-net rho, 3 stages x 5 seeds (SE-3)": (within(3, 5), Rule("greater")),
    "within-net rho, 4 layers x 3 seeds (SD-14)": (within(4, 3), Rule("greater")),
    "within-net rho, 8 checkpoints x 3 seeds (SD-4)": (within(8, 3, -1.0), Rule("less")),
    "jackknife gain of the mean curve, 3 seeds":
        (lambda rng, d=0.0: stats.jackknife(gain(curves(rng, 3, d)), 3, name="g"),
         Rule("greater", reference=2.0)),
    "jackknife gain of the mean curve, 3 seeds, less":
        (lambda rng, d=0.0: stats.jackknife(gain(curves(rng, 3, -d)), 3, name="g"),
         Rule("less", reference=2.0)),
    "jackknife gain of the mean curve, 5 seeds (FU-2...4)":
        (lambda rng, d=0.0: stats.jackknife(gain(curves(rng, 5, d)), 5, name="g"),
         Rule("greater", reference=2.0)),
    "jackknife ratio of means, log scale, 5 seeds (SE-7)":
        (lambda rng, d=0.0: (lambda a, b: stats.jackknife(
            lambda i: abs(a[i].mean()) / abs(b[i].mean()), 5, name="r", log=True))(
                rng.normal(1 - d / 4, 0.3, 5), rng.normal(1, 0.3, 5)), Rule("less", reference=1.0)),
    "larger of two gains, 5 seeds (FU-5)":
        (lambda rng, d=0.0: stats.simultaneous(
            {k: gain(curves(rng, 5, d)) for k in "ab"}, 5, lambda v: max(v.values()),
            name="g"), Rule("greater", reference=2.0)),
    "smaller of three gains, 5 seeds (FU-8)":
        (lambda rng, d=0.0: stats.simultaneous(
            {k: gain(curves(rng, 5, -d)) for k in "abc"}, 5, lambda v: min(v.values()),
            name="g"), Rule("less", reference=2.0)),
    "granulated tau over the smoke zoo (IC-1...4, IC-9)":
        (lambda rng, d=0.0: stats.granulated_tau(zoo_frame(rng, d), "m", "acc", AXES,
                                                 seed=int(rng.integers(2**31)),
                                                 n_resamples=999), Rule("greater")),
    "difference of granulated taus over the smoke zoo (IC-5)":
        (lambda rng, d=0.0: stats.granulated_tau(zoo_frame(rng, d), "s2", "acc", AXES,
                                                 minus="s", seed=int(rng.integers(2**31)),
                                                 n_resamples=999), Rule("greater")),
}


def rates(name: str, draws: int, seed: int, effect: float = 0.0) -> tuple[float, float]:
    """PASS and FAIL rates of a case over ``draws`` simulated data sets."""
    draw, rule = CASES[name]
    rng = np.random.default_rng(seed)
    outcomes = [rule.judge(draw(rng, effect)) for _ in range(draws)]
    return (sum(o is Outcome.PASS for o in outcomes) / draws,
            sum(o is Outcome.FAIL for o in outcomes) / draws)


def allowance(draws: int) -> float:
    """The nominal level plus simulation error (one-sided 99%)."""
    return NOMINAL + 2.326 * math.sqrt(NOMINAL * (1 - NOMINAL) / draws)


@pytest.mark.parametrize("name", CASES)
def test_null_data_pass_and_fail_at_most_the_nominal_level(name):
    passed, failed = rates(name, 400, seed=1)
    assert passed <= allowance(400), f"{name}: false PASS rate {passed:.3f}"
    assert failed <= allowance(400), f"{name}: false FAIL rate {failed:.3f}"


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_null_rates_over_2000_draws(name):
    passed, failed = rates(name, 2000, seed=2026)
    assert passed <= 0.03 and failed <= 0.03, (name, passed, failed)


@pytest.mark.parametrize("name", ["mean, 3 seeds (SD-6, SD-16, RD)",
                                  "correlation of 9 zoo members (SD-3, SD-5)",
                                  "granulated tau over the smoke zoo (IC-1...4, IC-9)"])
def test_a_large_true_effect_passes(name):
    """The paths can decide: a large effect in the predicted direction mostly PASSes."""
    passed, failed = rates(name, 100, seed=3, effect=4.0)
    assert passed >= 0.6 and failed == 0.0, (name, passed)


def table(draws: int = 2000, effects: tuple[float, ...] = (1.0, 2.0, 4.0)) -> str:
    """Markdown: each path's null PASS / FAIL rates and its PASS rate under effects."""
    head = "| path | null PASS | null FAIL | " + " | ".join(
        f"PASS at effect {e:g}" for e in effects) + " |"
    lines = [head, "|" + "---|" * (3 + len(effects))]
    for name in CASES:
        passed, failed = rates(name, draws, seed=2026)
        power = [rates(name, draws // 4, seed=7, effect=e)[0] for e in effects]
        lines.append(f"| {name} | {passed:.3f} | {failed:.3f} | "
                     + " | ".join(f"{p:.2f}" for p in power) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
