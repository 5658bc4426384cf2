"""A zoo trained as one batched model (:mod:`netclaims.ensemble`) against one run after
another, in the same run, on every available device: 16 MNIST-1D MLPs and 8 batch-norm conv
nets of the claims' small task, with the members' final test accuracies beside those of the
runs trained alone. The zoo's mean accuracy must agree within half a point; single members
differ by up to a few points, as two float orders of one unconverged run do (a batched
product sums in another order, and training amplifies the difference)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.conftest import best_of
from netclaims.ensemble import train_ensemble
from netclaims.spec import RunSpec
from netclaims.train import train

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

ZOOS = {"16 MLPs": ("mlp", 16, {}), "8 conv nets": ("convnet", 8, {"batchnorm": True})}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("zoo", list(ZOOS))
def test_zoo_as_an_ensemble(benchmark, report, tmp_path, device, zoo):
    model, members, fields = ZOOS[zoo]
    specs = [RunSpec(model=model, dataset="mnist1d", dataset_options={"train_size": 1000},
                     epochs=20, seed=s, **fields) for s in range(members)]
    alone: list = []
    sequential = best_of(lambda: alone.extend(
        train(s, tmp_path / f"alone-{s.seed}", device=device) for s in specs))
    together: list = []
    benchmark.pedantic(lambda: together.extend(train_ensemble(
        specs, [tmp_path / f"ensemble-{s.seed}" for s in specs], device=device)),
        rounds=1, iterations=1)
    ensemble = benchmark.stats.stats.mean
    gaps = [(a.history[-1]["test_acc"] - b.history[-1]["test_acc"]) * 100
            for a, b in zip(together, alone, strict=True)]
    mean_gap = sum(gaps) / len(gaps)
    report("one_by_one_seconds", sequential)
    report("ensemble_seconds", ensemble)
    report("speedup", sequential / ensemble)
    report("mean_accuracy_gap_points", mean_gap)
    report("largest_member_gap_points", max(map(abs, gaps)))
    assert abs(mean_gap) <= 0.5
