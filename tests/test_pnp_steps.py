"""Plug-and-play step sizes inside the convergence conditions."""

import copy
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


def test_hqs_is_forward_backward_with_a_fourier_preconditioner(denoiser):
    r"""prox_{gamma f}(x) = x - gamma (I + gamma A^T A)^{-1} grad f(x): PnP-HQS is preconditioned
    PnP-FBS, accepted (and converging, residual nonincreasing) for a step far above 2/L."""
    x = load_image("coins", size=24).double()
    physics = make_physics("deblur", (1, 24, 24), noise_level=0.01).double()
    y = physics(x)
    gamma = 20.0
    z = torch.rand(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    delta = torch.zeros_like(z)
    delta[..., 0, 0] = 1
    kernel = torch.fft.fft2(physics.A(delta))
    grad = physics.A_adjoint(physics.A(z) - y)
    preconditioned = torch.fft.ifft2(torch.fft.fft2(grad) / (1 + gamma * kernel.abs() ** 2)).real
    prox = dinv.optim.L2().prox(z, y, physics, gamma=gamma)
    assert torch.allclose(prox, z - gamma * preconditioned, atol=1e-10)
    check_pnp_parameters(denoiser, "HQS", gamma)  # no 2/L bound for HQS
    with pytest.raises(ValueError, match="stepsize must be < 2/L"):
        check_pnp_parameters(denoiser, "PGD", gamma, lipschitz=1.0)
    model = copy.deepcopy(denoiser).double()
    steps = []
    with torch.no_grad():
        for _ in range(30):
            new = model(dinv.optim.L2().prox(z, y, physics, gamma=gamma), 0.01)
            steps.append(float((new - z).norm()))
            z = new
    assert all(b <= a * (1 + 1e-9) for a, b in itertools.pairwise(steps))
    assert steps[-1] < 0.05 * steps[0]
