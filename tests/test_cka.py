"""CKA: invariances, numerical pitfalls (docs/library.md), estimator agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from netclaims import strategies as nst
from netclaims.metrics import (
    MinibatchCKA,
    center_gram,
    cka_matrix,
    hsic1,
    linear_cka,
    minibatch_cka,
    rbf_cka,
)
from netclaims.units import stream

TOL = 1e-8


@st.composite
def rep_pair(draw, min_n=6):
    n = draw(st.integers(min_n, 30))
    return draw(nst.representations(n=n)), draw(nst.representations(n=n))


@given(rep_pair(), st.data())
def test_linear_cka_invariant_to_orthogonal_maps_and_isotropic_scaling(pair, data):
    x, y = pair
    q = data.draw(nst.orthogonal_matrices(x.shape[1]))
    scale = data.draw(st.floats(1e-3, 1e3))
    base = linear_cka(x, y)
    assert linear_cka(x @ q * scale, y) == pytest.approx(base, abs=TOL)
    assert linear_cka(x, y * scale) == pytest.approx(base, abs=TOL)
    assert linear_cka(x @ q, y, debiased=True) == pytest.approx(
        linear_cka(x, y, debiased=True), abs=1e-7)


@given(rep_pair())
def test_linear_cka_symmetric_bounded_and_one_on_identity(pair):
    x, y = pair
    value = linear_cka(x, y)
    assert value == pytest.approx(linear_cka(y, x), abs=TOL)
    assert -TOL <= value <= 1 + TOL
    assert linear_cka(x, x) == pytest.approx(1.0, abs=TOL)


def test_linear_cka_not_invariant_to_invertible_linear_maps():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    y = x @ rng.normal(size=(3, 3))
    stretch = np.diag([1.0, 1.0, 25.0])
    assert abs(linear_cka(x, y) - linear_cka(x @ stretch, y)) > 0.05


@given(rep_pair(min_n=8), st.data())
@settings(max_examples=40)
def test_rbf_cka_invariances(pair, data):
    x, y = pair
    q = data.draw(nst.orthogonal_matrices(x.shape[1]))
    scale = data.draw(st.floats(1e-2, 1e2))
    base = rbf_cka(x, y)
    assert rbf_cka(x @ q, y) == pytest.approx(base, abs=1e-7)
    assert rbf_cka(x * scale, y) == pytest.approx(base, abs=1e-7)
    assert rbf_cka(x, x) == pytest.approx(1.0, abs=1e-9)
    assert rbf_cka(x, y) == pytest.approx(rbf_cka(y, x), abs=1e-9)


def test_debiased_equals_u_centered_gram_form():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 5)), rng.normal(size=(40, 60))
    xc, yc = x - x.mean(0), y - y.mean(0)
    k = center_gram(torch.tensor(xc @ xc.T), debiased=True)
    l_ = center_gram(torch.tensor(yc @ yc.T), debiased=True)
    expected = float((k * l_).sum() / torch.sqrt((k * k).sum() * (l_ * l_).sum()))
    assert linear_cka(x, y, debiased=True) == pytest.approx(expected, rel=1e-10)


def test_u_centering_zeroes_diagonal_and_rows():
    rng = np.random.default_rng(2)
    g = torch.tensor(rng.normal(size=(7, 7)))
    g = g @ g.T
    u = center_gram(g, debiased=True)
    assert torch.all(torch.diagonal(u) == 0)
    torch.testing.assert_close(u.sum(0), torch.zeros(7, dtype=torch.float64))


def test_hsic1_zeroes_gram_diagonal():
    """HSIC₁ equals the explicit U-statistic with zeroed diagonals (Song et al. 2012)."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(9, 3)), rng.normal(size=(9, 4))
    k, l_ = x @ x.T, y @ y.T
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l_, 0)
    n = 9
    one = np.ones(n)
    expected = (np.trace(k @ l_) + one @ k @ one * (one @ l_ @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * one @ k @ l_ @ one) / (n * (n - 3))
    assert hsic1(x, y) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_constant_shift_does_not_change_cka(dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(-8, 9, (256, 32), generator=gen).to(torch.float64)
    y = x @ torch.randn(32, 16, generator=gen, dtype=torch.float64) \
        + torch.randn(256, 16, generator=gen, dtype=torch.float64)
    y = torch.round(y)  # small integers: exact in float32 and bfloat16
    shifts = (0, 10, 100, 1000) if dtype == torch.float32 else (0, 8, 64)
    base = linear_cka(x.to(dtype), y.to(dtype))
    for shift in shifts:
        shifted = linear_cka((x + shift).to(dtype), (y + shift).to(dtype))
        assert np.isfinite(shifted)
        assert abs(shifted - base) <= 1e-4
        xs = [(x[i:i + 64] + shift).to(dtype) for i in range(0, 256, 64)]
        ys = [(y[i:i + 64] + shift).to(dtype) for i in range(0, 256, 64)]
        assert abs(minibatch_cka(xs, ys) - minibatch_cka(
            [b.to(torch.float64) - shift for b in xs], [b.to(torch.float64) - shift for b in ys])
        ) <= 1e-4
    big = linear_cka((x + 1000).to(dtype), (y + 1000).to(dtype))
    assert np.isfinite(big)


@pytest.mark.parametrize("batch", [4, 8, 32, 128])
def test_minibatch_cka_near_zero_for_independent_inputs(batch):
    gen = torch.Generator().manual_seed(batch)
    total = 4096
    x = torch.randn(total, 32, generator=gen)
    y = torch.randn(total, 32, generator=gen)
    xs, ys = list(x.split(batch)), list(y.split(batch))
    # sd of the unbiased estimate is about 0.02 at batch 4 (measured over 20 seeds)
    assert abs(minibatch_cka(xs, ys)) < 0.1
    # the biased per-batch estimator the peers used is far from 0 at small batches
    if batch <= 8:
        biased = np.mean([linear_cka(a, b) for a, b in zip(xs[:64], ys[:64], strict=True)])
        assert biased > 0.3


def test_minibatch_cka_converges_to_full_batch_debiased():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 10, generator=gen, dtype=torch.float64)
    y = x @ torch.randn(10, 6, generator=gen, dtype=torch.float64) \
        + 2 * torch.randn(4000, 6, generator=gen, dtype=torch.float64)
    full = linear_cka(x, y, debiased=True)
    errors = [abs(minibatch_cka(list(x.split(b)), list(y.split(b))) - full) for b in (50, 500)]
    assert errors[1] < 0.02 and errors[1] <= errors[0] + 1e-3
    assert minibatch_cka([x], [y]) == pytest.approx(full, rel=1e-9)


def test_minibatch_batch_checks():
    small = [np.random.default_rng(0).normal(size=(3, 2))]
    with pytest.raises(ValueError, match="at least 4"):
        minibatch_cka(small, small)
    a = [np.ones((5, 2)) * np.arange(5)[:, None], np.arange(12.0).reshape(6, 2)]
    with pytest.raises(ValueError, match="unequal sizes"):
        minibatch_cka(a, a)
    with pytest.raises(ValueError, match="2 batches"):
        minibatch_cka(a, a[:1])


def test_constant_representation_raises():
    x = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match="constant representation"):
        linear_cka(np.full((10, 3), 7.0, dtype=np.float32), x)
    with pytest.raises(ValueError, match="constant representation"):
        rbf_cka(x, np.ones((10, 2)))


def test_nan_and_mismatched_inputs_raise():
    x = np.random.default_rng(0).normal(size=(10, 3))
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        linear_cka(bad, x)
    with pytest.raises(ValueError, match="sample counts differ"):
        linear_cka(x, x[:9])
    inf = x.copy()
    inf[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        cka_matrix([x, inf])


def test_cka_matrix_matches_pairwise_and_feature_path(monkeypatch):
    rng = np.random.default_rng(4)
    reps = [rng.normal(size=(30, d)) for d in (3, 8, 20)]
    reps.append(reps[0] @ rng.normal(size=(3, 5)))
    for debiased in (False, True):
        expected = np.array([[linear_cka(a, b, debiased=debiased) for b in reps] for a in reps])
        np.testing.assert_allclose(cka_matrix(reps, debiased=debiased), expected, atol=1e-10)
        from netclaims.metrics import cka as cka_module
        monkeypatch.setattr(cka_module, "GRAM_BUDGET_BYTES", 0)
        np.testing.assert_allclose(cka_matrix(reps, debiased=debiased), expected, atol=1e-10)
        monkeypatch.undo()
    rbf = cka_matrix(reps[:2], reps[2:], kernel="rbf")
    assert rbf.shape == (2, 2)
    assert rbf[0, 1] == pytest.approx(rbf_cka(reps[0], reps[3]), abs=1e-10)


def test_minibatch_sink_matches_function(mlp_model):
    x = torch.randn(200, 6)
    sink = stream(mlp_model, x, ["1", "3"], MinibatchCKA(), batch_size=32)
    keys, matrix = sink.matrix()
    assert keys == ["1", "3"] and sink.dropped_batches == 1 and sink.batches == 6
    from netclaims.units import collect
    acts = collect(mlp_model, x[:192], ["1", "3"])
    expected = minibatch_cka(list(acts["1"].split(32)), list(acts["3"].split(32)))
    assert matrix[0, 1] == pytest.approx(expected, rel=1e-5)  # float32 forwards differ by batch
    assert matrix[0, 0] == pytest.approx(1.0)


def _kornblith_rbf_cka(x: np.ndarray, y: np.ndarray, threshold: float) -> float:
    """An independent transcription of the formulas of Kornblith et al.'s demo notebook:
    ``K = exp(−d² / (2 · threshold² · median d²))`` on the features, centered as ``HKH``,
    CKA = ⟨K, L⟩ / (‖K‖ ‖L‖)."""
    def gram(z):
        z = z - z.mean(0)
        sq = (z * z).sum(1)
        d2 = sq[:, None] + sq[None, :] - 2 * z @ z.T
        return np.exp(-d2 / (2 * threshold**2 * np.median(d2)))

    def centre(k):
        h = np.eye(k.shape[0]) - 1.0 / k.shape[0]
        return h @ k @ h

    k, l_ = centre(gram(x)), centre(gram(y))
    return float((k * l_).sum() / np.sqrt((k * k).sum() * (l_ * l_).sum()))


@pytest.mark.parametrize("threshold", [0.5, 1.0, 2.0])
def test_rbf_cka_matches_an_independent_implementation(threshold):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 6))
    y = np.tanh(x @ rng.normal(size=(6, 5))) + 0.3 * rng.normal(size=(40, 5))
    got = rbf_cka(torch.from_numpy(x), torch.from_numpy(y), threshold=threshold)
    assert float(got) == pytest.approx(_kornblith_rbf_cka(x, y, threshold), abs=1e-10)
