r"""WPPNet: a superresolution network trained without high-resolution data.

Altekrüger and Hertrich, *WPPNets and WPPFlows: the power of Wasserstein patch priors for
superresolution*, SIAM J. Imaging Sci. 2023. A network :math:`G_\theta` is trained on
low-resolution observations :math:`y` only, plus one high-resolution reference image
whose patch distribution :math:`\nu` the reconstructions must share:

.. math::

    \min_\theta\ \mathbb{E}_y\Big[\operatorname{MSE}(A G_\theta(y), y)
    + \lambda\, W_2^2\big(\mu_{G_\theta(y)}, \nu\big)\Big].

Here :math:`G_\theta(y) = x_0 + T_\theta\big(x_0, S(B_\theta(y))\big)` with the
back-projection :math:`x_0 = A^\top y / A^\top \mathbf 1` (aligned with the operator by
construction, whatever its blur and shift), :math:`B_\theta` a residual CNN on the
*low-resolution* grid, :math:`S` a sub-pixel (pixel-shuffle) upsampling to the
high-resolution grid and :math:`T_\theta` two 5x5 convolutions there. Most of the work runs
on the :math:`f^2` times smaller grid (like the asymmetric CNN of the paper's code, which
also upsamples late), so the network is wide and deep for its cost (0.11 s per 600x600
image on 2 CPU cores). The shipped SiC x4 weights reach 28.06 dB on the held-out slice,
against 26.26 dB for the earlier high-resolution-grid network of this package, which had
also been trained on the wrong reference image (see the patch-prior user guide).
"""

from __future__ import annotations

import os

import deepinv as dinv
import torch
from torch import nn

from deepinv_pnn.pretrained import load_pretrained
from deepinv_pnn.validation import check_count, check_dtype_matches, check_image, physics_must_fit


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


def checked_backprojection(y: torch.Tensor, physics: dinv.physics.LinearPhysics, channels: int, factor: int,
                           owner: str = "the network", module: nn.Module | None = None) -> torch.Tensor:
    """:func:`backprojection` after checking ``y`` (channels, finite, ``B >= 1``, the dtype of
    ``module``'s parameters if given), ``physics`` (linear, fits ``y``) and the magnification.

    :raises ValueError: if the adjoint of ``physics`` does not magnify ``y`` by ``factor``.
    """
    check_image(y, "y", channels=channels, nonempty=True)
    if module is not None:
        check_dtype_matches(module, y, "y")
    check_physics(physics)
    with physics_must_fit(y, owner):
        x0 = backprojection(y, physics)
    expected = (factor * y.shape[-2], factor * y.shape[-1])
    if tuple(x0.shape[-2:]) != expected:
        raise ValueError(
            f"{owner} was built for factor {factor}: an observation of {tuple(y.shape[-2:])} pixels needs "
            f"a physics whose adjoint gives {expected}, got {tuple(x0.shape[-2:])}"
        )
    return x0


def shipped_weights(channels: int = 1, factor: int = 4, features: int = 48, blocks: int = 6) -> str | None:
    """The shipped weights file for this architecture (SiC x4, the default one), else ``None``."""
    return "wppnet_sic_x4.safetensors" if (channels, factor, features, blocks) == (1, 4, 48, 6) else None


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    # periodic padding: the papers' operator is periodic, so are the images it observes
    return nn.Conv2d(cin, cout, k, padding=k // 2, padding_mode="circular")


class SubPixelResidualCNN(nn.Module):
    r"""``(y, x0) -> x0 + T([x0, S(B(y))])``: residual blocks on the low-resolution grid, sub-pixel upsampling by ``factor``, a 5x5 refinement on the high-resolution grid.

    :param int channels: image channels.
    :param int factor: the magnification :math:`f` (the upsampling of :math:`S`).
    :param int features: width on the low-resolution grid.
    :param int blocks: residual blocks (two 3x3 convolutions each) on the low-resolution grid.
    :param int hr_features: width of the high-resolution refinement.
    """

    def __init__(self, channels: int = 1, factor: int = 4, features: int = 48, blocks: int = 6,
                 hr_features: int = 16):
        super().__init__()
        channels, factor = check_count(channels, "channels"), check_count(factor, "factor")
        features, hr_features = check_count(features, "features"), check_count(hr_features, "hr_features")
        blocks = check_count(blocks, "blocks", minimum=0)
        self.head = _conv(channels, features, 3)
        self.blocks = nn.ModuleList(
            nn.Sequential(_conv(features, features, 3), nn.ReLU(), _conv(features, features, 3)) for _ in range(blocks)
        )
        self.upsample = nn.Sequential(nn.ReLU(), _conv(features, channels * factor**2, 3), nn.PixelShuffle(factor))
        self.refine = nn.Sequential(_conv(2 * channels, hr_features, 5), nn.ReLU(), _conv(hr_features, channels, 5))
        # the untrained network returns the back-projection
        nn.init.zeros_(self.refine[-1].weight)
        nn.init.zeros_(self.refine[-1].bias)

    def forward(self, y: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        h = self.head(y)
        for block in self.blocks:
            h = h + block(h)
        return x0 + self.refine(torch.cat([x0, self.upsample(h)], dim=1))


class WPPNet(dinv.models.Reconstructor):
    r"""Superresolution reconstructor :math:`G_\theta(y) = x_0 + T_\theta(x_0, S(B_\theta(y)))`, :math:`x_0 = A^\top y / A^\top\mathbf 1`.

    Trained by :mod:`deepinv_pnn.training.train_wppnet` from low-resolution data and one
    reference image (loss :math:`\operatorname{MSE}(AG(y), y) + \lambda W_2^2`). Works with
    any :class:`deepinv.physics.LinearPhysics` that magnifies by ``factor`` (its adjoint maps
    an ``h x w`` observation to ``factor h x factor w``) and whose :math:`A^\top\mathbf 1` has no zeros.

    :param int channels: image channels.
    :param int factor: the magnification the network is built for.
    :param int features: width on the low-resolution grid.
    :param int blocks: residual blocks on the low-resolution grid.
    :param bool | str pretrained: ``True`` loads the shipped SiC x4 weights (the default
        architecture); a path loads a file.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.models import WPPNet
    >>> from deepinv_pnn.sr_physics import WPPSuperResolution
    >>> physics = WPPSuperResolution(factor=4)
    >>> WPPNet(features=8, blocks=1)(torch.rand(1, 1, 10, 10), physics).shape
    torch.Size([1, 1, 40, 40])
    """

    def __init__(self, channels: int = 1, factor: int = 4, features: int = 48, blocks: int = 6,
                 pretrained: bool | str | os.PathLike = False):
        super().__init__()
        self.channels, self.factor = check_count(channels, "channels"), check_count(factor, "factor")
        self.net = SubPixelResidualCNN(self.channels, self.factor, features, blocks)
        load_pretrained(self, pretrained, shipped_weights(channels, factor, features, blocks))

    def forward(self, y: torch.Tensor, physics: dinv.physics.LinearPhysics, **kwargs) -> torch.Tensor:
        r"""High-resolution reconstruction of ``y``.

        :param torch.Tensor y: ``[B, C, h, w]`` observation.
        :param deepinv.physics.LinearPhysics physics: the forward operator (magnification ``factor``).
        """
        return self.net(y, checked_backprojection(y, physics, self.channels, self.factor, type(self).__name__, self))
