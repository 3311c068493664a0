"""Specification of the Wasserstein patch prior and its semi-dual OT core."""

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from deepinv_pnn.data import load_image
from deepinv_pnn.nn import semidual
from deepinv_pnn.optim import WassersteinPatchPrior


def _clouds(n, m, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, dtype=torch.float64, generator=g), torch.rand(m, d, dtype=torch.float64, generator=g)


def test_chunked_value_and_grad_equal_the_dense_computation():
    x, y = _clouds(300, 170)
    psi = 0.05 * torch.randn(170, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    # a budget of 4 KiB forces blocks of one row
    value = semidual.semidual_value(xa, y, psi, memory_budget=4096)
    dense = semidual.dense_semidual_value(xb, y, psi)
    value.backward()
    dense.backward()
    assert abs(float(value.detach() - dense.detach())) < 1e-12
    assert torch.allclose(xa.grad, xb.grad, atol=1e-12)


def test_chunk_rows_respects_the_budget():
    rows = semidual.chunk_rows(10_000, 4, 64 * 2**20)
    assert 3 * rows * 10_000 * 4 <= 64 * 2**20
    assert semidual.chunk_rows(10_000, 4, 1) == 1


def test_averaged_ascent_reaches_the_exact_transport_cost():
    x, y = _clouds(150, 150, d=4)
    cost = (torch.cdist(x, y) ** 2).numpy()
    r, c = linear_sum_assignment(cost)
    exact = float(cost[r, c].mean())
    psi = torch.zeros(150, dtype=torch.float64)
    lower = [float(semidual.semidual_value(x, y, psi))]
    for _ in range(4):
        psi = semidual.ascend_dual(x, y, psi, 200, lr=1.0)
        lower.append(float(semidual.semidual_value(x, y, psi)))
    assert all(v <= exact + 1e-12 for v in lower)  # weak duality
    assert lower[-1] > lower[0]
    assert abs(lower[-1] - exact) / exact < 0.01  # measured 0.3 %


@pytest.fixture(scope="module")
def reference():
    return load_image("grass", size=64, dtype=torch.float64)


def test_wpp_is_small_for_reference_patches_and_large_for_noise(reference):
    prior = WassersteinPatchPrior(reference, n_reference_patches=500, psi_iters=30)
    same = load_image("grass", size=64, dtype=torch.float64)[..., :40, :40]
    noise = torch.rand(1, 1, 40, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    v_same, v_noise = (float(prior.fn(z)) for z in (same, noise))
    assert v_same < 0.1 * v_noise  # measured 0.063 vs 1.41


def test_wpp_fn_is_deterministic_and_grad_is_its_autograd(reference):
    prior = WassersteinPatchPrior(reference, n_reference_patches=300).to(torch.float64)
    x = torch.rand(2, 1, 24, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    v1 = prior.fn(x)
    v2 = prior.fn(x.clone())
    assert v1.shape == (2,) and torch.equal(v1, v2)
    g = prior.grad(x)
    xx = x.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(prior.fn(xx).sum(), xx)
    assert torch.allclose(g, auto, rtol=1e-10, atol=1e-14)
    # the grad equals the finite difference of the frozen (piecewise quadratic) fn
    d = torch.randn_like(x) * 1e-6
    with prior.frozen():
        fd = float(prior.fn(x + d).sum() - prior.fn(x - d).sum()) / 2
    assert abs(fd - float((g * d).sum())) < 1e-3 * abs(fd) + 1e-15


def test_wpp_gradient_descent_reduces_the_distance(reference):
    prior = WassersteinPatchPrior(reference, n_reference_patches=300, psi_iters=5)
    x = torch.rand(1, 1, 24, 24, generator=torch.Generator().manual_seed(1))
    start = float(prior.fn(x))
    for _ in range(15):
        x = x - 0.5 / prior.lipschitz_bound(x) * prior.grad(x)
    assert float(prior.fn(x)) < 0.5 * start


def test_wpp_prox_is_a_stationary_point(reference):
    prior = WassersteinPatchPrior(reference, n_reference_patches=300).to(torch.float64)
    x = torch.rand(1, 1, 20, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    gamma = 5.0
    p = prior.prox(x, None, gamma=gamma)
    with prior.frozen():
        residual = (p - x + gamma * prior.grad(p)).norm() / (p - x).norm()
    assert residual < 1e-4  # measured 3e-5


def test_wpp_subset_and_padding_and_centering_options(reference):
    prior = WassersteinPatchPrior(reference, n_reference_patches=200, n_patches=50, pad="reflect", center=True)
    x = torch.rand(1, 1, 20, 20)
    assert torch.equal(prior.fn(x), prior.fn(x.clone()))
    with pytest.raises(ValueError, match="channel"):
        prior.fn(torch.rand(1, 3, 20, 20))
    with pytest.raises(ValueError, match="NaN"):
        prior.fn(torch.full((1, 1, 20, 20), float("nan")))
    with pytest.raises(ValueError, match="gamma"):
        prior.prox(x, gamma=-1.0)


def test_wpp_resample_draws_new_patches_at_each_refresh_and_is_fixed_in_between(reference):
    prior = WassersteinPatchPrior(reference, n_reference_patches=200, n_patches=60, resample=True, psi_iters=2)
    x = torch.rand(1, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    first = prior.fn(x)
    assert torch.equal(first, prior.fn(x.clone()))  # no refresh: same subset, same potentials
    rows_before = prior._positions[(0, 1, 24, 24, "cpu")][0].clone()
    prior.update_dual(x)  # a refresh redraws the subset
    assert not torch.equal(rows_before, prior._positions[(0, 1, 24, 24, "cpu")][0])
    prior.reset()  # and reset restarts the seeded sequence
    assert torch.equal(prior.fn(x), first)


@pytest.mark.skipif(not semidual.HAS_KEOPS, reason="pykeops not installed")
def test_keops_assignment_matches_the_chunked_one():  # pragma: no cover
    x, y = _clouds(100, 80)
    psi = torch.zeros(80, dtype=torch.float64)
    assert torch.equal(semidual.assign(x, y, psi, use_keops=True)[1], semidual.assign(x, y, psi)[1])


def test_adam_reconstructor_iterate_averaging():
    from deepinv_pnn.baselines import TVPrior
    from deepinv_pnn.optim import AdamPatchReconstructor
    from deepinv_pnn.sr_physics import WPPSuperResolution

    physics = WPPSuperResolution(4)
    y = physics.A(torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0)))
    last = AdamPatchReconstructor(TVPrior(), 1e-3, steps=6)(y, physics)
    # averaging from the last step is the last iterate; from step 5 the mean of iterates 5 and 6
    assert torch.equal(AdamPatchReconstructor(TVPrior(), 1e-3, steps=6, average_from=6)(y, physics), last)
    fifth = AdamPatchReconstructor(TVPrior(), 1e-3, steps=5)(y, physics)
    mean = AdamPatchReconstructor(TVPrior(), 1e-3, steps=6, average_from=5)(y, physics)
    torch.testing.assert_close(mean, (fifth + last) / 2)
    with pytest.raises(ValueError, match="average_from"):
        AdamPatchReconstructor(TVPrior(), 1e-3, steps=6, average_from=7)


def test_reference_denoising_removes_grain_and_keeps_edges():
    from deepinv_pnn.optim.wpp import denoise_reference

    g = torch.Generator().manual_seed(0)
    step = torch.zeros(1, 1, 32, 32)
    step[..., 16:] = 1.0
    noisy = step + 0.05 * torch.randn(step.shape, generator=g)
    clean = denoise_reference(noisy, 0.05)
    assert float((clean - step).pow(2).mean()) < 0.2 * float((noisy - step).pow(2).mean())
    assert float(clean[..., 20:].mean() - clean[..., :12].mean()) > 0.9  # the edge survives
    raw = WassersteinPatchPrior(noisy, n_reference_patches=100)
    den = WassersteinPatchPrior(noisy, n_reference_patches=100, reference_denoise=0.05)
    assert den.reference(0).var(1).mean() < raw.reference(0).var(1).mean()
