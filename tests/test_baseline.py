"""Comparing a record with its baseline entry on the same and on other numerics."""

from __future__ import annotations

import pytest

from netclaims.report import compare_to_baseline, estimate_drift

ENTRY = {"verdict": "PASS", "estimate": 0.5, "tolerance": 0.1}


def record(verdict: str, estimate: float | None = 0.5) -> dict:
    return {"verdict": verdict, "estimate": estimate}


@pytest.mark.parametrize("same_numerics", [True, False])
def test_no_entry_and_an_unchanged_record_compare_clean(same_numerics):
    for entry, rec in ((None, record("FAIL")), (ENTRY, record("PASS", 0.55))):
        comparison = compare_to_baseline(rec, entry, same_numerics=same_numerics)
        assert comparison.departure is None and comparison.note is None


@pytest.mark.parametrize(("old", "new"), [("PASS", "INCONCLUSIVE"), ("INCONCLUSIVE", "FAIL"),
                                          ("FAIL", "INCONCLUSIVE"), ("INCONCLUSIVE", "PASS")])
def test_one_step_departs_on_the_same_numerics_and_is_noted_on_others(old, new):
    entry = {**ENTRY, "verdict": old}
    same = compare_to_baseline(record(new), entry, same_numerics=True)
    assert same.departure.startswith(f"verdict changed: baseline {old}")
    other = compare_to_baseline(record(new), entry, same_numerics=False)
    assert other.departure is None
    assert f"now {new}" in other.note and "one step, on other numerics" in other.note


@pytest.mark.parametrize(("old", "new"), [("PASS", "FAIL"), ("FAIL", "PASS"), ("N/A", "PASS"),
                                          ("PASS", "N/A"), ("INCONCLUSIVE", "ERROR"),
                                          ("ERROR", "FAIL")])
@pytest.mark.parametrize("same_numerics", [True, False])
def test_reversals_and_changes_of_kind_depart_everywhere(old, new, same_numerics):
    comparison = compare_to_baseline(record(new), {**ENTRY, "verdict": old},
                                     same_numerics=same_numerics)
    assert comparison.departure == (f"verdict changed: baseline {old} (estimate 0.5), now {new} "
                                    "(estimate 0.5)")
    assert comparison.note is None


def test_moved_estimate_departs_on_the_same_numerics_and_is_noted_on_others():
    same = compare_to_baseline(record("PASS", 0.75), ENTRY, same_numerics=True)
    assert same.departure == "estimate moved: baseline 0.5 ± 0.1, now 0.75 (difference 0.25)"
    other = compare_to_baseline(record("PASS", 0.75), ENTRY, same_numerics=False)
    assert other.departure is None
    assert other.note == f"{same.departure} on other numerics (not a failure)"


def test_an_estimate_exactly_at_its_tolerance_has_not_moved():
    at_edge = {"verdict": "PASS", "estimate": 0.75, "tolerance": 0.25}
    assert estimate_drift({"verdict": "PASS", "estimate": 0.5}, at_edge) is None
    assert estimate_drift({"verdict": "PASS", "estimate": 0.5 - 1e-9}, at_edge) is not None
    assert estimate_drift({"verdict": "PASS", "estimate": None}, at_edge) is None
