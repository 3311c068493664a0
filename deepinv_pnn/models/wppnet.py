r"""WPPNet: a superresolution network trained without high-resolution data.

Altekrüger and Hertrich, *WPPNets and WPPFlows: the power of Wasserstein patch priors for
superresolution*, SIAM J. Imaging Sci. 2023. A network :math:`G_\theta` is trained on
low-resolution observations :math:`y` only, plus one high-resolution reference image
whose patch distribution :math:`\nu` the reconstructions must share:

.. math::

    \min_\theta\ \mathbb{E}_y\Big[\operatorname{MSE}(A G_\theta(y), y)
    + \lambda\, W_2^2\big(\mu_{G_\theta(y)}, \nu\big)\Big].

Here :math:`G_\theta(y) = x_0 + R_\theta(x_0)` with the back-projection
:math:`x_0 = A^\top y / A^\top \mathbf 1` (aligned with the operator by construction, so
any :class:`deepinv.physics.LinearPhysics` whose :math:`A^\top\mathbf 1` has no zeros
works, whatever its factor) and :math:`R_\theta` a dilated residual CNN on the
high-resolution grid.
"""

from __future__ import annotations

import os

import deepinv as dinv
import torch
from torch import nn

from deepinv_pnn.pretrained import load_pretrained
from deepinv_pnn.validation import check_image


def check_physics(physics: object) -> None:
    """Refuse anything but a :class:`deepinv.physics.LinearPhysics` (the adjoint is needed)."""
    if not isinstance(physics, dinv.physics.LinearPhysics):
        raise TypeError(f"physics must be a deepinv.physics.LinearPhysics, got {type(physics).__name__}")


def backprojection(y: torch.Tensor, physics: dinv.physics.LinearPhysics) -> torch.Tensor:
    r"""Normalised back-projection :math:`A^\top y / A^\top \mathbf 1` (a local average of ``y``
    at the high-resolution positions the operator sees)."""
    num = physics.A_adjoint(y)
    den = physics.A_adjoint(torch.ones_like(y))
    return num / den.clamp_min(1e-3 * float(den.abs().max()))


class DilatedResidualCNN(nn.Module):
    """``x -> x + CNN(x)``: 3x3 convolutions with dilations 1, 2, 4, 8, 4, 2, 1 (receptive field 47).

    :param int channels: image channels.
    :param int features: width.
    :param tuple dilations: dilation of each hidden layer.
    """

    def __init__(self, channels: int = 1, features: int = 64, dilations: tuple = (1, 2, 4, 8, 4, 2, 1)):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, features, 3, padding=1), nn.ReLU()]
        for d in dilations:
            layers += [nn.Conv2d(features, features, 3, padding=d, dilation=d, padding_mode="circular"), nn.ReLU()]
        layers.append(nn.Conv2d(features, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class WPPNet(dinv.models.Reconstructor):
    r"""Superresolution reconstructor :math:`G_\theta(y) = x_0 + R_\theta(x_0)`, :math:`x_0 = A^\top y / A^\top\mathbf 1`.

    Trained by :mod:`deepinv_pnn.training.train_wppnet` from low-resolution data and one
    reference image (loss :math:`\operatorname{MSE}(AG(y), y) + \lambda W_2^2`).

    :param int channels: image channels.
    :param int features: width of the residual CNN.
    :param bool | str pretrained: ``True`` loads the shipped SiC x4 weights; a path loads a file.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.models import WPPNet
    >>> from deepinv_pnn.sr_physics import WPPSuperResolution
    >>> physics = WPPSuperResolution(factor=4)
    >>> WPPNet(features=8)(torch.rand(1, 1, 10, 10), physics).shape
    torch.Size([1, 1, 40, 40])
    """

    def __init__(self, channels: int = 1, features: int = 64, pretrained: bool | str | os.PathLike = False):
        super().__init__()
        self.channels = channels
        self.net = DilatedResidualCNN(channels, features)
        default = "wppnet_sic_x4.safetensors" if features == 64 else "wppnet_sic_x4_small.safetensors"
        load_pretrained(self, pretrained, default)

    def forward(self, y: torch.Tensor, physics: dinv.physics.LinearPhysics, **kwargs) -> torch.Tensor:
        r"""High-resolution reconstruction of ``y``.

        :param torch.Tensor y: ``[B, C, h, w]`` observation.
        :param deepinv.physics.LinearPhysics physics: the forward operator.
        """
        check_image(y, "y", channels=self.channels)
        check_physics(physics)
        return self.net(backprojection(y, physics))
