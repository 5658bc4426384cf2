"""What a zoo of small runs costs: training it in the worker pool against training it inline,
measuring each run in the worker that trained it against measuring the zoo after training,
reading it back from a store that has verified it against hashing every entry again, and the
jackknife interval of a width gain against the seed bootstrap it replaced (which was also too
narrow at 3 seeds: docs/statistics.md)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from benchmarks.conftest import best_of
from netclaims import stats
from netclaims.metrics import ablation_curve, width_gain
from netclaims.models import stages_of
from netclaims.run import Run
from netclaims.spec import RunSpec
from netclaims.store import Store


def _zoo(seeds: int = 8, width: float = 0.25) -> list[RunSpec]:
    """The claims' small task: MLPs on 1000 MNIST-1D samples, 40 epochs, 8 checkpoints."""
    return [RunSpec(model="mlp", dataset="mnist1d", dataset_options={"train_size": 1000},
                    width=width, epochs=40, checkpoint_epochs=range(5, 41, 5), seed=s)
            for s in range(seeds)]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the pool needs several CPUs to gain")
def test_zoo_in_the_worker_pool(benchmark, report, tmp_path):
    specs = _zoo()
    inline = best_of(lambda: Store(tmp_path / "inline").runs(specs, device="cpu"))
    # the claims reuse one pool for the session: start its workers before timing
    Store(tmp_path / "warmup").runs(_zoo(2), executor="process", device="cpu")
    benchmark.pedantic(lambda: Store(tmp_path / "pool").runs(specs, executor="process",
                                                             device="cpu"),
                       rounds=1, iterations=1)
    pooled = benchmark.stats.stats.mean
    report("inline_seconds", inline)
    report("pool_seconds", pooled)
    report("speedup", inline / pooled)
    assert inline / pooled > 1.2


def _ablation_auc(run: Run) -> dict:
    """A per-run measure of the claims' size (about half a training's time): a cumulative
    ablation curve of every unit layer, 10 orderings, the 1000 test samples (cached beside
    the run)."""
    def compute() -> dict:
        model = run.model
        return ablation_curve(model, run.data.x_test, run.data.y_test,
                              stages_of(model).layers, orderings=10,
                              seed=run.spec.seed).to_tensors()
    return run.derived("bench-ablation", {}, compute)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the pool needs several CPUs to gain")
def test_zoo_measured_where_it_trained(benchmark, report, tmp_path):
    specs = [RunSpec(model="convnet", dataset="mnist1d", dataset_options={"train_size": 1000},
                     epochs=20, seed=s) for s in range(8)]
    Store(tmp_path / "warmup").runs(_zoo(2), executor="process", device="cpu",
                                    derive=_ablation_auc)  # workers import this module once

    def measured_after() -> None:
        for run in Store(tmp_path / "after").runs(specs, executor="process", device="cpu"):
            _ablation_auc(run)

    after = best_of(measured_after)
    benchmark.pedantic(lambda: Store(tmp_path / "where").runs(
        specs, executor="process", device="cpu", derive=_ablation_auc), rounds=1, iterations=1)
    where = benchmark.stats.stats.mean
    report("measured_after_seconds", after)
    report("measured_in_workers_seconds", where)
    report("speedup", after / where)
    assert after / where > 1.05


def test_settled_entries_are_read_without_hashing(benchmark, report, tmp_path):
    specs = _zoo(4, width=1.0)  # the registry MLP, the widest net of the width series
    store = Store(tmp_path)
    store.runs(specs, device="cpu")
    for path in (tmp_path / "runs").rglob("*"):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    store.runs(specs)  # verified once, by hashing
    rehash = best_of(lambda: Store(tmp_path).runs(specs), repeats=5)  # a new store hashes all
    benchmark.pedantic(store.runs, args=(specs,), rounds=20, iterations=1)
    cached = benchmark.stats.stats.mean
    report("hash_every_read_ms", rehash * 1e3)
    report("settled_read_ms", cached * 1e3)
    report("speedup", rehash / cached)
    assert rehash / cached > 2


def test_jackknife_gain_interval(benchmark, report):
    rng = np.random.default_rng(0)
    widths = [0.25, 0.5, 1, 2, 4]
    counts = np.exp(rng.normal(size=(3, 5)) * 0.05) * np.array(widths) ** 1.1

    def gain(idx: np.ndarray) -> float:
        return width_gain(widths, counts[idx].mean(0))

    def bootstrap() -> tuple[float, float]:
        draws = np.random.default_rng(0)
        values = [gain(draws.integers(0, 3, 3)) for _ in range(1999)]
        return tuple(np.quantile(values, [0.025, 0.975]))

    naive = best_of(bootstrap)
    est = benchmark(stats.jackknife, gain, 3, name="g")
    fast = benchmark.stats.stats.mean
    lo, hi = bootstrap()
    # the bootstrap of 3 seeds has 10 distinct resamples: its interval is the narrower one
    assert est.ci_high - est.ci_low > hi - lo
    report("bootstrap_1999_ms", naive * 1e3)
    report("jackknife_ms", fast * 1e3)
    report("speedup", naive / fast)
    assert naive / fast > 5
