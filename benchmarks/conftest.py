"""Benchmark helpers: each benchmark times netclaims with pytest-benchmark and the naive way
(and peers) in the same run, and records the ratios in ``benchmark.extra_info``."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import torch


def best_of(fn: Callable[[], object], repeats: int = 1) -> float:
    """Smallest wall time of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(max(1, torch.get_num_threads()))
    yield


@pytest.fixture
def report(benchmark, capsys):
    """Record a figure in the benchmark's extra info and print it (visible with -s)."""
    def add(name: str, value: float) -> None:
        benchmark.extra_info[name] = value
        with capsys.disabled():
            print(f"\n  {name}: {value:.4g}")
    return add
