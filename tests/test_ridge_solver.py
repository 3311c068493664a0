"""Specification of the FISTA-restart ridge solver and the coarse-to-fine tuner."""

import deepinv as dinv
import pytest
import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.optim import ConvexRidgeRegularizer, WeaklyConvexRidgeRegularizer
from deepinv_pnn.optim.ridge_solver import RidgeSolver, tune_coarse_to_fine


def _problem():
    x = load_image("camera", size=16).double()
    physics = dinv.physics.BlurFFT(
        img_size=(1, 16, 16), filter=dinv.physics.functional.gaussian_blur(sigma=1.0).double(),
        noise_model=dinv.physics.GaussianNoise(0.01, rng=torch.Generator().manual_seed(0)),
    )
    return x, physics, physics(x)


@pytest.mark.parametrize("cls", [ConvexRidgeRegularizer, WeaklyConvexRidgeRegularizer])
def test_ridge_solver_reaches_a_stationary_point(cls):
    torch.manual_seed(0)
    prior = cls(channels=(1, 4, 8), kernel_size=3).double().eval()
    x, physics, y = _problem()
    solver = RidgeSolver(prior, lambda_reg=0.5, g_param=0.05, tol=1e-7, max_iter=5000)
    out = solver(y, physics)
    grad = physics.A_adjoint(physics.A(out) - y) + 0.5 * prior.grad(out, 0.05)
    assert float(grad.norm() / physics.A_adjoint(y).norm()) < 1e-3
    assert solver.iterations < 5000


def test_weakly_convex_solver_is_monotone():
    torch.manual_seed(0)
    prior = WeaklyConvexRidgeRegularizer(channels=(1, 4, 8), kernel_size=3).double().eval()
    with torch.no_grad():  # a strongly nonconvex regulariser
        prior.phi_minus.coefficients.copy_(prior.phi_minus.knots.clamp(-1, 1).expand_as(prior.phi_minus.coefficients))
    x, physics, y = _problem()
    solver = RidgeSolver(prior, lambda_reg=3.0, g_param=0.05, tol=1e-8, max_iter=60)
    solver(y, physics)
    history = torch.tensor(solver.objective_history)
    assert (history[1:] <= history[:-1] + 1e-12).all()


def test_box_constraint_is_respected():
    prior = ConvexRidgeRegularizer(channels=(1, 4, 8), kernel_size=3).double().eval()
    x, physics, y = _problem()
    out = RidgeSolver(prior, lambda_reg=0.1, box=(0.0, 1.0), max_iter=50)(y, physics)
    assert out.min() >= 0 and out.max() <= 1


def test_tuner_finds_the_maximum_of_a_smooth_score():
    best, value = tune_coarse_to_fine(lambda a, b: -((a - 3) ** 2) - (b - 0.5) ** 2, (1.0, 1.0), min_step=1.01)
    assert best[0] == pytest.approx(3, rel=0.02) and best[1] == pytest.approx(0.5, rel=0.02)
    with pytest.raises(ValueError, match="step"):
        tune_coarse_to_fine(lambda a: a, (1.0,), step=0.5)


def test_solver_refuses_bad_inputs():
    prior = ConvexRidgeRegularizer(channels=(1, 4, 8), kernel_size=3)
    with pytest.raises(TypeError, match="physics"):
        RidgeSolver(prior)(torch.zeros(1, 1, 8, 8), "blur")
    with pytest.raises(ValueError, match="lambda_reg"):
        RidgeSolver(prior, lambda_reg=-1.0)
