"""RunSpec, the trainer and the run store: determinism, resumption, locking, verification."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import warnings
from pathlib import Path

import pytest
import torch

from netclaims.metrics import class_selectivity
from netclaims.spec import RunSpec
from netclaims.store import Store
from netclaims.train import lr_at, train
from netclaims.units import collect


def tiny(**fields) -> RunSpec:
    base = {"model": "mlp", "dataset": "digits", "width": 0.25, "epochs": 4}
    return RunSpec(**{**base, **fields})


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------- RunSpec


def test_spec_defaults_come_from_the_registry():
    spec = RunSpec(model="convnet", dataset="mnist1d")
    assert (spec.optimizer, spec.lr, spec.lr_schedule, spec.batch_size, spec.epochs) == (
        "adam", 1e-2, "cosine", 100, 30)
    assert spec.batchnorm is False and RunSpec(model="resnet18", dataset="mnist1d").batchnorm


def test_key_is_canonical_and_sensitive():
    a = tiny(checkpoint_epochs=[3, 0], dataset_options={"test_fraction": 0.25, "seed": 0})
    b = tiny(checkpoint_epochs=(0, 3), dataset_options={"seed": 0, "test_fraction": 0.25})
    assert a.key == b.key and a == b and hash(a) == hash(b)
    assert tiny(lr=0.01).key != tiny().key and tiny(seed=1).key != tiny().key
    assert RunSpec.from_dict(json.loads(json.dumps(a.to_dict()))).key == a.key
    assert "device" not in a.to_dict()


def test_spec_validation():
    with pytest.raises(ValueError, match="unknown model"):
        RunSpec(model="alexnet", dataset="digits")
    with pytest.raises(ValueError, match="optimizer"):
        tiny(optimizer="lbfgs")
    with pytest.raises(ValueError, match="checkpoint_epochs"):
        tiny(checkpoint_epochs=[9])
    with pytest.raises(ValueError, match="unknown regularizer"):
        tiny(regularizers=[{"name": "nope", "alpha": 1.0}])
    with pytest.raises(ValueError, match="evaluate must be one of"):
        tiny(evaluate="sometimes")
    with pytest.raises(ValueError, match="needs evaluate='every_epoch'"):
        tiny(stop_train_loss=0.1, evaluate="checkpoints")


def test_lr_schedules():
    step = tiny(lr=1.0, lr_schedule="step", lr_milestones=[2, 3], lr_gamma=0.1)
    assert [lr_at(step, e) for e in (1, 2, 3, 4)] == pytest.approx([1, 1, 0.1, 0.01])
    cos = tiny(lr=1.0, lr_schedule="cosine")
    assert lr_at(cos, 1) == 1.0 and lr_at(cos, 4) < lr_at(cos, 2)


# ----------------------------------------------------------------- store


def test_run_history_checkpoints_and_cache_hit(tmp_path):
    store = Store(tmp_path)
    spec = tiny(checkpoint_epochs=[0, 2], checkpoint_steps=[3])
    run = store.run(spec)
    assert list(run.history.columns[:7]) == ["epoch", "step", "lr", "train_loss", "train_acc",
                                             "test_loss", "test_acc"]
    assert run.history["epoch"].tolist() == [0, 1, 2, 3, 4]
    assert run.checkpoints == ["epoch_0000", "step_0000003", "epoch_0002"]
    steps_per_epoch = int(run.history["step"].iloc[1])
    assert run.timeline == [("epoch_0000", 0.0), ("step_0000003", 3 / steps_per_epoch),
                            ("epoch_0002", 2.0)]
    assert _same_weights(run.checkpoint_named("step_0000003"), run.checkpoint(step=3))
    with pytest.raises(KeyError, match="not a checkpoint name"):
        run.checkpoint_named("final")
    assert not run.model.training
    assert not _same_weights(run.checkpoint(0), run.model)
    with pytest.raises(KeyError, match="epoch_0001"):
        run.checkpoint(1)
    events = []
    again = store.run(spec, progress=events.append)
    assert events == [] and again.path == run.path  # served from disk, no training
    assert store.run_keys() == [spec.key]


def test_evaluating_only_at_checkpoints_trains_the_same_weights(tmp_path):
    every = Store(tmp_path).run(tiny(epochs=6, checkpoint_epochs=[2], checkpoint_steps=[3]))
    sparse = Store(tmp_path).run(tiny(epochs=6, checkpoint_epochs=[2], checkpoint_steps=[3],
                                      evaluate="checkpoints"))
    assert sparse.spec.key != every.spec.key
    assert _same_weights(sparse.model, every.model)
    assert _same_weights(sparse.checkpoint(2), every.checkpoint(2))
    assert sparse.history["epoch"].tolist() == [0, 2, 6]
    kept = every.history.set_index("epoch").loc[[0, 2, 6]].drop(columns="seconds")
    assert sparse.history.set_index("epoch").drop(columns="seconds").equals(kept)
    # each row's seconds cover the epochs since the previous row
    assert sparse.history["seconds"].sum() == pytest.approx(sparse.manifest["train_seconds"])
    assert sparse.timeline == every.timeline


def test_same_spec_twice_gives_bit_identical_weights(tmp_path):
    spec = tiny(dropout=0.2, augmentation=None, checkpoint_steps=[2])
    a = Store(tmp_path / "a").run(spec, device="cpu")
    b = Store(tmp_path / "b").run(spec, device="cpu")
    assert _same_weights(a.model, b.model)
    assert a.history.drop(columns="seconds").equals(b.history.drop(columns="seconds"))


def test_flipped_byte_is_detected_and_retrained(tmp_path):
    store = Store(tmp_path)
    spec = tiny()
    original = store.run(spec, device="cpu").model
    weights = store.entry(spec) / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-10] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="damaged"):
        rebuilt = store.run(spec, device="cpu")
    assert _same_weights(rebuilt.model, original)


def test_settled_entries_are_hashed_once_until_a_file_changes(tmp_path, monkeypatch):
    from netclaims import store as store_module

    store = Store(tmp_path)
    spec = tiny()
    store.run(spec, device="cpu")
    entry = store.entry(spec)
    past = 1_000_000_000
    for path in entry.rglob("*"):
        os.utime(path, ns=(past, past))
    hashed = []
    real = store_module._sha256
    monkeypatch.setattr(store_module, "_sha256", lambda p: hashed.append(p) or real(p))
    assert store.has(spec)
    first = len(hashed)
    assert first > 0 and store.has(spec) and len(hashed) == first
    weights = entry / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-10] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="damaged"):
        assert not store.has(spec)


def test_half_written_entry_is_not_read(tmp_path):
    store = Store(tmp_path)
    spec = tiny()
    entry = store.entry(spec)
    entry.mkdir(parents=True)
    (entry / "model.safetensors").write_bytes(b"partial")
    assert not store.has(spec)
    assert store.run(spec).history.shape[0] == 5


def _run_in_child(path: str, spec: dict, log: str, kill_after: int | None) -> None:
    def progress(event: dict) -> None:
        if event["event"] == "epoch":
            with open(log, "a") as f:
                f.write(f"{os.getpid()} {event['epoch']}\n")
            if kill_after is not None and event["epoch"] == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

    Store(path).run(RunSpec.from_dict(spec), device="cpu", progress=progress, state_every=0)


def _spawn(*args) -> multiprocessing.Process:
    proc = multiprocessing.get_context("spawn").Process(target=_run_in_child, args=args)
    proc.start()
    return proc


@pytest.mark.parametrize("state_every", [0.0, 1e9])
def test_resumable_state_is_saved_as_often_as_asked(tmp_path, state_every):
    saved = []
    work = tmp_path / "work"

    def saved_epoch(_event: dict) -> None:
        path = work / "state.json"
        saved.append(json.loads(path.read_text())["epoch"] if path.exists() else None)

    state = train(tiny(epochs=4), work, device="cpu", state_every=state_every,
                  progress=saved_epoch)
    assert state.epoch == 4
    # every epoch but the last (whose weights are the result) saves; a day apart, none does
    assert saved == ([1, 2, 3, 3] if state_every == 0 else [None] * 4)
    with pytest.raises(ValueError, match="state_every"):
        train(tiny(), tmp_path / "other", device="cpu", state_every=-1)


def test_two_processes_train_a_spec_once(tmp_path):
    spec = tiny(epochs=6)
    log = tmp_path / "epochs.log"
    procs = [_spawn(str(tmp_path / "store"), spec.to_dict(), str(log), None) for _ in range(2)]
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    lines = log.read_text().split()
    assert len(lines) == 2 * 6  # one trainer: six epochs, logged once each
    assert len({pid for pid in lines[0::2]}) == 1


def test_killed_run_resumes_and_matches_uninterrupted(tmp_path):
    spec = tiny(epochs=6, dropout=0.1, checkpoint_epochs=[0, 6])
    log = tmp_path / "epochs.log"
    proc = _spawn(str(tmp_path / "store"), spec.to_dict(), str(log), 3)
    proc.join(120)
    assert proc.exitcode == -signal.SIGKILL
    store = Store(tmp_path / "store")
    assert not store.has(spec)
    resumed_epochs = []
    resumed = store.run(spec, device="cpu",
                        progress=lambda e: resumed_epochs.append(e["epoch"]))
    assert resumed_epochs == [4, 5, 6]  # picked up after the last completed epoch
    fresh = Store(tmp_path / "fresh").run(spec, device="cpu")
    assert _same_weights(resumed.model, fresh.model)
    assert resumed.history["epoch"].tolist() == list(range(7))
    assert not list(Path(tmp_path / "store" / "work").iterdir())


def test_process_executor_trains_a_small_zoo(tmp_path):
    store = Store(tmp_path)
    specs = [tiny(epochs=2, seed=s) for s in range(3)]
    events = []
    runs = store.runs(specs + specs[:1], executor="process", workers=2, progress=events.append)
    assert [r.spec for r in runs] == specs + specs[:1]
    assert events[0] == {"event": "zoo", "total": 3, "stored": 0}
    assert events[-1] == {"event": "zoo-done", "total": 3}
    trained = [e for e in events if e["event"] == "trained"]
    assert [e["done"] for e in trained] == [1, 2, 3]
    assert sorted(e["label"] for e in trained) == sorted(s.label for s in specs)
    assert store.runs(specs) and len(store.run_keys()) == 3


def test_a_run_is_the_same_inline_and_in_a_worker(tmp_path):
    spec = tiny(model="convnet", width=0.5, epochs=2, batch_size=32)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        inline = Store(tmp_path / "inline").run(spec, device="cpu")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    pooled = Store(tmp_path / "pooled").runs([spec, tiny(seed=1)], executor="process",
                                             workers=2)[0]
    assert _same_weights(inline.model, pooled.model)


def test_a_broken_worker_pool_is_replaced(tmp_path):
    from concurrent.futures.process import BrokenProcessPool

    from netclaims import pool as pool_module

    pool = pool_module.worker_pool(2)
    with pytest.raises(BrokenProcessPool):
        pool.submit(os._exit, 1).result()
    store = Store(tmp_path)
    specs = [tiny(epochs=1, seed=s) for s in range(2)]
    with pytest.raises(BrokenProcessPool):
        store.runs(specs, executor="process", workers=2)
    runs = store.runs(specs, executor="process", workers=2)
    assert [r.spec for r in runs] == specs


def test_ray_executor_trains_a_zoo_of_eight(tmp_path):
    ray = pytest.importorskip("ray")
    store = Store(tmp_path)
    specs = [tiny(epochs=1, seed=s) for s in range(8)]
    events = []
    try:
        runs = store.runs(specs, executor="ray", workers=2, progress=events.append)
    finally:
        ray.shutdown()
    assert sorted(store.run_keys()) == sorted(s.key for s in specs)
    assert sorted(e["label"] for e in events if e["event"] == "trained") == \
        sorted(s.label for s in specs)
    assert all(len(r.history) == 2 for r in runs)


# ----------------------------------------------------------------- trainer


def test_selectivity_regularizer_lowers_selectivity(tmp_path):
    store = Store(tmp_path)
    plain = store.run(tiny(width=0.5, epochs=3))
    pushed = store.run(tiny(width=0.5, epochs=3, regularizers=[
        {"name": "selectivity", "alpha": -5.0, "params": {"stages": ["early"]}}]))
    x, y = plain.data.x_test, plain.data.y_test
    si = [float(class_selectivity(collect(r.model, x, ["blocks.0.act"])["blocks.0.act"], y)
                .mean()) for r in (plain, pushed)]
    assert si[1] < si[0] - 0.05


def test_stop_at_training_loss(tmp_path):
    run = Store(tmp_path).run(tiny(epochs=30, stop_train_loss=0.5))
    assert len(run.history) < 31 and run.history["train_loss"].iloc[-1] <= 0.5
    assert run.manifest["stopped_early"]


def test_cuda_device_trains_there_or_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        run = Store(tmp_path).run(tiny(epochs=1), device="cuda")
        assert run.manifest["provenance"]["device"].startswith("cuda")
    else:
        with pytest.raises(RuntimeError, match="no CUDA device"):
            Store(tmp_path).run(tiny(epochs=1), device="cuda")


@pytest.mark.slow
def test_registry_models_reach_the_mnist1d_paper_ranges(tmp_path):
    """MNIST-1D (Greydanus 2020) reports about 94% test accuracy for its CNN and 68% for an
    MLP; the registry's defaults must land in those ranges."""
    store = Store(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cnn = store.run(RunSpec(model="convnet", dataset="mnist1d"))
        mlp = store.run(RunSpec(model="mlp", dataset="mnist1d"))
    cnn_acc, mlp_acc = cnn.history["test_acc"].iloc[-1], mlp.history["test_acc"].iloc[-1]
    print(f"MNIST-1D test accuracy: convnet {cnn_acc:.3f}, mlp {mlp_acc:.3f}")
    assert 0.90 <= cnn_acc <= 0.99
    assert 0.55 <= mlp_acc <= 0.80


def test_derived_results_are_cached_beside_the_run(tmp_path):
    run = Store(tmp_path).run(tiny(epochs=1))
    calls = []

    def compute():
        calls.append(1)
        return {"value": torch.arange(3.0)}

    threads = torch.get_num_threads()
    first = run.derived("thing", {"k": 1}, compute)
    assert torch.get_num_threads() == threads
    again = Store(tmp_path).run(tiny(epochs=1)).derived("thing", {"k": 1}, compute)
    assert torch.equal(first["value"], again["value"]) and len(calls) == 1
    run.derived("thing", {"k": 2}, compute)
    assert len(calls) == 2
    for cached in (tmp_path / "derived" / run.spec.key).glob("thing-*.safetensors"):
        cached.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="derived result .* is damaged"):
        assert torch.equal(run.derived("thing", {"k": 1}, compute)["value"], torch.arange(3.0))
    assert len(calls) == 3
    with pytest.raises(TypeError, match="dict of tensors"):
        run.derived("bad", {}, lambda: [1, 2])


def _sum_of_weights(run) -> torch.Tensor:
    return sum(p.detach().double().sum() for p in run.model.parameters())


def _weight_sum(run) -> dict[str, torch.Tensor]:
    """A derived result of a run, module-level so that pool workers can unpickle it."""
    return run.derived("weight-sum", {}, lambda: {
        "sum": _sum_of_weights(run), "threads": torch.tensor(torch.get_num_threads())})


def _fails(run) -> None:
    raise RuntimeError(f"cannot measure {run}")


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_derive_runs_where_each_new_run_trained(tmp_path, executor):
    store = Store(tmp_path)
    specs = [tiny(epochs=1, seed=s) for s in range(2)]
    runs = store.runs(specs, executor=executor, workers=2, derive=_weight_sum)

    def not_cached():
        raise AssertionError("derive did not cache its result")

    for run in runs:
        cached = run.derived("weight-sum", {}, not_cached)
        assert torch.allclose(cached["sum"], _sum_of_weights(run))
        assert int(cached["threads"]) == 1  # derived on one thread, as training, anywhere


def test_a_failing_derive_leaves_the_runs_trained(tmp_path):
    specs = [tiny(epochs=1, seed=s) for s in range(2)]
    runs = Store(tmp_path).runs(specs, executor="process", workers=2, derive=_fails)
    assert [r.spec for r in runs] == specs


def test_a_prefetched_zoo_is_waited_for_not_trained_again(tmp_path):
    store = Store(tmp_path)
    specs = [tiny(epochs=1, seed=s) for s in range(3)]
    store.prefetch(specs[:2], workers=2, derive=_weight_sum)
    events = []
    runs = store.runs(specs, executor="process", workers=2, derive=_weight_sum,
                      progress=events.append)
    assert [r.spec for r in runs] == specs
    trained = [e for e in events if e["event"] == "trained"]
    assert sorted(e["label"] for e in trained) == sorted(s.label for s in specs)
    for run in runs:  # the prefetch's derive ran in its worker as well
        cached = run.derived("weight-sum", {}, lambda: pytest.fail("not derived"))
        assert torch.allclose(cached["sum"], _sum_of_weights(run))
    started = [r.manifest["started"] for r in runs]
    store.prefetch(specs, workers=2)  # all stored: nothing to train
    assert [r.manifest["started"] for r in store.runs(specs)] == started


def test_a_failed_prefetch_raises_in_the_call_that_needs_the_run(tmp_path):
    store = Store(tmp_path)
    diverging = tiny(lr=1e30, epochs=3)
    store.prefetch([diverging], workers=2)
    with pytest.raises(FloatingPointError, match="training loss became"):
        store.runs([diverging], executor="process", workers=2)
