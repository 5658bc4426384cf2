"""The run store and the trainer: a stored run is served from disk (ratio against training it),
and training throughput in samples per second on every available device."""

from __future__ import annotations

import pytest
import torch

from benchmarks.conftest import best_of
from netclaims.spec import RunSpec
from netclaims.store import Store

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def test_second_store_run_is_served_from_disk(benchmark, report, tmp_path):
    """A run of about 10 s on the 2-core CPU machine (the conv net's 30 default epochs)."""
    store = Store(tmp_path)
    spec = RunSpec(model="convnet", dataset="mnist1d", epochs=30)
    first = best_of(lambda: store.run(spec, device="cpu"))
    benchmark.pedantic(store.run, args=(spec,), kwargs={"device": "cpu"}, rounds=20,
                       iterations=1)
    second = benchmark.stats.stats.mean
    report("first_run_seconds", first)
    report("stored_run_seconds", second)
    report("speedup", first / second)
    assert first / second >= 100


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch_size", [100, 512])
def test_training_throughput(benchmark, report, tmp_path, device, batch_size):
    """Samples per second of the residual net on MNIST-1D (large variant, 16,000 training
    samples); on CUDA with bfloat16 mixed precision."""
    spec = RunSpec(model="resnet18", dataset="mnist1d", dataset_options={"variant": "large"},
                   epochs=2, batch_size=batch_size)
    run = benchmark.pedantic(Store(tmp_path).run, args=(spec,), kwargs={"device": device},
                             rounds=1, iterations=1)
    epochs = run.history.iloc[1:]
    samples = run.data.x_train.shape[0]
    report(f"{device}_bs{batch_size}_samples_per_second", samples / epochs["seconds"].min())
    report(f"{device}_bs{batch_size}_device", 0 if device == "cpu" else 1)
    assert run.manifest["provenance"]["device"].startswith(device)


def test_evaluating_at_checkpoints_only(benchmark, report, tmp_path):
    """A run of the small task (1000 MNIST-1D samples, 40 epochs, 8 checkpoints) with its
    history evaluated at the checkpoints only, against every epoch (the naive way): the
    same weights for less time."""
    fields = {"model": "convnet", "dataset": "mnist1d", "epochs": 40,
              "dataset_options": {"train_size": 1000},
              "checkpoint_epochs": [5, 10, 15, 20, 25, 30, 35, 40]}
    every = RunSpec(**fields)
    sparse = RunSpec(**fields, evaluate="checkpoints")
    torch.optim.Adam(torch.nn.Linear(1, 1).parameters())  # its first use imports for seconds
    naive = best_of(lambda: Store(tmp_path / "every").run(every, device="cpu"))
    run = benchmark.pedantic(Store(tmp_path / "sparse").run, args=(sparse,),
                             kwargs={"device": "cpu"}, rounds=1, iterations=1)
    ours = benchmark.stats.stats.mean
    report("every_epoch_seconds", naive)
    report("checkpoints_seconds", ours)
    report("speedup", naive / ours)
    reference = Store(tmp_path / "every").run(every, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(run.model.state_dict().values(),
                                                 reference.model.state_dict().values(),
                                                 strict=True))
    assert naive / ours > 1.1
