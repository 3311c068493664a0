r"""WPPFlow: a conditional normalizing flow for superresolution with uncertainty.

Altekrüger and Hertrich (SIIMS 2023): a conditional generator
:math:`x = T_\theta(z; y)`, :math:`z \sim \mathcal N(0, I)`, invertible in :math:`z`, is
trained from low-resolution data and one reference image with

.. math::

    \mathbb{E}_{y, z}\Big[\tfrac12\|A T_\theta(z;y) - y\|^2 + \lambda W_2^2(\mu_{T_\theta(z;y)}, \nu)
    - \sigma^2 \log|\det \nabla_z T_\theta(z; y)|\Big],

so its samples approximate a posterior whose spread is kept alive by the log-determinant
(entropy) term. Mean and pixel-wise standard deviation of samples give a reconstruction
with an uncertainty map.

Here :math:`T_\theta(z; y) = x_0 + \mathcal{U}(f_\theta(\mathcal{S}(\tau z); c(x_0)))` with
:math:`x_0` the normalised back-projection of ``y``, :math:`\mathcal{S}`/:math:`\mathcal{U}`
space-to-depth and its inverse, :math:`f_\theta` a chain of [ActNorm, invertible 1x1
convolution, conditional affine coupling] blocks and :math:`c` a CNN feature map of
:math:`x_0`.
"""

from __future__ import annotations

import math
import os

import deepinv as dinv
import torch
from torch import nn

from deepinv_pnn.models.wppnet import backprojection, check_physics
from deepinv_pnn.nn.flows import (
    ActNorm,
    AffineCoupling,
    InvertibleMixing,
    SequentialFlow,
    conv_net,
    squeeze,
    unsqueeze,
)
from deepinv_pnn.pretrained import load_pretrained
from deepinv_pnn.validation import check_image


class WPPFlow(dinv.models.Reconstructor):
    r"""Conditional normalizing flow :math:`x = T_\theta(z; y)` for superresolution.

    ``forward(y, physics)`` returns the mean of ``n_samples`` samples; :meth:`sample`
    returns samples with their log-determinants, :meth:`mean_std` mean and pixel-wise std.

    :param int channels: image channels.
    :param int n_blocks: conditional flow blocks.
    :param int hidden: width of the coupling CNNs.
    :param int cond_features: channels of the condition feature map.
    :param float temperature: :math:`\tau`, the standard deviation of the latent noise.
    :param int n_samples: samples averaged by :meth:`forward`.
    :param bool | str pretrained: ``True`` loads the shipped SiC x4 weights; a path a file.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.models import WPPFlow
    >>> from deepinv_pnn.sr_physics import WPPSuperResolution
    >>> flow = WPPFlow(n_blocks=2, hidden=8, cond_features=4)
    >>> mean, std = flow.mean_std(torch.rand(1, 1, 6, 6), WPPSuperResolution(4), n=3)
    >>> mean.shape, std.shape
    (torch.Size([1, 1, 24, 24]), torch.Size([1, 1, 24, 24]))
    """

    def __init__(
        self,
        channels: int = 1,
        n_blocks: int = 6,
        hidden: int = 64,
        cond_features: int = 32,
        temperature: float = 0.05,
        n_samples: int = 8,
        pretrained: bool | str | os.PathLike = False,
        seed: int = 0,
    ):
        super().__init__()
        self.channels = channels
        self.temperature = temperature
        self.n_samples = n_samples
        squeezed = 4 * channels
        self.condition = nn.Sequential(
            nn.Conv2d(squeezed, cond_features, 3, padding=1), nn.ReLU(),
            nn.Conv2d(cond_features, cond_features, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(cond_features, cond_features, 3, padding=4, dilation=4), nn.ReLU(),
            nn.Conv2d(cond_features, cond_features, 3, padding=1),
        )
        blocks: list[nn.Module] = []
        for k in range(n_blocks):
            blocks += [
                ActNorm(squeezed),
                InvertibleMixing(squeezed, seed=seed + k),
                AffineCoupling(squeezed, conv_net(hidden), cond_channels=cond_features),
            ]
        self.flow = SequentialFlow(blocks)
        # the ActNorms start as the identity; data initialisation would tie them to the first batch of z
        for block in blocks:
            if isinstance(block, ActNorm):
                block.initialized.fill_(True)
        load_pretrained(self, pretrained, "wppflow_sic_x4.safetensors")

    def generate(self, z: torch.Tensor, y: torch.Tensor, physics: dinv.physics.LinearPhysics):
        r""":math:`(T_\theta(z; y), \log|\det\nabla_z T_\theta|)` for latent ``z`` of the high-resolution shape."""
        check_image(y, "y", channels=self.channels)
        check_physics(physics)
        x0 = backprojection(y, physics)
        if z.shape != x0.shape:
            raise ValueError(f"z must have the high-resolution shape {tuple(x0.shape)}, got {tuple(z.shape)}")
        x0s = squeeze(x0)
        cond = self.condition(x0s)
        out, logdet = self.flow(squeeze(self.temperature * z), cond)
        logdet = logdet + z[0].numel() * math.log(self.temperature)
        return x0 + unsqueeze(out), logdet

    def sample(self, y: torch.Tensor, physics: dinv.physics.LinearPhysics, n: int = 1,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples per observation: ``[n, B, C, H, W]``."""
        check_image(y, "y", channels=self.channels)
        check_physics(physics)
        x0 = backprojection(y, physics)
        samples = []
        for _ in range(n):
            z = torch.randn(x0.shape, generator=generator, device=y.device, dtype=y.dtype) if generator is not None \
                else torch.randn_like(x0)
            samples.append(self.generate(z, y, physics)[0])
        return torch.stack(samples)

    @torch.no_grad()
    def mean_std(self, y: torch.Tensor, physics: dinv.physics.LinearPhysics, n: int = 16,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample mean and pixel-wise standard deviation of ``n`` samples."""
        samples = self.sample(y, physics, n, generator)
        return samples.mean(0), samples.std(0, unbiased=n > 1)

    def forward(self, y: torch.Tensor, physics: dinv.physics.LinearPhysics, **kwargs) -> torch.Tensor:
        """The mean of ``n_samples`` samples (a minimum-MSE-like estimate); differentiable."""
        return self.sample(y, physics, self.n_samples).mean(0)
