"""UnrolledPDHG: convergent by construction, solves the weighted-TV problem, trainable."""

import math

import deepinv as dinv
import pytest
import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.models.unrolled_pdhg import SQNORM_MARGIN, UnrolledPDHG
from deepinv_pnn.optim.weighted_tv import WeightedTVPrior, nabla, nabla_adjoint


@pytest.fixture
def image():
    return load_image("camera", size=(24, 20), dtype=torch.float64)


def blur_physics(size=(24, 20)):
    return dinv.physics.BlurFFT(
        img_size=(1,) + size,
        filter=dinv.physics.functional.gaussian_blur(sigma=1.6).to(torch.float64),
        noise_model=dinv.physics.GaussianNoise(0.01, rng=torch.Generator().manual_seed(0)),
    )


@pytest.mark.parametrize("data_term", ["dual", "prox"])
def test_convergence_condition_holds_for_all_parameter_values(data_term):
    """sigma tau ||K||^2 < 1 with K = [A; nabla] (dual) or K = nabla (prox, ||nabla||^2 <= 8)."""
    model = UnrolledPDHG(data_term=data_term)
    generator = torch.Generator().manual_seed(0)
    for sqnorm in (1e-3, 0.25, 1.0, 37.0):
        k_sqnorm = sqnorm + 8.0 if data_term == "dual" else 8.0
        margin_sqnorm = SQNORM_MARGIN * sqnorm + 8.0 if data_term == "dual" else 8.0
        for _ in range(200):
            with torch.no_grad():
                for p in (model.step_logit, model.log_ratio, model.relax_logit):
                    p.copy_(50 * torch.randn((), generator=generator))
                tau, sigma, rho = model.parameters_pdhg(sqnorm)
            assert float(tau * sigma) * k_sqnorm < 1.0
            # s_max < 1 leaves room for float32 rounding
            assert float(tau * sigma) * margin_sqnorm <= model.s_max**2 * (1 + 1e-6)
            assert 0.0 < float(rho) < 2.0 and tau > 0 and sigma > 0
    # the prox iteration's steps do not depend on ||A||
    assert torch.equal(model.parameters_pdhg(1.0)[0], model.parameters_pdhg(37.0)[0]) == (data_term == "prox")


def test_prox_data_term_reaches_the_same_minimiser_in_fewer_iterations(image):
    """The data prox (closed form for BlurFFT) instead of a dual variable for A: the same
    weighted-TV minimiser, reached far sooner (deblurring with a small lambda converges slowly
    with K = [A; nabla])."""
    physics = blur_physics()
    y = physics(image)
    lam = torch.full_like(y, 0.002)
    lam[..., :10, :] = 0.02
    dual = UnrolledPDHG(rho_init=1.9, log_ratio_init=2.0).double()
    prox = UnrolledPDHG(rho_init=1.5, log_ratio_init=3.0, data_term="prox").double()
    with torch.no_grad():
        reference = dual(y, physics, lam, n_iter=5000)

        def error(model, n_iter):
            return float((model(y, physics, lam, n_iter=n_iter) - reference).norm() / reference.norm())

        assert error(prox, 2000) < 1e-4
        assert error(prox, 32) < 0.5 * error(dual, 32)
    with pytest.raises(ValueError, match="data_term"):
        UnrolledPDHG(data_term="admm")


def test_convergence_condition_holds_after_training_with_a_huge_learning_rate(image):
    physics = blur_physics()
    y = physics(image)
    model = UnrolledPDHG(n_iter=5).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e4)
    for _ in range(5):
        optimizer.zero_grad()
        ((model(y, physics, 0.01) - image) ** 2).sum().backward()
        optimizer.step()
    # the exact ||A||^2 of a normalised Gaussian blur is 1 (the DC gain)
    with torch.no_grad():
        tau, sigma, _ = model.parameters_pdhg(model.operator_sqnorm(physics, y))
    assert float(tau * sigma) * (1.0 + 8.0) < 1.0


def test_constant_map_reproduces_deepinv_tv_denoiser(image):
    y = image + 0.1 * torch.randn(image.shape, generator=torch.Generator().manual_seed(1), dtype=image.dtype)
    reference = dinv.optim.TVPrior(def_crit=1e-10, n_it_max=20000).to(torch.float64).prox(y, gamma=0.1)
    model = UnrolledPDHG(rho_init=1.9).double()
    with torch.no_grad():
        out = model(y, dinv.physics.Denoising(), 0.1 * torch.ones_like(y), n_iter=1500)
    assert float((out - reference).norm() / reference.norm()) < 1e-4


def test_more_iterations_approach_the_minimiser(image):
    physics = blur_physics()
    y = physics(image)
    lam = torch.full_like(y, 0.002)
    lam[..., :10, :] = 0.02
    model = UnrolledPDHG(n_iter=32, rho_init=1.9, log_ratio_init=2.0).double()
    with torch.no_grad():
        reference = model(y, physics, lam, n_iter=1500)
        errors = [float((model(y, physics, lam, n_iter=n) - reference).norm() / reference.norm()) for n in (16, 64, 256)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 5e-3


@pytest.mark.slow
def test_unrolled_pdhg_and_deepinv_pdcp_reach_the_same_minimiser(image):
    physics = blur_physics()
    y = physics(image)
    lam = torch.full_like(y, 0.002)
    lam[..., :10, :] = 0.02
    # reference: deepinv's PDCP with K = nabla and the exact data prox of the blur
    prior = WeightedTVPrior(lam)
    pdcp = dinv.optim.PDCP(
        K=nabla, K_adjoint=nabla_adjoint, data_fidelity=dinv.optim.L2(), prior=prior,
        stepsize=0.3, stepsize_dual=0.3, g_first=True, max_iter=1500,
        custom_init=lambda y, p: {"est": (p.A_adjoint(y), p.A_adjoint(y), torch.zeros_like(nabla(y)))},
    )
    reference = pdcp(y, physics)
    model = UnrolledPDHG(n_iter=32, rho_init=1.9, log_ratio_init=2.0).double()
    errors = []
    with torch.no_grad():
        for n_iter in (16, 64, 512):
            out = model(y, physics, lam, n_iter=n_iter)
            errors.append(float((out - reference).norm() / reference.norm()))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 5e-3


def test_gradients_reach_steps_relaxation_and_map(image):
    physics = blur_physics()
    y = physics(image)
    lam = torch.full_like(y, 0.01, requires_grad=True)
    model = UnrolledPDHG(n_iter=10).double()
    ((model(y, physics, lam) - image) ** 2).sum().backward()
    for p in (model.step_logit, model.log_ratio, model.relax_logit, lam):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_checkpointing_gives_the_same_values_and_gradients(image):
    physics = dinv.physics.Denoising()
    y = image + 0.1 * torch.randn(image.shape, generator=torch.Generator().manual_seed(2), dtype=image.dtype)
    results = []
    for checkpointing in (False, True):
        model = UnrolledPDHG(n_iter=17, checkpointing=checkpointing).double()
        lam = torch.full_like(y, 0.05, requires_grad=True)
        out = model(y, physics, lam)
        out.square().sum().backward()
        results.append((out.detach(), lam.grad, model.log_ratio.grad))
    for a, b in zip(*results):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_positive_homogeneity(image):
    """Scaling y and the map by c scales every iterate by c (the basis of scale invariance)."""
    physics = blur_physics()
    y = physics(image)
    model = UnrolledPDHG(n_iter=20).double()
    with torch.no_grad():
        out = model(y, physics, 0.01)
        out10 = model(10 * y, physics, 0.1)
    assert torch.allclose(out10, 10 * out, rtol=1e-10, atol=1e-10)


def test_anisotropic_per_direction_and_bad_input(image):
    physics = dinv.physics.Denoising()
    lam = torch.stack([torch.full_like(image, 0.1), torch.zeros_like(image)], dim=-1)
    out = UnrolledPDHG(n_iter=300, isotropic=False).double()(image, physics, lam)
    assert out.shape == image.shape
    with pytest.raises(ValueError, match="anisotropic"):
        UnrolledPDHG(isotropic=True)(image, physics, lam)
    with pytest.raises(TypeError, match="physics"):
        UnrolledPDHG()(image, "blur", 0.1)
    with pytest.raises(ValueError, match="rho_init"):
        UnrolledPDHG(rho_init=2.0)
    with torch.no_grad():
        assert math.isclose(float(UnrolledPDHG(rho_init=1.5).parameters_pdhg(1.0)[2]), 1.5, rel_tol=1e-6)
