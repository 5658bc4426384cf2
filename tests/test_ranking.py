"""Kendall τ-a, granulated Kendall coefficient, PGDL score."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from netclaims.metrics import granulated_kendall, group_taus, kendall_tau, pgdl_score


def _zoo(seed: int = 0) -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(seed)
    for lr, width, depth in itertools.product([0.01, 0.1, 0.3], [1, 2], [2, 4]):
        acc = 0.5 + lr + 0.1 * width - 0.02 * depth + rng.normal(scale=0.01)
        rows.append({"lr": lr, "width": width, "depth": depth, "acc": acc, "const": 1})
    return pd.DataFrame(rows)


def test_kendall_tau_a_counts_ties_in_denominator():
    assert kendall_tau([1, 2, 3], [1, 2, 3]) == 1.0
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    # one tie in b: pairs (1,2) tie -> 0; others concordant: 4 of 6 ordered pairs
    assert kendall_tau([1, 2, 3], [1, 1, 3]) == pytest.approx(4 / 6)


@given(st.lists(st.integers(-1000, 1000), min_size=2, max_size=20, unique=True))
def test_monotone_measure_gives_plus_and_minus_one(values):
    x = np.asarray(values, dtype=float)
    frame = pd.DataFrame({"x": x, "up": np.exp(x / 100), "down": -x ** 3, "axis": x})
    assert kendall_tau(x, frame["up"]) == pytest.approx(1.0)
    assert kendall_tau(x, frame["down"]) == pytest.approx(-1.0)
    assert granulated_kendall(frame, "up", "x", ["axis"])["total"] == pytest.approx(1.0)
    assert granulated_kendall(frame, "down", "x", ["axis"])["total"] == pytest.approx(-1.0)


def test_granulated_groups_by_other_axes_and_ignores_single_valued_axes():
    frame = _zoo()
    frame["measure"] = frame["acc"]
    result = granulated_kendall(frame, "measure", "acc", ["lr", "width", "depth", "const"])
    assert result["lr"] == result["width"] == result["depth"] == 1.0
    assert result["const"] is None and result["total"] == 1.0
    frame["lr_only"] = frame["lr"]  # knows only the learning rate
    partial = granulated_kendall(frame, "lr_only", "acc", ["lr", "width", "depth"])
    assert partial["lr"] == 1.0 and partial["width"] == 0.0 and partial["depth"] == 0.0
    assert partial["total"] == pytest.approx(1 / 3)


def test_granulated_errors():
    frame = _zoo()
    with pytest.raises(ValueError, match="not in the frame"):
        granulated_kendall(frame, "nope", "acc", ["lr"])
    with pytest.raises(ValueError, match="varies"):
        granulated_kendall(frame, "acc", "acc", ["const"])


def test_pgdl_score_extremes():
    frame = _zoo()
    frame["perfect"] = frame["acc"] * 2
    frame["noise"] = np.random.default_rng(1).normal(size=len(frame))
    assert pgdl_score(frame, "perfect", "acc", ["lr", "width", "depth"]) == pytest.approx(1.0)
    # self-pairs always agree (sign 0 on both sides), so even noise scores above 0 when
    # strata are small; it must still score well below a perfect measure
    assert pgdl_score(frame, "noise", "acc", ["lr", "width", "depth"]) < 0.85
    frame["lr_only"] = frame["lr"]
    # conditioning on lr removes everything lr_only knows
    assert pgdl_score(frame, "lr_only", "acc", ["lr", "width", "depth"]) == pytest.approx(0.0)


def test_group_taus_are_the_terms_of_the_granulated_coefficient():
    frame = pd.DataFrame({"lr": [1, 1, 2, 2, 1, 1, 2, 2], "width": [1, 2, 1, 2, 1, 2, 1, 2],
                          "seed": [0, 0, 0, 0, 1, 1, 1, 1],
                          "measure": [1, 2, 3, 4, 2, 1, 3, 5], "acc": [1, 2, 3, 4, 1, 2, 3, 4]})
    taus = group_taus(frame, "measure", "acc", ["lr", "width", "seed"])
    assert sorted(taus) == ["lr", "seed", "width"] and len(taus["lr"]) == 4
    assert taus["width"] == [1.0, -1.0, 1.0, 1.0]  # groups (lr, seed) in sorted order
    granulated = granulated_kendall(frame, "measure", "acc", ["lr", "width", "seed"])
    for axis, values in taus.items():
        assert granulated[axis] == pytest.approx(np.mean(values))


def _tau_a_by_pairs(a, b) -> float:
    """τ-a from its definition: over unordered pairs, +1 concordant, −1 discordant, 0 tied
    in either (joint ties included), divided by all n(n−1)/2 pairs."""
    pairs = list(itertools.combinations(range(len(a)), 2))
    score = sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i, j in pairs)
    return float(score) / len(pairs)


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=2, max_size=25))
def test_kendall_tau_matches_its_definition_with_ties_and_joint_ties(pairs):
    a = np.array([p[0] for p in pairs], dtype=float)
    b = np.array([p[1] for p in pairs], dtype=float)
    assert kendall_tau(a, b) == pytest.approx(_tau_a_by_pairs(a, b), abs=1e-12)
    assert kendall_tau(a, b) == pytest.approx(kendall_tau(b, a), abs=1e-12)  # symmetric
    # strictly increasing maps of either variable change nothing
    assert kendall_tau(np.exp(a), b ** 3 + 2 * b) == pytest.approx(kendall_tau(a, b), abs=1e-12)


def test_joint_ties_stay_in_the_denominator():
    # pairs (0,1) tie in both variables: τ-a counts them as 0 out of 3 pairs, so 2/3 here
    # (dropping joint ties from the denominator, as Carbonnelle's code does, would give 1)
    assert kendall_tau([1, 1, 2], [5, 5, 7]) == pytest.approx(2 / 3)


@given(st.integers(0, 2**31 - 1))
def test_granulated_kendall_matches_a_brute_force_loop_over_groups(seed):
    frame = _zoo(seed % 1000)
    rng = np.random.default_rng(seed)
    frame["m"] = rng.integers(0, 4, len(frame)).astype(float)  # ties on purpose
    axes = ["lr", "width", "depth"]
    psi = {}
    for axis in axes:
        others = [a for a in axes if a != axis]
        taus = []
        for _, group in frame.groupby(others):
            if len(group) > 1 and group[axis].nunique() > 1:
                taus.append(_tau_a_by_pairs(group["m"].to_numpy(), group["acc"].to_numpy()))
        psi[axis] = float(np.mean(taus))
    got = granulated_kendall(frame, "m", "acc", axes)
    for axis in axes:
        assert got[axis] == pytest.approx(psi[axis], abs=1e-12)
    assert got["total"] == pytest.approx(np.mean(list(psi.values())), abs=1e-12)


def test_a_permutation_p_needs_an_axis_that_varies_within_a_group():
    from netclaims.metrics import granulated_permutation_p

    frame = pd.DataFrame({"a": [0, 1, 2], "b": [0, 1, 2], "m": [0.1, 0.5, 0.3],
                          "acc": [0.2, 0.4, 0.9]})  # every model differs in both axes
    with pytest.raises(ValueError, match="no axis among"):
        granulated_permutation_p(frame, "m", "acc", ["a", "b"])
