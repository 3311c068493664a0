"""Plug-and-play step sizes inside the convergence conditions."""

import itertools

import deepinv as dinv
import pytest
import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.models.pnn import ConvPNN
from deepinv_pnn.optim.pnp_steps import (
    FirmlyNonexpansive,
    check_pnp_parameters,
    data_fidelity_lipschitz,
    gradient_lipschitz,
    pnp_parameters,
    pnp_solver,
)
from deepinv_pnn.problems import make_physics


@pytest.fixture(scope="module")
def denoiser():
    return ConvPNN(pretrained=True, sigma0=0.01).eval()


def test_gradient_lipschitz_by_hessian_vector_products():
    a = torch.diag(torch.tensor([0.5, 3.0, 1.0]))
    value = gradient_lipschitz(lambda x: 0.5 * (x @ a * x).sum(), torch.randn(1, 3))
    assert value == pytest.approx(3.0, rel=1e-4)


@pytest.mark.parametrize("problem", ["deblur", "sr", "inpaint"])
def test_data_fidelity_lipschitz_matches_the_operator_norm(problem):
    physics = make_physics(problem, (1, 16, 16))
    norm = float(
        physics.compute_sqnorm(torch.randn(1, 1, 16, 16), max_iter=200, tol=1e-7, verbose=False)
    )
    assert data_fidelity_lipschitz(physics, (1, 16, 16)) == pytest.approx(norm, rel=1e-2)


def test_helper_refuses_parameters_that_void_the_guarantee(denoiser):
    with pytest.raises(ValueError, match="stepsize must be < 2/L"):
        check_pnp_parameters(denoiser, "PGD", 2.5, lipschitz=1.0)
    with pytest.raises(ValueError, match="firmly nonexpansive"):
        check_pnp_parameters(denoiser, "DRS", 1.0)
    with pytest.raises(ValueError, match="algorithm"):
        check_pnp_parameters(denoiser, "FISTA", 1.0)
    with pytest.raises(ValueError, match="averaged_constant"):
        check_pnp_parameters(dinv.models.DnCNN(pretrained=None), "PGD", 1.0, 1.0)
    check_pnp_parameters(FirmlyNonexpansive(denoiser), "DRS", 1.0)  # accepted once relaxed
    assert FirmlyNonexpansive(denoiser).averaged_constant() == pytest.approx(0.5)


@pytest.mark.parametrize(
    "algorithm",
    [
        "PGD",
        pytest.param("HQS", marks=pytest.mark.slow),
        pytest.param("DRS", marks=pytest.mark.slow),
    ],
)
def test_pnp_residuals_converge_with_the_chosen_parameters(denoiser, algorithm):
    x = load_image("camera", size=24)
    physics = make_physics("deblur", (1, 24, 24), noise_level=0.01)
    y = physics(x)
    solver = pnp_solver(
        denoiser,
        physics,
        (1, 24, 24),
        algorithm,
        sigma=0.02,
        relax=True,
        max_iter=400,
        thres_conv=1e-4,
    )
    with torch.no_grad():
        _, metrics = solver(y, physics, x_gt=x, compute_metrics=True)
    assert solver.has_converged
    residual = metrics["residual"][0]
    assert residual[-1] < 1e-4 and residual[-1] < 1e-2 * residual[0]


def test_pgd_residual_decreases_monotonically(denoiser):
    """Krasnosel'skii-Mann: for an averaged fixed-point map ||x_{k+1} - x_k|| never increases."""
    x = load_image("coins", size=32)
    physics = make_physics("deblur", (1, 32, 32), noise_level=0.01)
    params = pnp_parameters(denoiser, physics, (1, 32, 32), "PGD", sigma=0.01)
    y = physics(x)
    z = physics.A_adjoint(y)
    steps = []
    with torch.no_grad():
        for _ in range(60):
            new = denoiser(z - params["stepsize"] * physics.A_adjoint(physics.A(z) - y), 0.01)
            steps.append(float((new - z).norm()))
            z = new
    assert all(b <= a * (1 + 1e-4) + 1e-7 for a, b in itertools.pairwise(steps))
