"""Comparing two reports: netclaims.compare and ``netclaims compare``."""

from __future__ import annotations

import json

from netclaims.cli import main
from netclaims.compare import compare_reports, compare_table
from netclaims.report import build_report


def _record(cid: str, arch: str, verdict: str, estimate: float, low: float, high: float):
    return {"id": cid, "paper": cid.split("-")[0], "finding": f"finding {cid}", "arch": arch,
            "scale": "smoke", "verdict": verdict, "estimate": estimate, "ci_low": low,
            "ci_high": high}


BEFORE = [_record("SD-1", "mlp", "PASS", -0.8, -0.9, -0.6),
          _record("SD-2", "mlp", "INCONCLUSIVE", 0.1, -0.2, 0.4),
          _record("SD-3", "mlp", "FAIL", 0.5, 0.3, 0.7),
          _record("SD-4", "mlp", "PASS", 0.2, 0.1, 0.3)]
AFTER = [_record("SD-1", "mlp", "PASS", -0.75, -0.85, -0.65),  # inside: unchanged
         _record("SD-2", "mlp", "PASS", 0.5, 0.3, 0.7),  # verdict changed
         _record("SD-3", "mlp", "FAIL", 1.5, 1.2, 1.8),  # same verdict, estimate moved
         _record("SD-5", "mlp", "PASS", 0.3, 0.1, 0.5)]  # new; SD-4 gone


def test_changes_are_classified():
    changes = {c.claim: c for c in compare_reports(build_report(BEFORE, {}),
                                                   build_report(AFTER, {}))}
    assert {k: c.kind for k, c in changes.items()} == {
        "SD-1": "same", "SD-2": "verdict", "SD-3": "moved", "SD-4": "only before",
        "SD-5": "only after"}
    assert changes["SD-3"].difference == 1.0 and changes["SD-4"].difference is None


def test_the_table_lists_what_moved_and_counts_everything():
    text = compare_table(compare_reports(build_report(BEFORE, {}), build_report(AFTER, {})))
    assert "SD-1" not in text.split("\n\n")[0]  # unchanged rows only with everything=True
    for line in ("SD-2 ", "verdict changed", "SD-3 ", "estimate moved", "only in the first",
                 "only in the second"):
        assert line in text
    assert text.endswith("5 results: 1 verdicts changed, 1 estimates moved beyond the "
                         "other's 95% CI, 1 only in the first report, 1 only in the second, "
                         "1 unchanged")


def test_two_architectures_are_compared_claim_by_claim():
    mlp = [_record("SD-1", "mlp", "PASS", -0.8, -0.9, -0.6)]
    mine = [_record("SD-1", "mypkg:net", "FAIL", 0.4, 0.2, 0.6)]
    (change,) = compare_reports(build_report(mlp, {}), build_report(mine, {}))
    assert change.kind == "verdict" and change.arch == "mlp → mypkg:net"


def test_the_command_prints_the_table_and_can_fail_on_change(tmp_path, capsys):
    paths = []
    for name, records in (("a", BEFORE), ("b", AFTER)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(build_report(records, {})))
        paths.append(str(path))
    assert main(["compare", *paths]) == 0
    out = capsys.readouterr().out
    assert "verdict changed" in out and "SD-1" not in out.split("\n\n")[0]
    assert main(["compare", *paths, "--all", "--markdown"]) == 0
    assert "| SD-1 " in capsys.readouterr().out
    assert main(["compare", *paths, "--fail-on-change"]) == 1
    assert main(["compare", paths[0], paths[0], "--fail-on-change"]) == 0
