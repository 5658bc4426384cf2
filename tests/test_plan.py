"""Plan mode (``--netclaims-plan``, ``netclaims plan``) and the paper-scale guard: how much a
selection trains is known before anything trains, and hours never start by surprise."""

from __future__ import annotations

import json

import pytest

from netclaims.plan import NotTrainedError, Plan, PlannedRun, run_seconds
from netclaims.spec import RunSpec
from netclaims.store import Store

pytest_plugins = ["pytester"]

PAPERS = '''
from netclaims.claims import paper
paper("MY", "My lab's findings")
'''

CLAIMS = '''
from netclaims.claims import claim
from netclaims.stats import Rule, seed_mean

ZOO = [{"dataset": "digits", "width": 0.25, "epochs": 2, "seed": s} for s in range(3)]

@claim("MY-1", finding="three seeds", rule=Rule("greater"))
def test_zoo(arch, train_runs):
    runs = train_runs(arch, ZOO)
    return seed_mean([r.history["test_acc"].iloc[-1] for r in runs], statistic="acc")

@claim("MY-2", finding="one of the same runs", rule=Rule("greater"))
def test_one(arch, train_run):
    run = train_run(arch, **ZOO[0])
    return seed_mean([run.history["test_acc"].iloc[-1]] * 3, statistic="acc")
'''


@pytest.fixture
def suite(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("NETCLAIMS_STORE", str(tmp_path / "store"))
    pytester.makeconftest(PAPERS)
    pytester.makepyfile(test_mine=CLAIMS)
    return pytester


def _spec(seed: int, **fields) -> RunSpec:
    return RunSpec(**{"model": "mlp", "dataset": "digits", "width": 0.25, "epochs": 2,
                      "seed": seed, **fields})


def _plan_row(result, paper: str) -> list[str]:
    return next(line.split() for line in result.outlines if line.startswith(paper + " "))


def test_the_plan_counts_runs_in_the_store_and_trains_nothing(suite, tmp_path):
    store = Store(tmp_path / "store")
    store.run(_spec(1), device="cpu")  # one of the three is there already
    result = suite.runpytest("--netclaims-arch", "mlp", "--netclaims-plan")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*netclaims plan*", "plan at smoke scale on cpu: nothing was "
                                 "trained*", "*estimated wall time*"])
    # the run two claims share counts once; one of three is in the store
    assert _plan_row(result, "MY")[:5] == ["MY", "mlp", "3", "1", "2"]
    assert sorted(store.run_keys()) == [_spec(1).key]  # nothing else trained
    plan = json.loads((suite.path / "netclaims-report" / "plan.json").read_text())
    assert plan["rows"][0]["to_train"] == 2 and plan["total_seconds"] > 0
    assert not (suite.path / "netclaims-report" / "report.json").exists()


def test_the_plan_at_paper_scale_needs_no_permission(suite):
    result = suite.runpytest("--netclaims-arch", "mlp", "--netclaims-scale", "paper",
                             "--netclaims-plan")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["plan at paper scale on *"])
    assert _plan_row(result, "MY")[:5] == ["MY", "mlp", "3", "0", "3"]


def test_paper_scale_stops_before_its_first_training_unless_allowed(suite, tmp_path):
    result = suite.runpytest("--netclaims-arch", "mlp", "--netclaims-scale", "paper")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["*paper scale would now train 3 run(s) (mlp/digits*), and "
                                 "its claims train for hours; nothing was trained*"
                                 "--netclaims-plan*--netclaims-allow-long*"])
    assert Store(tmp_path / "store").run_keys() == []
    allowed = suite.runpytest("--netclaims-arch", "mlp", "--netclaims-scale", "paper",
                              "--netclaims-allow-long", "--netclaims-seeds", "5")
    assert allowed.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
    assert len(Store(tmp_path / "store").run_keys()) == 3


def test_the_cli_plans_a_selection(suite, tmp_path, capsys, monkeypatch):
    from netclaims.cli import main

    monkeypatch.chdir(suite.path)
    assert main(["plan", "test_mine.py", "--netclaims-arch", "mlp", "-k", "MY_2",
                 "-p", "no:cacheprovider"]) == 0
    out = capsys.readouterr().out
    assert "netclaims plan" in out and Store(tmp_path / "store").run_keys() == []
    assert next(line.split() for line in out.splitlines()
                if line.startswith("MY "))[:5] == ["MY", "mlp", "1", "0", "1"]


def test_a_stand_in_run_names_what_was_read():
    run = PlannedRun(_spec(0))
    assert run.spec.seed == 0
    with pytest.raises(NotTrainedError, match=r"mlp/digits.*was not trained \(read .history\)"):
        _ = run.history


def test_a_run_two_families_ask_for_counts_once():
    plan = Plan()
    plan.add("A", "mlp", [_spec(0), _spec(1)])
    plan.add("B", "mlp", [_spec(1), _spec(2)])
    assert [list(g) for g in plan.groups.values()] == [[_spec(0).key, _spec(1).key],
                                                        [_spec(2).key]]


def test_the_estimate_counts_steps_and_evaluations():
    data = _spec(0).load_data()
    steps = -(-data.x_train.shape[0] // 128)  # the registry's batch size for the MLP
    evals = -(-(data.x_train.shape[0] + data.x_test.shape[0]) // 128)
    every = _spec(0, epochs=4, batch_size=128)
    assert run_seconds(every, data, 1.0, 0.5) == pytest.approx(4 * steps + 5 * evals * 0.5)
    sparse = _spec(0, epochs=4, batch_size=128, evaluate="checkpoints", checkpoint_epochs=[2])
    assert run_seconds(sparse, data, 1.0, 0.5) == pytest.approx(4 * steps + 3 * evals * 0.5)
