"""Run health: runs that did not train or collapsed are never evidence."""

from __future__ import annotations

import json

import pytest

from netclaims.health import diagnose, training_floor
from netclaims.spec import RunSpec
from netclaims.store import Store

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


class _Run:
    """What diagnose reads of a run: its labels, its history, its cached prediction counts."""

    def __init__(self, train_acc: float, counts: list[int], label_noise: float = 0.0,
                 samples: int = 100) -> None:
        import pandas as pd
        import torch

        self.spec = type("Spec", (), {"label_noise": label_noise})()
        self.data = type("Data", (), {"y_train": torch.arange(samples) % 10})()
        self.history = pd.DataFrame({"epoch": [0, 5], "train_acc": [0.1, train_acc]})
        self.counts = torch.tensor(counts)

    def derived(self, name, params, compute):
        return {"counts": self.counts}


def test_the_floor_lies_a_fifth_of_the_way_from_chance_to_one():
    spread = [10] * 10
    assert diagnose(_Run(0.27, spread)).startswith("did not train: training accuracy 0.270, "
                                                   "chance 0.100, floor 0.280")
    assert diagnose(_Run(0.29, spread)) is None
    assert diagnose(_Run(0.9, [99, 1] + [0] * 8)).startswith("collapsed: class 0 takes 99.0%")
    assert diagnose(_Run(0.9, [98, 2] + [0] * 8)) is None


GROUPS = '''
import pytest
from netclaims.claims import ReadOnLookup, claim, paper
from netclaims.stats import Estimate, Rule

paper("MY", "My lab's findings")

@pytest.fixture
def groups(arch, train_runs, read_runs):
    runs = train_runs(arch, [{"dataset": "digits", "width": 0.25, "epochs": e}
                             for e in (3, 0)], read=False)
    return ReadOnLookup({"trained": runs[:1], "untrained": runs[1:]}, read_runs)

@claim("MY-1", finding="reads the trained group", rule=Rule("greater"))
def test_trained(groups):
    assert groups["trained"][0].spec.epochs == 3
    return Estimate("d", 1.0, 0.5, 1.5, 3, 0.01)

@claim("MY-2", finding="reads the untrained group", rule=Rule("greater"))
def test_untrained(groups):
    groups["untrained"]
    return Estimate("d", 1.0, 0.5, 1.5, 3, 0.01)

@claim("MY-3", finding="only shows the untrained group in a figure", rule=Rule("greater"))
def test_shown(groups):
    assert groups.shown("untrained")[0].spec.epochs == 0
    groups["trained"]
    return Estimate("d", 1.0, 0.5, 1.5, 3, 0.01)
'''


def test_a_claim_is_judged_on_the_groups_it_reads(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("NETCLAIMS_STORE", str(tmp_path / "store"))
    pytester.makepyfile(test_groups=GROUPS)
    result = pytester.runpytest("--netclaims-arch", "mlp")
    result.assert_outcomes(passed=2, failed=1)
    report = json.loads((pytester.path / "netclaims-report" / "report.json").read_text())
    verdicts = {r["id"]: r["verdict"] for r in report["records"]}
    assert verdicts == {"MY-1": "PASS", "MY-2": "INCONCLUSIVE", "MY-3": "PASS"}


def test_a_net_that_memorizes_little_of_shuffled_labels_has_trained():
    """On wholly shuffled labels a narrow net fits little, as the frivolous-units paper's
    narrow nets did: above chance by 3 binomial standard deviations it has trained; with
    clean labels the same accuracy has not."""
    spread = [100] * 10
    floor = training_floor(0.1, 1000, 1.0)
    assert floor == pytest.approx(0.1 + 3 * (0.1 * 0.9 / 1000) ** 0.5)  # 0.128
    assert diagnose(_Run(0.2, spread, label_noise=1.0, samples=1000)) is None
    assert diagnose(_Run(0.2, spread, samples=1000)).startswith("did not train")
    assert diagnose(_Run(0.12, spread, label_noise=1.0, samples=1000)) == (
        "did not train: training accuracy 0.120, chance 0.100, floor 0.128")
    assert diagnose(_Run(0.2, spread, label_noise=0.2, samples=1000)) is not None
