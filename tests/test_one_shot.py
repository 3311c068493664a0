"""One-shot tuning of the PnP regularisation parameter."""

import pytest
import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.models.pnn import ConvPNN
from deepinv_pnn.problems import make_physics
from deepinv_pnn.training.one_shot import one_shot_tune


def test_one_shot_moves_sigma_towards_a_lower_loss():
    denoiser = ConvPNN(pretrained=True).eval()
    x = load_image("camera", size=32)
    physics = make_physics("deblur", (1, 32, 32), noise_level=0.01)
    y = physics(x)
    result = one_shot_tune(denoiser, physics, y, x, sigma0=0.15, n_iter=60)
    losses = [loss for _, loss in result["history"]]
    assert result["sigma"] < 0.12  # measured 0.08 (from 0.15)
    assert min(losses[-10:]) < 0.7 * losses[0]
    assert all(p.requires_grad for p in denoiser.parameters() if p is not denoiser.relaxation.rho)


def test_one_shot_refuses_bad_arguments():
    denoiser = ConvPNN(width=8, state_channels=2, n_layers=2)
    physics = make_physics("deblur", (1, 16, 16))
    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="stepsize"):
        one_shot_tune(denoiser, physics, physics(x), x, stepsize=5.0, n_iter=1)
    with pytest.raises(ValueError, match="sigma0"):
        one_shot_tune(denoiser, physics, physics(x), x, sigma0=-1.0, n_iter=1)
    with pytest.raises(ValueError, match="x_val"):
        one_shot_tune(denoiser, physics, physics(x), x[0], n_iter=1)
