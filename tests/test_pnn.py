"""ParsevalPNN and ConvPNN: averaged denoisers by construction, measured."""

import math

import pytest
import torch
import torch.nn.functional as F

from deepinv_pnn.data import load_image
from deepinv_pnn.models.lipschitz import (
    averagedness_margin,
    jacobian_spectral_norm,
    lipschitz_ratios,
)
from deepinv_pnn.models.pnn import ConvPNN, ParsevalPNN


@pytest.fixture(scope="module")
def shipped():
    return ConvPNN(pretrained=True).eval()


def _natural_pairs(channels=1, size=40):
    x = load_image("camera" if channels == 1 else "astronaut", size=size, grayscale=channels == 1)
    y = load_image("coins" if channels == 1 else "coffee", size=size, grayscale=channels == 1)
    noisy = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    return torch.cat([x, x, y]), torch.cat([noisy, y, noisy])


def _random_pairs(channels=1, size=24, n=4):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, channels, size, size, generator=g)
    return x, x + 0.3 * torch.randn(x.shape, generator=g)


def test_shipped_convpnn_certificate_from_construction(shipped):
    assert shipped.orthogonality_error() < 1e-6
    assert shipped.lipschitz_bound() < 1 + 1e-5
    assert 0 < shipped.averaged_constant() < 1
    assert 0 < shipped.t < 9 / 8


def test_convpnn_phi_is_one_lipschitz(shipped):
    """Power iteration on J^T J (jvp + vjp) of the network Phi at natural and random images."""

    def phi(z):
        u = F.pad(z, (0, 0, 0, 0, 0, shipped.state_channels - 1))
        return shipped.phi(u)[:, :1]

    natural, random = _natural_pairs(size=24)[1][:1], _random_pairs(size=16, n=1)[1]
    for x in (natural, random):
        assert jacobian_spectral_norm(phi, x - 0.5, n_iter=12) <= 1 + 1e-3
    assert float(lipschitz_ratios(phi, *_random_pairs(size=16)).max()) <= 1 + 1e-3


@pytest.mark.parametrize("sigma", [0.01, 25 / 255, 0.2])
def test_convpnn_denoiser_is_averaged_on_random_and_natural_pairs(shipped, sigma):
    theta = shipped.averaged_constant()
    with torch.no_grad():
        for x, y in (_random_pairs(), _natural_pairs()):
            margin = averagedness_margin(lambda z: shipped(z, sigma), x, y, theta)
            assert float(margin.max()) <= 1e-4
            assert float(lipschitz_ratios(lambda z: shipped(z, sigma), x, y).max()) <= 1 + 1e-4


def test_colour_input_keeps_the_certificate(shipped):
    x, y = _natural_pairs(channels=3, size=24)
    with torch.no_grad():
        margin = averagedness_margin(lambda z: shipped(z, 0.05), x, y, shipped.averaged_constant())
    assert float(margin.max()) <= 1e-4


def test_shipped_convpnn_denoises_camera(shipped):
    x = load_image("camera", size=96)
    sigma = 25 / 255
    y = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = shipped(y, sigma)

    def psnr(a):
        return -10 * math.log10(float(((a - x) ** 2).mean()))

    assert psnr(y) == pytest.approx(20.2, abs=0.3)
    assert psnr(out) > psnr(y) + 5.0  # measured 26.3 dB (seed 0)


def test_scaling_trick_serves_other_noise_levels(shipped):
    x = load_image("camera", size=64)
    for sigma in (0.05, 0.15):
        y = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            assert float(((shipped(y, sigma) - x) ** 2).mean()) < 0.6 * float(((y - x) ** 2).mean())


def test_sigma_forms_and_batch(shipped):
    y = torch.rand(3, 1, 37, 31)
    with torch.no_grad():
        a = shipped(y, 0.05)
        b = shipped(y, torch.full((3,), 0.05))
        c = shipped(y, torch.tensor([0.05, 0.1, 0.2]))
    assert torch.allclose(a, b) and a.shape == y.shape
    assert torch.allclose(c[0], a[0]) and not torch.allclose(c[2], a[2])


def test_id_minus_t_phi_is_not_nonexpansive_for_two_layers():
    """Why the residual is Id - Phi: two projections onto lines 60 degrees apart (a 2-layer PNN)."""
    u1 = torch.tensor([1.0, 0.0])
    u2 = torch.tensor([math.cos(math.pi / 3), math.sin(math.pi / 3)])
    phi = torch.outer(u2, u2) @ torch.outer(u1, u1)
    assert torch.linalg.matrix_norm(torch.eye(2) - 1.0 * phi, ord=2) > 1.1
    # our relaxation (1 - t) Id + t Phi stays nonexpansive for t < (L+1)/L = 1.5
    assert torch.linalg.matrix_norm(torch.eye(2) - 1.45 * (torch.eye(2) - phi), ord=2) <= 1 + 1e-6


def test_parseval_pnn_dense_is_averaged():
    for hidden in (24, 6):  # tall and wide weights
        model = ParsevalPNN(dim=12, hidden=hidden, n_layers=3, seed=0)
        g = torch.Generator().manual_seed(2)
        x, y = torch.randn(16, 12, generator=g), torch.randn(16, 12, generator=g)
        with torch.no_grad():
            margin = averagedness_margin(
                lambda z, m=model: m(z, 0.1), x, y, model.averaged_constant()
            )
        assert float(margin.max()) <= 1e-5
        assert model.lipschitz_bound() < 1 + 1e-5


def test_relaxation_range_is_enforced():
    with pytest.raises(ValueError, match="t_max"):
        ConvPNN(width=8, state_channels=2, n_layers=2, t_max=2.0)
    with pytest.raises(ValueError, match="t "):
        ConvPNN(width=8, state_channels=2, n_layers=2, t=1.6)
    firm = ConvPNN(width=8, state_channels=2, n_layers=2, t=0.7, t_max=0.75)
    assert firm.averaged_constant() <= 0.5


def test_bad_input_is_refused(shipped):
    with pytest.raises(ValueError, match="x"):
        shipped(torch.rand(1, 2, 8, 8), 0.1)
    with pytest.raises(ValueError, match="x"):
        shipped(torch.rand(1, 8, 8), 0.1)
    with pytest.raises(ValueError, match="NaN"):
        shipped(torch.full((1, 1, 8, 8), float("nan")), 0.1)
    with pytest.raises(ValueError, match="sigma"):
        shipped(torch.rand(1, 1, 8, 8), -0.1)
    with pytest.raises(TypeError, match="x"):
        shipped([[0.0]], 0.1)
    with pytest.raises(ValueError, match="channels"):
        ConvPNN(channels=2)


def test_float64_and_gradients_reach_parameters():
    model = ConvPNN(width=8, state_channels=2, n_layers=2).double()
    out = model(torch.rand(2, 1, 9, 11, dtype=torch.float64), 0.1)
    assert out.dtype == torch.float64
    out.sum().backward()
    assert model.convs[0].first.grad is not None and model.log_thresholds.grad is not None
