"""WeightedTVPrior: the weighted TV functional, its prox, and its use in deepinv's PDCP."""

import deepinv as dinv
import pytest
import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.optim.weighted_tv import (
    WeightedTVPrior,
    nabla,
    nabla_adjoint,
    project_dual_ball,
    weighted_tv_denoise,
)


@pytest.fixture
def noisy():
    x = load_image("camera", size=(24, 20), dtype=torch.float64)
    y = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return x, y


def spatial_map(y, low=0.02, high=0.2):
    """A map that is large on the left half and small on the right half."""
    lam = torch.full_like(y, low)
    lam[..., : y.shape[-1] // 2] = high
    return lam


def test_constant_map_prox_reproduces_deepinv_tv_prox(noisy):
    _, y = noisy
    reference = dinv.optim.TVPrior(def_crit=1e-10, n_it_max=20000).to(torch.float64).prox(y, gamma=0.1)
    ours = WeightedTVPrior(0.1, tol=1e-6).prox(y, gamma=1.0)
    assert float((ours - reference).norm() / reference.norm()) < 1e-4
    # g_param multiplies the map, gamma too
    assert torch.allclose(WeightedTVPrior(1.0, tol=1e-6).prox(y, 0.5, gamma=0.2), ours, atol=1e-5)


def test_fn_of_constant_map_is_lambda_times_tv(noisy):
    _, y = noisy
    tv = dinv.optim.TVPrior().to(torch.float64).fn(y)
    assert torch.allclose(WeightedTVPrior(0.3).fn(y), 0.3 * tv)
    assert WeightedTVPrior(spatial_map(y)).fn(y).shape == (1,)


def test_weighted_prox_satisfies_optimality_by_duality_gap(noisy):
    _, y = noisy
    lam = spatial_map(y)
    z = weighted_tv_denoise(y, lam, tol=1e-6)
    prior = WeightedTVPrior(lam)
    h = lambda u: float(prior.fn(u) + 0.5 * ((u - y) ** 2).sum())
    generator = torch.Generator().manual_seed(3)
    for _ in range(5):
        d = torch.randn(y.shape, generator=generator, dtype=y.dtype)
        assert h(z) <= h(z + 1e-3 * d / d.norm()) + 1e-9
    # the map acts locally: the strongly regularised half is flatter
    left, right = nabla(z)[..., :10, :].abs().mean(), nabla(z)[..., 10:, :].abs().mean()
    assert left < 0.5 * right


def test_anisotropic_per_direction_maps(noisy):
    _, y = noisy
    lam = torch.stack([torch.full_like(y, 0.3), torch.full_like(y, 0.0)], dim=-1)
    z = WeightedTVPrior(lam, isotropic=False, tol=1e-6).prox(y, gamma=1.0)
    field = nabla(z)
    # direction 0 (vertical differences) heavily penalised, direction 1 free
    assert field[..., 0].abs().mean() < 0.5 * field[..., 1].abs().mean()
    with pytest.raises(ValueError, match="anisotropic"):
        WeightedTVPrior(lam, isotropic=True)


def test_projection_is_onto_the_weighted_ball():
    q = torch.randn(2, 1, 5, 6, 2, generator=torch.Generator().manual_seed(1))
    lam = torch.rand(2, 1, 5, 6, 1, generator=torch.Generator().manual_seed(2))
    lam[..., 0, 0, :] = 0.0
    p = project_dual_ball(q, lam, isotropic=True)
    assert (p.norm(dim=-1, keepdim=True) <= lam + 1e-6).all()
    assert torch.allclose(project_dual_ball(p, lam), p)  # idempotent
    pa = project_dual_ball(q, lam, isotropic=False)
    assert (pa.abs() <= lam + 1e-7).all()


def test_prior_works_in_deepinv_pdcp_with_k_nabla(noisy):
    """PDCP on F(Kx) with K = nabla, g_first=True: the dual step is prior.prox_conjugate on the
    gradient field; it solves the same weighted TV denoising problem as the prior's prox."""
    _, y = noisy
    lam = spatial_map(y)
    prior = WeightedTVPrior(lam)
    physics = dinv.physics.Denoising()
    tau = sigma = 0.99 / 8**0.5

    def init(y, physics):
        return {"est": (y.clone(), y.clone(), torch.zeros_like(nabla(y)))}

    solver = dinv.optim.PDCP(
        K=nabla, K_adjoint=nabla_adjoint, data_fidelity=dinv.optim.L2(), prior=prior,
        stepsize=tau, stepsize_dual=sigma, lambda_reg=1.0, g_first=True, max_iter=1000,
        custom_init=init, early_stop=False,
    )
    out = solver(y, physics)
    reference = prior.prox(y, gamma=1.0)
    assert float((out - reference).norm() / reference.norm()) < 1e-3


def test_prior_prox_inside_deepinv_pdcp_with_k_identity(noisy):
    """PDCP with K = Id on the deblurring problem: prior.prox (weighted TV denoising) as the
    primal step; it decreases the weighted-TV objective."""
    x, _ = noisy
    physics = dinv.physics.BlurFFT(
        img_size=(1, 24, 20), filter=dinv.physics.functional.gaussian_blur(sigma=1.0).to(torch.float64),
        noise_model=dinv.physics.GaussianNoise(0.01, rng=torch.Generator().manual_seed(0)),
    )
    y = physics(x)
    prior = WeightedTVPrior(spatial_map(y, 0.002, 0.02), max_iter=200, tol=1e-3)
    solver = dinv.optim.PDCP(
        K=physics.A, K_adjoint=physics.A_adjoint, data_fidelity=dinv.optim.L2(), prior=prior,
        stepsize=0.9, stepsize_dual=1.0, max_iter=20,
    )
    out = solver(y, physics)
    cost = lambda u: float(0.5 * ((physics.A(u) - y) ** 2).sum() + prior.fn(u))
    assert cost(out) < cost(physics.A_adjoint(y))


def test_bad_inputs_are_refused(noisy):
    _, y = noisy
    with pytest.raises(ValueError, match="lambda_map"):
        WeightedTVPrior(-torch.ones_like(y))
    with pytest.raises(ValueError, match="gamma"):
        WeightedTVPrior().prox(y, gamma=-1.0)
    with pytest.raises(TypeError, match="x"):
        WeightedTVPrior().fn(y.numpy())
    with pytest.raises(ValueError, match="lambda_map"):
        WeightedTVPrior(torch.ones(1, 1, 3, 3)).fn(y)
