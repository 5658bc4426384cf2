"""Selectivity over a data loader: the streaming path keeps per-class sums only, so its peak
memory does not grow with the number of samples; collecting every activation first does."""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.conftest import best_of

SCRIPT = r"""
import json, resource, sys, torch
from torch import nn
from netclaims.metrics import class_selectivity, selectivity_from_class_means
from netclaims.units import ClassMeans, PerLayer, collect, stream

n, mode = int(sys.argv[1]), sys.argv[2]
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 1024), nn.ReLU(), nn.Linear(1024, 10)).eval()

def loader():  # batches made on the fly: the data itself never sits in memory
    gen = torch.Generator().manual_seed(1)
    for _ in range(n // 500):
        yield torch.randn(500, 64, generator=gen), torch.randint(0, 10, (500,), generator=gen)

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if mode == "stream":
    sink = stream(model, loader(), ["1"], PerLayer(lambda: ClassMeans(10)))
    si = selectivity_from_class_means(sink["1"].means)
else:
    xs, ys = zip(*loader())
    acts = collect(model, list(zip(xs, ys)), ["1"])["1"]
    si = class_selectivity(acts, torch.cat(ys))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_mib": peak / 1024, "growth_mib": (peak - before) / 1024}))
"""


def _run(n: int, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(n), mode], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


def test_streaming_selectivity_memory(benchmark, report):
    small, large = 20_000, 200_000
    stream_small = benchmark.pedantic(_run, args=(small, "stream"), rounds=1, iterations=1)
    stream_large = _run(large, "stream")
    naive_small, naive_large = _run(small, "collect"), _run(large, "collect")
    report("stream_growth_mib_20k", stream_small["growth_mib"])
    report("stream_growth_mib_200k", stream_large["growth_mib"])
    report("collect_growth_mib_20k", naive_small["growth_mib"])
    report("collect_growth_mib_200k", naive_large["growth_mib"])
    report("stream_seconds_200k", best_of(lambda: _run(large, "stream")))
    # 10x the samples: the collected activations alone grow by ~700 MiB; streaming stays flat
    assert stream_large["growth_mib"] - stream_small["growth_mib"] < 20
    assert naive_large["growth_mib"] - naive_small["growth_mib"] > 300
