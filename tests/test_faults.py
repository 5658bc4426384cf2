"""Fault injection: the store, the plugin, the CLI and the metrics under damage, races,
interruption and bad input. Each test reproduces one fault a user met and asserts what now
happens instead: nothing lost, nothing stuck, nothing silently wrong."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from netclaims.cli import main
from netclaims.spec import RunSpec
from netclaims.store import Store
from netclaims.train import train


def tiny(**fields) -> RunSpec:
    return RunSpec(**{"model": "mlp", "dataset": "digits", "width": 0.25, "epochs": 4,
                      **fields})


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _flip_byte(path: Path, at: int = -10) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))


# ----------------------------------------------------------------- damaged manifests


MANIFESTS = {
    "invalid utf-8": b"\xff\xfe{not text",
    "a list": b"[1, 2, 3]",
    "null": b"null",
    "files as a list": None,  # filled from the real manifest
    "no files": None,
}


@pytest.mark.parametrize("damage", list(MANIFESTS))
def test_a_damaged_manifest_is_named_and_retrained(tmp_path, damage, capsys):
    store = Store(tmp_path)
    spec = tiny(epochs=2)
    original = store.run(spec)
    path = store.entry(spec) / "manifest.json"
    manifest = json.loads(path.read_text())
    if damage == "files as a list":
        manifest["files"] = list(manifest["files"])
    elif damage == "no files":
        manifest["files"] = {}
    path.write_bytes(MANIFESTS[damage] or json.dumps(manifest).encode())
    # a listing shows the damage instead of failing
    assert main(["store", "ls", "--store", str(tmp_path)]) == 0
    assert "DAMAGED" in capsys.readouterr().out
    with pytest.warns(UserWarning, match="damaged"):
        rebuilt = Store(tmp_path).run(spec)
    assert rebuilt.fresh and _same_weights(rebuilt.model, original.model)
    assert Store(tmp_path).has(spec)  # repaired for good


# ----------------------------------------------------------------- damaged resumable state


class _InterruptError(Exception):
    pass


def _interrupted(store: Store, spec: RunSpec, at_epoch: int) -> Path:
    """Train ``spec`` into the store's work folder and stop after ``at_epoch`` epochs, with
    its resumable state saved."""
    work = store.path / "work" / spec.key

    def stop(event: dict) -> None:
        if event["event"] == "epoch" and event["epoch"] == at_epoch:
            raise _InterruptError

    with pytest.raises(_InterruptError):
        train(spec, work, device="cpu", state_every=0, progress=stop)
    assert json.loads((work / "state.json").read_text())["epoch"] == at_epoch
    return work


def _garble_json(work: Path) -> None:
    (work / "state.json").write_text('{"epoch": 2, "tens')


def _truncate_tensors(work: Path) -> None:
    (tensors,) = work.glob("state_*.safetensors")
    tensors.write_bytes(tensors.read_bytes()[:200])


def _flip_a_tensor_byte(work: Path) -> None:
    (tensors,) = work.glob("state_*.safetensors")
    _flip_byte(tensors)


def _wrong_types(work: Path) -> None:
    state = json.loads((work / "state.json").read_text())
    (work / "state.json").write_text(json.dumps({**state, "epoch": "two"}))


@pytest.mark.parametrize("damage", [_garble_json, _truncate_tensors, _flip_a_tensor_byte,
                                    _wrong_types])
def test_a_damaged_resumable_state_is_named_and_training_starts_afresh(tmp_path, damage):
    spec = tiny(epochs=4, dropout=0.1)
    store = Store(tmp_path / "store")
    damage(_interrupted(store, spec, at_epoch=2))
    epochs = []
    with pytest.warns(UserWarning, match=r"resumable state .* is damaged"):
        run = store.run(spec, progress=lambda e: epochs.append(e["epoch"]))
    assert epochs == [1, 2, 3, 4]  # from the start, not from the damaged epoch 2
    fresh = Store(tmp_path / "fresh").run(spec)
    assert _same_weights(run.model, fresh.model)


def test_an_intact_resumable_state_still_resumes(tmp_path):
    spec = tiny(epochs=4, dropout=0.1)
    store = Store(tmp_path / "store")
    _interrupted(store, spec, at_epoch=2)
    epochs = []
    run = store.run(spec, progress=lambda e: epochs.append(e["epoch"]))
    assert epochs == [3, 4]
    assert _same_weights(run.model, Store(tmp_path / "fresh").run(spec).model)


# ----------------------------------------------------------------- derived results


def test_a_flipped_byte_in_a_derived_result_is_detected_and_recomputed(tmp_path):
    run = Store(tmp_path).run(tiny(epochs=1))
    calls = []

    def compute():
        calls.append(1)
        return {"value": torch.tensor([0.75, 0.5])}

    run.derived("measure", {}, compute)
    (cached,) = (tmp_path / "derived" / run.spec.key).glob("measure-*.safetensors")
    _flip_byte(cached, at=-5)  # inside the tensor data, as found: 0.75 read back as 1.5
    with pytest.warns(UserWarning, match="derived result .* is damaged"):
        value = run.derived("measure", {}, compute)["value"]
    assert torch.equal(value, torch.tensor([0.75, 0.5])) and len(calls) == 2


# ----------------------------------------------------------------- gc


def _train_in_child(path: str, spec: dict, started: str) -> None:
    """Train ``spec``, pausing after epoch 1 until ``started`` is removed."""
    def mark(event: dict) -> None:
        if event["event"] == "epoch" and event["epoch"] == 1:
            Path(started).touch()
            while Path(started).exists():
                time.sleep(0.05)

    Store(path).run(RunSpec.from_dict(spec), progress=mark)


def test_gc_refuses_while_a_trainer_runs_and_its_entry_lands(tmp_path):
    spec = tiny(epochs=3)
    started = tmp_path / "started"
    proc = multiprocessing.get_context("spawn").Process(
        target=_train_in_child, args=(str(tmp_path / "store"), spec.to_dict(), str(started)))
    proc.start()
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline and proc.is_alive():
        time.sleep(0.05)
    assert started.exists(), "the trainer did not start"
    gc = subprocess.run([sys.executable, "-m", "netclaims.cli", "store", "gc", "--store",
                         str(tmp_path / "store")], capture_output=True, text=True, timeout=60)
    assert gc.returncode == 3
    assert f"in use by processes {proc.pid}" in gc.stderr and "nothing was removed" in gc.stderr
    assert (tmp_path / "store" / "work" / spec.key).exists()
    started.unlink()
    proc.join(120)
    assert proc.exitcode == 0
    assert Store(tmp_path / "store").has(spec)


def test_gc_leaves_a_run_this_process_is_training(tmp_path):
    store = Store(tmp_path)
    work = store.path / "work" / "k"
    work.mkdir()
    with FileLock(str(store.path / "locks" / "k.lock")):
        assert main(["store", "gc", "--store", str(tmp_path)]) == 0
        assert work.exists()
    assert main(["store", "gc", "--store", str(tmp_path)]) == 0
    assert not work.exists()


def test_gc_keeps_what_reports_read_and_cleans_derived_and_locks(tmp_path, capsys):
    store = Store(tmp_path)
    kept, dropped = store.run(tiny(epochs=1)), store.run(tiny(epochs=1, seed=1))
    for run in (kept, dropped):
        run.derived("m", {}, lambda: {"v": torch.ones(2)})
    stale = tmp_path / "derived" / kept.spec.key / "old-0000.safetensors"
    stale.write_bytes(b"written by another version")
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"schema": 1, "records": [], "provenance": {},
                                  "runs": [kept.spec.key]}))
    assert main(["store", "gc", "--store", str(tmp_path), "--report", str(report)]) == 0
    assert store.run_keys() == [kept.spec.key]
    assert not (tmp_path / "derived" / dropped.spec.key).exists() and not stale.exists()
    assert len(list((tmp_path / "derived" / kept.spec.key).glob("m-*"))) == 1
    assert [p.name for p in (tmp_path / "locks").glob("*.lock")] == ["store.lock"]
    assert "MB freed" in capsys.readouterr().out


def test_gc_with_a_report_that_lists_no_runs_removes_nothing(tmp_path, capsys):
    store = Store(tmp_path)
    run = store.run(tiny(epochs=1))
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"schema": 1, "records": [], "provenance": {}}))
    assert main(["store", "gc", "--store", str(tmp_path), "--report", str(report)]) == 2
    assert "no 'runs' list" in capsys.readouterr().err
    assert store.has(run.spec)


# ----------------------------------------------------------------- Ctrl-C


_ZOO = """
import sys
from netclaims.store import Store
from netclaims.spec import RunSpec
specs = [RunSpec(model="mlp", dataset="digits", width=0.25, epochs=400, seed=s)
         for s in range(4)]
Store(sys.argv[1]).runs(specs, executor="process", workers=2)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (ended, not yet reaped by its parent) no longer trains
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads process states from /proc")
def test_one_ctrl_c_stops_the_pool_within_5_s_and_the_store_stays_consistent(tmp_path):
    root = tmp_path / "store"
    child = subprocess.Popen([sys.executable, "-c", _ZOO, str(root)], start_new_session=True,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 90
    while time.time() < deadline and len(list((root / "work").glob("*"))) < 2:
        time.sleep(0.05)
    workers = [int(p.name) for p in (root / "locks" / "users").glob("*")
               if int(p.name) != child.pid]
    assert len(workers) == 2, "both workers should be training"
    os.killpg(child.pid, signal.SIGINT)  # a terminal sends Ctrl-C to the whole group
    interrupted = time.time()
    child.wait(30)
    while any(map(_alive, workers)) and time.time() - interrupted < 30:
        time.sleep(0.05)
    stopped = time.time() - interrupted
    assert stopped < 5, f"training went on for {stopped:.1f} s after Ctrl-C"
    assert "KeyboardInterrupt" in child.stderr.read()
    store = Store(root)
    assert store.run_keys() == []  # nothing published half-trained, no run took a new job
    spec = RunSpec(model="mlp", dataset="digits", width=0.25, epochs=400, seed=0)
    assert store.run(spec).history["epoch"].iloc[-1] == 400  # its lock is free again


# ----------------------------------------------------------------- plugin options and files


TRAINING_CLAIM = '''
from netclaims.claims import claim
from netclaims.stats import Estimate, Rule

@claim("SD-1", finding="trains a run", rule=Rule("greater"))
def test_trains(arch, train_run):
    train_run(arch, epochs=6, width=0.25)
    return Estimate("x", 0.5, 0.4, 0.6, 3, 0.01)
'''


@pytest.fixture
def claims_env(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("NETCLAIMS_STORE", str(tmp_path / "store"))
    pytester.makeconftest('from netclaims.claims import paper\npaper("SD", "Single '
                          'directions")\n')
    pytester.makepyfile(test_claims=TRAINING_CLAIM)
    (pytester.path / "a_file").write_text("not a folder")
    return pytester


def _trained(tmp_path: Path) -> list[str]:
    runs = tmp_path / "store" / "runs"
    return [p.name for p in runs.iterdir()] if runs.exists() else []


@pytest.mark.parametrize("option", ["--netclaims-report=a_file/report",
                                    "--netclaims-save-baseline=a_file/base.json"])
def test_an_unwritable_output_fails_before_any_training(claims_env, tmp_path, option):
    result = claims_env.runpytest("--netclaims-task", "digits", "--netclaims-arch", "mlp",
                                  option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    name = option.split("=")[0]
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and f"{name}: cannot write into" in errors[0]
    assert _trained(tmp_path) == []


def test_a_report_that_cannot_be_written_at_the_end_keeps_the_summary(claims_env, tmp_path,
                                                                      monkeypatch):
    import netclaims.records

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", "netclaims-report/report.json")

    monkeypatch.setattr(netclaims.records, "write_reports", disk_full)
    result = claims_env.runpytest("--netclaims-task", "digits", "--netclaims-arch", "mlp")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines(["*SD-1*mlp*PASS*",
                                 "*the report could not be written (*report.json: No space "
                                 "left on device)*"])


@pytest.mark.parametrize(("args", "ini", "message"), [
    (["--netclaims-seeds=0"], "", "*smoke scale needs at least 3 seeds*got*0*"),
    ([], "netclaims_seeds = abc", "*netclaims_seeds must be a whole number of seeds, got "
                                  "'abc'*"),
    (["--netclaims-save-baseline=."], "", "*--netclaims-save-baseline . is a folder*"),
])
def test_bad_options_are_one_clear_line(claims_env, args, ini, message):
    if ini:
        claims_env.makeini(f"[pytest]\n{ini}\n")
    result = claims_env.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str() and "INTERNALERROR" not in result.stdout.str()


def test_a_data_root_the_task_does_not_read_is_said_in_the_header(claims_env, tmp_path):
    result = claims_env.runpytest("--co", "--netclaims-data-root", str(tmp_path))
    result.stdout.fnmatch_lines([f"netclaims: --netclaims-data-root {tmp_path} is not used: "
                                 "task mnist1d is generated*"])


BASELINES = {
    "a list": [1, 2],
    "no claims": {"schema": 1},
    "an entry without a verdict": {"schema": 1, "claims": {"SD-1@mlp@smoke": {"x": 1}}},
    "not JSON": None,
}


@pytest.mark.parametrize("damage", list(BASELINES))
def test_a_malformed_baseline_is_one_clear_line(claims_env, damage):
    path = claims_env.path / "base.json"
    content = BASELINES[damage]
    path.write_text("{oops" if content is None else json.dumps(content))
    result = claims_env.runpytest("--netclaims-baseline", str(path))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and "base.json" in errors[0]
    assert "INTERNALERROR" not in result.stdout.str()


@pytest.mark.parametrize(("content", "message"), [
    ([1, 2], "not a netclaims report: a JSON list"),
    ({"schema": 1}, "has no 'records' list"),
    ({"schema": 1, "records": [{"id": "SD-1", "arch": "mlp"}]}, "record 0 lacks verdict"),
])
def test_a_malformed_report_is_one_clear_line(tmp_path, capsys, content, message):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(content))
    for command in (["report", str(path)], ["list", "--report", str(path)],
                    ["store", "gc", "--store", str(tmp_path / "s"), "--report", str(path)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------- wrong numbers of outputs


ODD_NETS = """
from torch import nn

def make(n):
    def factory(input_shape, num_classes, width=1.0):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, n))
    return factory

six = make(6)
twelve = make(12)
"""


@pytest.mark.parametrize(("name", "outputs"), [("six", 6), ("twelve", 12)])
def test_a_model_with_the_wrong_number_of_outputs_is_refused_before_training(
        tmp_path, monkeypatch, name, outputs):
    (tmp_path / "odd_nets.py").write_text(ODD_NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=rf"outputs shape \(2, {outputs}\).*task 'digits' "
                                         r"has 10 classes"):
        Store(tmp_path / "store").run(tiny(model=f"odd_nets:{name}"))
    assert not list((tmp_path / "store" / "runs").iterdir())


# ----------------------------------------------------------------- metrics: no silent numbers


def test_class_selectivity_is_finite_where_class_sums_overflow():
    from netclaims.metrics import class_selectivity

    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    base = torch.tensor([[3.0, 1.0]] * 4 + [[1.0, 1.0]] * 4)
    expected = class_selectivity(base.double(), labels)  # [0.5, 0] up to eps
    for scaled in (base.half() * 20000, base * 1e38):  # class sums beyond 65504, 3.4e38
        si = class_selectivity(scaled, labels)
        assert torch.isfinite(si).all() and si.dtype == scaled.dtype
        assert torch.allclose(si.double(), expected, atol=1e-3)


def test_class_selectivity_checks_tensors_that_require_grad():
    from netclaims.metrics import class_selectivity

    bad = torch.tensor([[1.0, float("nan")], [2.0, 1.0]], requires_grad=True)
    with pytest.raises(ValueError, match="activations contains 1 NaN"):
        class_selectivity(bad, torch.tensor([0, 1]))


@pytest.fixture
def small_net():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    return net.eval(), torch.randn(32, 6), torch.randint(0, 3, (32,))


def test_ablation_refuses_nan_inputs_labels_beyond_the_outputs_and_float_orders(small_net):
    from netclaims.metrics import ablation_curve, single_unit_importance

    net, x, y = small_net
    x_nan = x.clone()
    x_nan[3, 2] = float("nan")
    with pytest.raises(ValueError, match="inputs contains 1 NaN"):
        ablation_curve(net, x_nan, y, ["1"])
    y_big = y.clone()
    y_big[0] = 5
    with pytest.raises(ValueError, match="class 5 but the model has 3 outputs"):
        ablation_curve(net, x, y_big, ["1"])
    with pytest.raises(ValueError, match="class 5 but the model has 3 outputs"):
        single_unit_importance(net, x, y_big, "1")
    with pytest.raises(TypeError, match=r"integer unit indices, got dtype torch\.float32"):
        ablation_curve(net, x, y, ["1"], orderings={"1": torch.arange(8.0)[None] + 0.7})


def test_frivolous_measures_refuse_impossible_values():
    from netclaims.metrics import prunable_fraction, width_gain

    with pytest.raises(ValueError, match=r"shares in \[0, 1\]"):
        prunable_fraction([0, 10, 50], [1.0, 0.9, 0.1])
    with pytest.raises(ValueError, match=r"shares in \[0, 1\]"):
        prunable_fraction([0, 0.5, 1], [1.0, 1.3, 0.1])
    with pytest.raises(ValueError, match="values >= 0"):
        width_gain([1, 2, 4], [3.0, -1.0, 2.0])
    assert prunable_fraction([0, 0.5, 1], [1.0, 0.9, 0.1]) == pytest.approx(0.5 + 0.5 * 0.1 / 0.8)


def test_cka_overflow_and_shapes_get_numbers_or_named_errors():
    from netclaims.metrics import linear_cka, minibatch_cka

    torch.manual_seed(0)
    x, y = torch.randn(50, 5).double(), torch.randn(50, 4).double()
    assert linear_cka(x * 1e200, y) == pytest.approx(linear_cka(x, y), rel=1e-12)
    with pytest.raises(ValueError, match="overflowed float64"):
        minibatch_cka([x[:25] * 1e200, x[25:] * 1e200], [y[:25], y[25:]])
    stacked = minibatch_cka(torch.stack([x[:25], x[25:]]), torch.stack([y[:25], y[25:]]))
    assert stacked == pytest.approx(minibatch_cka([x[:25], x[25:]], [y[:25], y[25:]]))
    with pytest.raises(ValueError, match=r"xs\[0\] has no features"):
        minibatch_cka([torch.randn(8, 0)], [torch.randn(8, 3)])
