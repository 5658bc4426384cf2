"""The netclaims command: list, report, replication, store ls / gc."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from netclaims.cli import main
from netclaims.render import write_reports
from netclaims.report import build_report, make_baseline
from netclaims.spec import RunSpec
from netclaims.store import Store


def _report(tmp_path, runs=()):
    records = [
        {"id": "SD-7", "paper": "SD", "finding": "bn robust", "arch": "mlp", "scale": "smoke",
         "statistic": "d", "estimate": -0.15, "ci_low": -0.18, "ci_high": -0.13, "n": 3,
         "p_value": 0.25, "threshold": "CI > 0", "verdict": "FAIL", "seconds": 1.0,
         "message": "SD-7 ... -> FAIL", "figures": []},
        {"id": "SD-13", "paper": "SD", "finding": "zero vs mean", "arch": "mlp",
         "scale": "smoke", "statistic": "d", "estimate": 0.08, "ci_low": 0.06, "ci_high": 0.1,
         "n": 3, "p_value": 0.25, "threshold": "CI > 0", "verdict": "PASS", "seconds": 1.0,
         "message": "", "figures": []},
    ]
    report = build_report(records, {"scale": "smoke", "seeds": [0, 1, 2],
                                    "netclaims": "0.1.0", "git_commit": "abc"})
    report["runs"] = list(runs)
    write_reports(tmp_path / "rep", report)
    return tmp_path / "rep" / "report.json", report


def test_list_shows_claims_and_last_verdicts(tmp_path, capsys):
    claims = tmp_path / "claims"
    claims.mkdir()
    (claims / "test_x.py").write_text(
        "from netclaims.claims import Rule, claim, paper\n"
        "paper('SD', 'Single directions')\n"
        "@claim('SD-13', finding='zero vs mean', rule=Rule('greater'))\n"
        "def test_zero_vs_mean(arch):\n    pass\n"
        "@claim('SD-14', finding='depth', rule=Rule('greater'))\n"
        "def test_depth(arch):\n    pass\n")
    path, _ = _report(tmp_path)
    assert main(["list", "--claims", str(claims), "--report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "SD-13" in out and "mlp: PASS 0.08 [0.06, 0.1]" in out
    assert "SD-14" in out and "not run" in out and "SD-7" in out


def test_report_rerenders(tmp_path):
    path, _ = _report(tmp_path)
    (path.parent / "report.html").unlink()
    assert main(["report", str(path)]) == 0
    assert "SD-7" in (path.parent / "report.html").read_text()
    assert main(["report", str(path), "--out", str(tmp_path / "other")]) == 0
    assert (tmp_path / "other" / "report.md").exists()


def test_replication_table_rewrites_readme(tmp_path, capsys):
    path, report = _report(tmp_path)
    baseline = make_baseline(report)
    baseline["claims"]["SD-7@mlp@smoke"]["reason"] = "does not replicate on MNIST-1D"
    (tmp_path / "base.json").write_text(json.dumps(baseline))
    readme = tmp_path / "README.md"
    readme.write_text("top\n<!-- replication:start -->\nold\n<!-- replication:end -->\nend\n")
    assert main(["replication", str(path), "--baseline", str(tmp_path / "base.json"),
                 "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old" not in text and "does not replicate on MNIST-1D" in text
    row = next(line for line in text.splitlines() if line.startswith("| SD-7"))
    n = next(r["n"] for r in report["records"] if r["id"] == "SD-7")
    assert row.split("|")[5].strip() == str(n)  # the n each estimate rests on
    assert text.startswith("top\n") and text.endswith("end\n")
    readme.write_text("no markers")
    assert main(["replication", str(path), "--readme", str(readme)]) == 2
    assert "no <!-- replication:start -->" in capsys.readouterr().err


def test_store_ls_and_gc(tmp_path, capsys):
    store = Store(tmp_path / "store")
    keep = store.run(RunSpec(model="mlp", dataset="digits", width=0.25, epochs=1))
    drop = store.run(RunSpec(model="mlp", dataset="digits", width=0.25, epochs=1, seed=1))
    (store.path / "work" / "abandoned").mkdir()
    assert main(["store", "ls", "--store", str(store.path)]) == 0
    assert "2 runs" in capsys.readouterr().out
    path, _ = _report(tmp_path, runs=[keep.spec.key])
    assert main(["store", "gc", "--store", str(store.path), "--report", str(path),
                 "--dry-run"]) == 0
    assert store.has(drop.spec)
    assert main(["store", "gc", "--store", str(store.path), "--report", str(path)]) == 0
    assert store.run_keys() == [keep.spec.key]
    assert not (store.path / "work" / "abandoned").exists()


def test_bad_report_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "report.json"
    bad.write_text(json.dumps({"schema": 99, "records": []}))
    assert main(["report", str(bad)]) == 2
    assert "schema 99" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["nope"])


def test_inspect_prints_units_capabilities_and_claims(tmp_path, capsys, monkeypatch):
    claims = tmp_path / "claims"
    claims.mkdir()
    (claims / "test_mine.py").write_text(
        "from netclaims.claims import Rule, claim, paper\n"
        "paper('MY', \"My lab's findings\")\n"
        "@claim('MY-1', finding='runs anywhere', rule=Rule('greater'))\n"
        "def test_runs_anywhere(arch):\n    pass\n"
        "@claim('MY-2', finding='needs width', rule=Rule('greater'), requires=['width'])\n"
        "def test_needs_width(arch):\n    pass\n")
    monkeypatch.chdir(Path(__file__).parents[1])  # examples/ importable as from the repo
    assert main(["inspect", "examples.architectures:basicblock_resnet", "--task", "digits",
                 "--claims", str(claims)]) == 0
    out = capsys.readouterr().out
    assert "layer1.relu#1  intermediate       16" in out
    assert re.search(r"\nwidth +no: the factory takes none", out)
    assert re.search(r"\nnonnegative_units +yes", out)
    assert "claims in" in out and "1 run, 1 N/A" in out
    assert "MY-2  needs width" in out and "needs a 'width' knob (the factory takes none)" in out
    assert main(["inspect", "examples.architectures:cnn2d"]) == 4  # 2-D net on 1-D inputs
    assert "a forward pass on a batch of shape" in capsys.readouterr().err


def test_the_docs_catalogue_is_the_suites(capsys):
    """docs/catalogue.md is regenerated whenever a claim's finding, rule or summary changes."""
    root = Path(__file__).resolve().parents[1]
    assert main(["list", "--markdown", "--claims", str(root / "claims")]) == 0
    generated = capsys.readouterr().out.strip()
    assert generated.count("| SD-") == 16 and generated.count("| IC-") == 9
    assert generated in (root / "docs" / "catalogue.md").read_text(), \
        "docs/catalogue.md is stale: regenerate it with netclaims list --markdown"
