r"""Convex ridge regulariser (CRR-NN) :footcite:t:`goujon2023neural`.

.. math::

    R(x) = \frac{\lambda}{\mu} \sum_i \sum_k \psi_i\big(\mu (Wx)_{i,k}\big), \qquad
    \nabla R(x) = \lambda\, W^\top \varphi(\mu W x),

with :math:`\varphi_i = \psi_i'` nondecreasing, clipped linear splines (so each
:math:`\psi_i` is convex and Lipschitz), :math:`W` a zero-mean multi-convolution with
:math:`\|W\|\le 1`, and the strength :math:`\lambda` and scale :math:`\mu` learned with
the model. :math:`R` is convex; :math:`\operatorname{Lip}(\nabla R) \le \lambda\mu
\max_i \|\varphi_i'\|_\infty`.

One model serves several noise levels: the pairs :math:`(\lambda(\sigma), \mu(\sigma))`
tuned on validation images for the noise levels of :data:`SIGMA_GRID` are stored with
the weights (``lmbda_table``, ``mu_table``) and interpolated in :math:`\log\sigma`; the
noise level is deepinv's ``g_param``. Without ``g_param`` (or before tuning) the
learned :math:`(\lambda, \mu)` are used.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import nn

from deepinv_pnn.nn.multiconv import MultiConv2d
from deepinv_pnn.nn.splines import LinearSpline, frozen_spline
from deepinv_pnn.optim.ridge import RidgeRegularizer
from deepinv_pnn.pretrained import load_pretrained

#: noise levels (/255) of the tuned (lambda, mu) table
SIGMA_GRID = (5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0)
CRR_WEIGHTS = "crr_bsd400.safetensors"


def interpolate_table(sigma: torch.Tensor, grid: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation of ``log(values)`` in ``log(sigma)``, constant outside."""
    ls = torch.log(sigma.clamp_min(1e-8))
    lg = torch.log(grid)
    idx = torch.clamp(torch.searchsorted(lg, ls) - 1, 0, len(grid) - 2)
    w = ((ls - lg[idx]) / (lg[idx + 1] - lg[idx])).clamp(0, 1)
    lv = torch.log(values)
    return torch.exp(lv[idx] * (1 - w) + lv[idx + 1] * w)


def table_on_grid(grid: torch.Tensor, sigmas, values) -> torch.Tensor:
    """``values`` given at the noise levels ``sigmas``, interpolated onto ``grid`` linearly in
    ``(log sigma, log value)`` (constant outside ``sigmas``), as a tensor like ``grid``.

    :raises ValueError: unless ``sigmas`` are positive, finite and increasing, and ``values``
        (as many) positive and finite.
    """
    s, v = (np.asarray(a, dtype=float).reshape(-1) for a in (sigmas, values))
    if not (s.size == v.size >= 1):
        raise ValueError(f"sigmas and the table values must have the same length >= 1, got {s.size} and {v.size}")
    if not (np.all(np.isfinite(s)) and np.all(s > 0) and np.all(np.diff(s) > 0)):
        raise ValueError(f"sigmas must be positive, finite and increasing, got {s.tolist()}")
    if not (np.all(np.isfinite(v)) and np.all(v > 0)):
        raise ValueError(f"table values must be positive and finite, got {v.tolist()}")
    lg = np.log(grid.cpu().numpy().astype(float))
    return torch.as_tensor(np.exp(np.interp(lg, np.log(s), np.log(v))), dtype=grid.dtype)


class ConvexRidgeRegularizer(RidgeRegularizer):
    r"""Convex ridge regulariser (CRR-NN), a :class:`deepinv.optim.Prior`.

    :param tuple channels: channels of the multi-convolution (default ``(1, 8, 32)``).
    :param int kernel_size: kernel size of each convolution (default 7).
    :param int num_knots: knots of each spline (default 21).
    :param float x_range: the knots cover :math:`[-r, r]` (default 0.1).
    :param pretrained: ``True`` loads the shipped weights (BSD400), a path loads a file,
        ``None``/``False`` keeps the initialisation.
    :param torch.Tensor mask: optional spatial mask, see :class:`RidgeRegularizer`.
    :param torch.nn.Module mask_net: optional mask network.
    :param device: device of the parameters.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.optim import ConvexRidgeRegularizer
    >>> prior = ConvexRidgeRegularizer(channels=(1, 4, 8), kernel_size=5)
    >>> x = torch.rand(2, 1, 16, 16)
    >>> prior(x).shape, prior.grad(x).shape, prior.prox(x, gamma=0.5).shape
    (torch.Size([2]), torch.Size([2, 1, 16, 16]), torch.Size([2, 1, 16, 16]))
    """

    weak_convexity = 0.0

    def __init__(
        self,
        channels: tuple = (1, 8, 32),
        kernel_size: int = 7,
        num_knots: int = 21,
        x_range: float = 0.1,
        pretrained: bool | str | os.PathLike | None = None,
        mask: torch.Tensor | None = None,
        mask_net: nn.Module | None = None,
        device: str | torch.device = "cpu",
    ):
        super().__init__(MultiConv2d(channels, kernel_size), mask=None, mask_net=mask_net)
        self.spline = LinearSpline(
            channels[-1], num_knots, x_range, init="soft-clip", slope_min=0.0, clip_ends=True
        )
        self.log_lmbda = nn.Parameter(torch.tensor(math.log(5.0)))
        self.log_mu = nn.Parameter(torch.tensor(math.log(10.0)))
        grid = torch.tensor(SIGMA_GRID, dtype=torch.float32) / 255
        self.register_buffer("sigma_grid", grid)
        self.register_buffer("lmbda_table", torch.full_like(grid, float("nan")))
        self.register_buffer("mu_table", torch.full_like(grid, float("nan")))
        self.register_buffer("sigma_train", torch.tensor(float("nan")))
        load_pretrained(self, pretrained, CRR_WEIGHTS)
        if mask is not None:
            self.set_mask(mask)
        self.to(device)

    # -------------------------------------------------------------- params
    @property
    def lmbda(self) -> torch.Tensor:
        """The learned strength :math:`\\lambda`."""
        return self.log_lmbda.exp()

    @property
    def mu(self) -> torch.Tensor:
        """The learned scale :math:`\\mu`."""
        return self.log_mu.exp()

    def tuned(self) -> bool:
        """Whether the (lambda, mu) table has been tuned."""
        return bool(torch.isfinite(self.lmbda_table).all())

    def parameters_for(self, sigma: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`(\lambda, \mu)` for each noise level in ``sigma`` (``[N]``), or the learned pair."""
        if sigma is None or not self.tuned():
            return self.lmbda, self.mu
        grid = self.sigma_grid.to(sigma)
        lmbda = interpolate_table(sigma, grid, self.lmbda_table.to(sigma))
        mu = interpolate_table(sigma, grid, self.mu_table.to(sigma))
        return lmbda.view(-1, 1, 1, 1), mu.view(-1, 1, 1, 1)

    def set_table(self, sigmas, lmbdas, mus) -> None:
        """Store tuned :math:`(\\lambda, \\mu)` for noise levels ``sigmas`` (interpolated onto the grid)."""
        lmbda, mu = (table_on_grid(self.sigma_grid, sigmas, v) for v in (lmbdas, mus))  # both checked first
        self.lmbda_table.copy_(lmbda)
        self.mu_table.copy_(mu)

    # ---------------------------------------------------------- potentials
    def activation(self, z: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        lmbda, mu = self.parameters_for(sigma)
        return lmbda.to(z.dtype) * self.spline._value(mu.to(z.dtype) * z)  # z comes from a checked x

    @torch.no_grad()
    def _activation_operator(self, sigma: torch.Tensor | None, like: torch.Tensor):
        lmbda, mu = self.parameters_for(sigma)
        spline = self.spline
        group = torch.arange(spline.num_activations, device=like.device).view(1, -1, 1, 1)
        return frozen_spline(spline.projected_coefficients().to(like.dtype), -spline.x_range, spline.h,
                             group=group, pre=mu.detach().to(like.dtype), post=lmbda.detach().to(like.dtype))

    def potential(self, z: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        lmbda, mu = self.parameters_for(sigma)
        lmbda, mu = lmbda.to(z.dtype), mu.to(z.dtype)
        return lmbda / mu * self.spline._potential(mu * z)

    def activation_lipschitz(self, sigma: torch.Tensor | None) -> torch.Tensor:
        lmbda, mu = self.parameters_for(sigma)
        slope = self.spline.slopes().max()
        return (lmbda * mu).reshape(-1) * slope.clamp_min(0)

    @torch.no_grad()
    def prune(self, threshold: float = 1e-4) -> int:
        r"""Remove dead (filter, spline) pairs, keeping :math:`\nabla R` unchanged up to rounding.

        A pair is dead when :math:`\mathrm{TV}^{(2)}(\varphi_i)\,\|h_i\|^2 \le` ``threshold``
        (relative to the largest), :math:`h_i` the impulse response of filter :math:`i`: its
        spline is (almost) constant, or its filter vanishes. Removing filters lowers the
        norm bound of :math:`W`, i.e. rescales the kept filters by :math:`r > 1`; this is
        compensated exactly by :math:`\lambda \to \lambda/r`, :math:`\mu \to \mu/r` (also in
        the tuned table).

        :param float threshold: relative importance below which a pair is removed.
        :return: the number of pairs kept.
        """
        scores = self.spline.tv2_per_channel() * self.conv.impulse_response().flatten(1).pow(2).sum(1)
        keep = torch.nonzero(scores > threshold * scores.max()).flatten()
        if keep.numel() == 0:
            keep = scores.argmax().view(1)
        bound_old = self.conv.norm_bound()
        self.conv.keep_output_channels(keep)
        self.spline.keep(keep)
        r = float(bound_old / self.conv.norm_bound())
        self.log_lmbda.sub_(math.log(r))
        self.log_mu.sub_(math.log(r))
        self.lmbda_table.div_(r)
        self.mu_table.div_(r)
        return int(keep.numel())
