"""CKA heatmap across 50 checkpoints of one layer (n = 2048, 512 features): netclaims computes
each checkpoint's Gram matrix once; the naive way computes every pair from scratch; torch-cka
(peer) runs its minibatch HSIC loop over layers."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks.conftest import best_of
from netclaims.metrics import cka_matrix, linear_cka

CHECKPOINTS, SAMPLES, FEATURES = 50, 2048, 512


@pytest.fixture(scope="module")
def checkpoints() -> list[torch.Tensor]:
    """A drifting representation: checkpoint t = base rotated a little more each step."""
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(SAMPLES, FEATURES, generator=gen)
    drift = torch.randn(SAMPLES, FEATURES, generator=gen)
    return [torch.relu(base + 0.05 * t * drift) for t in range(CHECKPOINTS)]


def _naive(reps: list[torch.Tensor]) -> np.ndarray:
    out = np.eye(len(reps))
    for i in range(len(reps)):
        for j in range(i + 1, len(reps)):
            out[i, j] = out[j, i] = linear_cka(reps[i], reps[j])
    return out


class _Lookup(nn.Module):
    def __init__(self, rep: torch.Tensor) -> None:
        super().__init__()
        self.rep = rep

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.rep[index]


class _Checkpoints(nn.Module):
    """Serves stored checkpoint representations as the 'layers' of one model (for torch-cka)."""

    def __init__(self, reps: list[torch.Tensor]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_Lookup(r) for r in reps)

    def forward(self, index: torch.Tensor) -> None:
        for layer in self.layers:
            layer(index)


def _torch_cka(reps: list[torch.Tensor], batch: int = 256) -> np.ndarray:
    import warnings

    from torch.utils.data import DataLoader, TensorDataset
    from torch_cka import CKA

    model = _Checkpoints(reps)
    names = [f"layers.{i}" for i in range(len(reps))]
    loader = DataLoader(TensorDataset(torch.arange(SAMPLES)), batch_size=batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cka = CKA(model, model, "a", "b", names, names)
        cka.compare(loader)
    return cka.export()["CKA"].numpy()


def test_cka_heatmap_50_checkpoints(benchmark, report, checkpoints):
    ours = benchmark.pedantic(cka_matrix, args=(checkpoints,), rounds=2, iterations=1)
    ours_s = benchmark.stats.stats.min
    naive = {}
    naive_s = best_of(lambda: naive.setdefault("m", _naive(checkpoints)))
    np.testing.assert_allclose(ours, naive["m"], atol=1e-8)
    report("netclaims_seconds", ours_s)
    report("naive_pairwise_seconds", naive_s)
    report("speedup_vs_naive", naive_s / ours_s)
    assert naive_s / ours_s >= 10
    if importlib.util.find_spec("torch_cka") is not None:
        peer = {}
        peer_s = best_of(lambda: peer.setdefault("m", _torch_cka(checkpoints)))
        debiased = cka_matrix(checkpoints, debiased=True)
        report("torch_cka_seconds", peer_s)
        report("speedup_vs_torch_cka", peer_s / ours_s)
        report("torch_cka_max_abs_diff_vs_debiased", float(np.abs(peer["m"] - debiased).max()))
