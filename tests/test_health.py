"""Run health: runs that did not train or collapsed are never evidence."""

from __future__ import annotations

import json

from netclaims.health import diagnose
from netclaims.store import Store
from netclaims.train import RunSpec

pytest_plugins = ["pytester"]


def _spec(**fields) -> RunSpec:
    return RunSpec(**{"model": "mlp", "dataset": "digits", "width": 0.25, "epochs": 3,
                      **fields})


def test_an_untrained_run_is_diagnosed_and_a_trained_one_is_not(tmp_path):
    store = Store(tmp_path)
    trained = store.run(_spec(), device="cpu")
    frozen = store.run(_spec(epochs=0), device="cpu")  # never trained
    assert diagnose(trained) is None
    why = diagnose(frozen)
    assert why is not None and why.startswith("did not train: training accuracy")
    assert "chance 0.10" in why


def test_a_collapsed_run_is_diagnosed(tmp_path, monkeypatch):
    import torch

    run = Store(tmp_path).run(_spec(), device="cpu")
    counts = torch.zeros(10, dtype=torch.long)
    counts[3] = 450  # every test prediction is class 3
    monkeypatch.setattr(type(run), "derived", lambda self, name, params, compute:
                        {"counts": counts})
    assert diagnose(run) == "collapsed: class 3 takes 100.0% of its test predictions"


CLAIM = '''
from netclaims.claims import claim, paper
from netclaims.stats import Estimate, Rule

paper("MY", "My lab's findings")

@claim("MY-1", finding="reads a frozen net", rule=Rule("greater"))
def test_frozen(arch, train_run):
    run = train_run(arch, dataset="digits", width=0.25, epochs=0)
    return Estimate("d", 1.0, 0.5, 1.5, 3, 0.01)  # whatever it measured

@claim("MY-2", finding="crashes on a frozen net", rule=Rule("greater"))
def test_crashes(arch, train_run):
    train_run(arch, dataset="digits", width=0.25, epochs=0)
    raise ValueError("the intact model's accuracy is not above chance")
'''


def test_a_claim_reading_an_unhealthy_run_is_inconclusive(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("NETCLAIMS_STORE", str(tmp_path / "store"))
    pytester.makepyfile(test_mine=CLAIM)
    result = pytester.runpytest("--netclaims-arch", "mlp")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*MY-1 reads a frozen net: 1 run(s) it reads are not "
                                 "evidence: mlp/digits*did not train*-> INCONCLUSIVE*"])
    report = json.loads((pytester.path / "netclaims-report" / "report.json").read_text())
    records = {r["id"]: r for r in report["records"]}
    assert {r["verdict"] for r in records.values()} == {"INCONCLUSIVE"}
    assert records["MY-1"]["estimate"] is None and records["MY-1"]["n"] == 0
    assert "did not train" in records["MY-2"]["details"]["unhealthy_runs"][0]
