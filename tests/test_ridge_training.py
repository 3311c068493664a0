"""Specification of the CRR-NN training recipe's pieces: data split and t-step denoiser."""

import numpy as np
import skimage.io
import torch

from deepinv_pnn.optim import ConvexRidgeRegularizer
from deepinv_pnn.training.train_crr import split_train_validation_test, t_step_denoiser


def test_split_keeps_test_and_validation_images_out_of_training(tmp_path):
    for k in range(1, 21):
        skimage.io.imsave(tmp_path / f"test_{k:03d}.png", np.full((8, 8), 10 * k, dtype=np.uint8))
    train, validation, test = split_train_validation_test(tmp_path, 5, 3)
    names = lambda files: [f.name for f in files]  # noqa: E731
    assert names(test) == [f"test_{k:03d}.png" for k in range(16, 21)]
    assert names(validation) == [f"test_{k:03d}.png" for k in range(13, 16)]
    assert names(train) == [f"test_{k:03d}.png" for k in range(1, 13)]
    assert split_train_validation_test(tmp_path, 5, 0)[1] == []


def test_t_step_denoiser_converges_to_the_prox():
    torch.manual_seed(0)
    prior = ConvexRidgeRegularizer(channels=(1, 4, 8), kernel_size=5).double().eval()
    with torch.no_grad():
        prior.log_lmbda.fill_(0.0)  # lambda * mu = 10: the step contracts by about 10/12
    y = torch.rand(1, 1, 24, 24, dtype=torch.float64)
    with torch.no_grad():
        many = t_step_denoiser(prior, y, 200)
        exact = prior.prox(y, gamma=1.0, tol=1e-10, max_iter=5000)
    assert float((many - exact).abs().max()) < 1e-6


def test_t_step_denoiser_step_is_differentiated():
    torch.manual_seed(0)
    prior = ConvexRidgeRegularizer(channels=(1, 4, 8), kernel_size=5).train()
    x = torch.rand(2, 1, 16, 16)
    y = x + 0.1 * torch.randn_like(x)
    with prior.conv.shared_scale():
        loss = (t_step_denoiser(prior, y, 1) - x).pow(2).mean()
    loss.backward()
    assert prior.log_lmbda.grad is not None and prior.log_mu.grad is not None
    assert float(prior.log_mu.grad.abs()) > 0
