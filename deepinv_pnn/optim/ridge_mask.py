r"""Spatial masks for data-dependent ridge regularisation :footcite:t:`neumayer2024stability`.

The masked regulariser is :math:`R_M(x) = \sum_{i,k} M_k\, \psi_i((Wx)_{i,k})` with
:math:`M = M(y) \ge 0` computed from the observation (in the image domain, e.g.
:math:`A^\top y`). For a fixed mask the convexity guarantees of the unmasked model are
kept; the mask lowers the regularisation where the observation shows structure (edges)
and keeps it in flat regions. Use with ``prior = ConvexRidgeRegularizer(mask_net=...)`` and
``prior.condition_on(physics.A_adjoint(y))``.

- :class:`EdgeMask`: :math:`M = m_0 + (1 - m_0)/(1 + |\nabla (G * u)|^2/\kappa^2)`, a
  two-parameter mask (edge-stopping function of the smoothed observation, learnable
  :math:`\kappa`, :math:`m_0`).
- :class:`RidgeMaskNet`: a small CNN :math:`u \mapsto 2\,\mathrm{sigmoid}(f_\theta(u))`,
  with values in :math:`(0, 2)`, for training end to end.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from deepinv_pnn.validation import check_image


class EdgeMask(nn.Module):
    r"""Edge-stopping mask :math:`M = m_0 + (1-m_0)/(1 + |\nabla(G_s * u)|^2/\kappa^2)`.

    :param float kappa: edge scale :math:`\kappa`.
    :param float floor: minimum :math:`m_0 \in [0, 1]` of the mask.
    :param float smoothing: standard deviation :math:`s` of the Gaussian pre-smoothing (pixels).

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.optim.ridge_mask import EdgeMask
    >>> m = EdgeMask()(torch.rand(1, 1, 16, 16))
    >>> m.shape, bool((m > 0).all() and (m <= 1).all())
    (torch.Size([1, 1, 16, 16]), True)
    """

    def __init__(self, kappa: float = 0.05, floor: float = 0.2, smoothing: float = 1.0):
        super().__init__()
        if kappa <= 0 or not 0 <= floor <= 1 or smoothing < 0:
            raise ValueError(f"need kappa > 0, floor in [0, 1], smoothing >= 0; got {kappa}, {floor}, {smoothing}")
        self.log_kappa = nn.Parameter(torch.tensor(math.log(kappa)))
        self.logit_floor = nn.Parameter(torch.logit(torch.tensor(min(max(floor, 1e-4), 1 - 1e-4))))
        self.smoothing = smoothing

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        check_image(u, "y")
        u = u.mean(1, keepdim=True)
        if self.smoothing > 0:
            r = max(1, int(math.ceil(3 * self.smoothing)))
            t = torch.arange(-r, r + 1, dtype=u.dtype, device=u.device)
            g = torch.exp(-(t**2) / (2 * self.smoothing**2))
            g = g / g.sum()
            u = F.conv2d(F.pad(u, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
            u = F.conv2d(F.pad(u, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1))
        dx = F.pad(u[..., :, 1:] - u[..., :, :-1], (0, 1, 0, 0))
        dy = F.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1))
        kappa = self.log_kappa.exp().to(u.dtype)
        floor = torch.sigmoid(self.logit_floor).to(u.dtype)
        return floor + (1 - floor) / (1 + (dx**2 + dy**2) / kappa**2)


class RidgeMaskNet(nn.Module):
    r"""Small CNN mask :math:`M(u) = 2\,\mathrm{sigmoid}(f_\theta(u))`, initialised at :math:`M \equiv 1`.

    :param int hidden: hidden channels.
    :param int depth: number of 3x3 convolutions.
    :param int out_channels: 1 (one mask for all filters) or the number of filters.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.optim.ridge_mask import RidgeMaskNet
    >>> m = RidgeMaskNet()(torch.rand(2, 1, 16, 16))
    >>> m.shape, bool(torch.allclose(m, torch.ones_like(m)))
    (torch.Size([2, 1, 16, 16]), True)
    """

    def __init__(self, hidden: int = 16, depth: int = 3, out_channels: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        c = 1
        for _ in range(depth - 1):
            layers += [nn.Conv2d(c, hidden, 3, padding=1, padding_mode="replicate"), nn.SiLU()]
            c = hidden
        last = nn.Conv2d(c, out_channels, 3, padding=1, padding_mode="replicate")
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        check_image(u, "y")
        return 2 * torch.sigmoid(self.net(u.mean(1, keepdim=True)))
