r"""Weakly convex ridge regulariser (WCRR-NN) :footcite:t:`goujon2024learning`.

.. math::

    R_\sigma(x) = \sum_i \sum_k \frac{1}{s_i(\sigma)^2}\,
    \psi\big(s_i(\sigma)\,(Wx)_{i,k}\big), \qquad
    \psi = \mu\,\psi_+ - \psi_-,

with :math:`\psi_\pm` convex, :math:`\psi_\pm'' = \varphi_\pm' \in [0, 1]` (linear splines
with slopes projected onto :math:`[0,1]`, :math:`\varphi_-` clipped), so
:math:`\psi'' \ge -1`; since :math:`\|W\| \le 1`, :math:`R_\sigma + \tfrac12\|\cdot\|^2` is
convex (:math:`R_\sigma` is 1-weakly convex) and the denoiser
:math:`\operatorname{argmin}_x \tfrac12\|x-y\|^2 + R_\sigma(x)` solves a convex problem.
The noise-level conditioning is :math:`s_i(\sigma) = e^{\theta_i(\sigma)}/(\sigma+\epsilon)`
with :math:`\theta_i` a learned linear spline of :math:`\sigma` per channel. The
noise level is deepinv's ``g_param`` (default: ``sigma_default``).

Calibration table (optional, like the CRR-NN's :math:`(\lambda(\sigma), \mu(\sigma))`): a
noise factor :math:`c(\sigma)` and a convex-part factor :math:`m(\sigma)`, tuned on
validation images for the noise levels of :data:`~deepinv_pnn.optim.ridge_convex.SIGMA_GRID`
and interpolated in :math:`\log\sigma`, give

.. math::

    R_\sigma(x) = \sum_i \sum_k \frac{1}{s_i^2}\,\big(m(\sigma)\,\mu\,\psi_+ - \psi_-\big)
    \big(s_i\,(Wx)_{i,k}\big), \qquad s_i = s_i\big(c(\sigma)\,\sigma\big).

Both factors keep :math:`\psi'' \ge -1` (they scale the input of :math:`s_i` and the convex
part only), so every calibrated :math:`R_\sigma` is still 1-weakly convex; a plain strength
:math:`\gamma R_\sigma` with :math:`\gamma > 1` would not be. Before tuning (``NaN`` table)
both factors are 1.

The slope constraints are imposed by clamping, whose gradient vanishes on the boundary
(``torch.clamp`` passes no gradient at ``min`` or ``max``). Both splines are initialised on
the boundary (slopes 0 or 1), so with a plain clamp :math:`\varphi_-` never receives a
gradient and the model stays convex. :class:`~deepinv_pnn.nn.splines.LinearSpline` projects
with :func:`~deepinv_pnn.nn.splines.clamp_closed`, which passes the gradient on the closed
interval, and :meth:`WeaklyConvexRidgeRegularizer.project_` writes
the projected coefficients back after each optimiser step (projected gradient).
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

from deepinv_pnn.nn.multiconv import MultiConv2d
from deepinv_pnn.nn.splines import LinearSpline, frozen_spline
from deepinv_pnn.optim.ridge import RidgeRegularizer
from deepinv_pnn.optim.ridge_convex import SIGMA_GRID, interpolate_table, table_on_grid
from deepinv_pnn.pretrained import load_pretrained
from deepinv_pnn.validation import check_positive

WCRR_WEIGHTS = "wcrr_bsd400.safetensors"
_EPS = 1e-5


class WeaklyConvexRidgeRegularizer(RidgeRegularizer):
    r"""Weakly convex ridge regulariser (WCRR-NN), a :class:`deepinv.optim.Prior`.

    :param tuple channels: channels of the multi-convolution (default ``(1, 4, 8, 60)``).
    :param int kernel_size: kernel size of each convolution (default 5).
    :param int num_knots: knots of :math:`\varphi_\pm` (default 201).
    :param float x_range: the knots of :math:`\varphi_\pm` cover :math:`[-r, r]` (default 8).
    :param float sigma_default: noise level used when no ``g_param`` is given (default 25/255).
    :param pretrained: ``True`` loads the shipped weights, a path loads a file.
    :param torch.Tensor mask: optional spatial mask, see :class:`RidgeRegularizer`.
    :param torch.nn.Module mask_net: optional mask network.
    :param device: device of the parameters.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.optim import WeaklyConvexRidgeRegularizer
    >>> prior = WeaklyConvexRidgeRegularizer(channels=(1, 4, 8), kernel_size=3)
    >>> x = torch.rand(1, 1, 16, 16)
    >>> prior(x, 0.1).shape, prior.prox(x, 0.1, gamma=1.0).shape
    (torch.Size([1]), torch.Size([1, 1, 16, 16]))
    """

    weak_convexity = 1.0

    def __init__(
        self,
        channels: tuple = (1, 4, 8, 60),
        kernel_size: int = 5,
        num_knots: int = 201,
        x_range: float = 8.0,
        sigma_default: float = 25 / 255,
        pretrained: bool | str | os.PathLike | None = None,
        mask: torch.Tensor | None = None,
        mask_net: nn.Module | None = None,
        device: str | torch.device = "cpu",
    ):
        super().__init__(MultiConv2d(channels, kernel_size), mask=None, mask_net=mask_net)
        self.phi_plus = LinearSpline(1, num_knots, x_range, init="soft-clip", slope_min=0.0, slope_max=1.0)
        self.phi_minus = LinearSpline(
            1, num_knots, x_range, init="zero", slope_min=0.0, slope_max=1.0, clip_ends=True
        )
        self.log_mu = nn.Parameter(torch.tensor(math.log(1.0)))
        # theta_i(sigma): log of the channel scaling times sigma, a spline of sigma on [-0.25, 0.25];
        # LinearSpline pins theta_i(0) = 0, so it starts at 0 (s_i = 1/sigma) and only its values at
        # the knots sigma != 0 can move (a constant fill of the coefficients would change nothing)
        self.scaling = LinearSpline(channels[-1], 21, 0.25, init="zero")
        self.sigma_default = check_positive(sigma_default, "sigma_default", allow_zero=True)
        grid = torch.tensor(SIGMA_GRID, dtype=torch.float32) / 255
        self.register_buffer("sigma_grid", grid, persistent=False)
        # calibration factors c(sigma), m(sigma) on the grid; NaN: not tuned (both 1)
        self.register_buffer("noise_factor_table", torch.full_like(grid, float("nan")))
        self.register_buffer("mu_factor_table", torch.full_like(grid, float("nan")))
        load_pretrained(self, pretrained, WCRR_WEIGHTS)
        if mask is not None:
            self.set_mask(mask)
        self.to(device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # files written before the calibration table existed load as "not tuned"
        for name in ("noise_factor_table", "mu_factor_table"):
            state_dict.setdefault(prefix + name, torch.full_like(getattr(self, name), float("nan")))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def tuned(self) -> bool:
        r"""Whether the calibration table :math:`(c(\sigma), m(\sigma))` has been tuned."""
        return bool(torch.isfinite(self.noise_factor_table).all() and torch.isfinite(self.mu_factor_table).all())

    def set_table(self, sigmas, noise_factors, mu_factors) -> None:
        r"""Store tuned factors :math:`c, m > 0` for noise levels ``sigmas`` (interpolated onto the
        grid in :math:`\log\sigma`, constant outside the given levels).

        :param sigmas: noise levels (in [0, 1] units), increasing.
        :param noise_factors: :math:`c(\sigma)` at those levels.
        :param mu_factors: :math:`m(\sigma)` at those levels.
        """
        # table_on_grid checks the levels and factors; both are checked before either is stored
        c, m = (table_on_grid(self.sigma_grid, sigmas, v) for v in (noise_factors, mu_factors))
        self.noise_factor_table.copy_(c)
        self.mu_factor_table.copy_(m)

    def calibration(self, sigma: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
        r"""The factors :math:`(c(\sigma), m(\sigma))` per entry of ``sigma`` (``[N]``), or
        ``(None, None)`` without a noise level or before tuning."""
        if sigma is None or not self.tuned():
            return None, None
        sigma = sigma.reshape(-1)
        grid = self.sigma_grid.to(sigma)
        return (interpolate_table(sigma, grid, self.noise_factor_table.to(sigma)),
                interpolate_table(sigma, grid, self.mu_factor_table.to(sigma)))

    def project_(self) -> None:
        """Project the spline coefficients onto their constraints in place (after an optimiser step)."""
        self.phi_plus.project_()
        self.phi_minus.project_()

    @property
    def mu(self) -> torch.Tensor:
        r"""The weight :math:`\mu` of the convex part."""
        return self.log_mu.exp()

    def channel_scaling(self, sigma: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        r""":math:`s_i(c(\sigma)\,\sigma)`, shape ``[N or 1, C_out, 1, 1]``."""
        return self._calibrated(sigma, like)[0]

    def _noise_level(self, sigma: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """``sigma`` in the dtype of ``like``, or ``sigma_default`` when it is ``None``."""
        if sigma is None:
            return torch.full((1,), self.sigma_default, dtype=like.dtype, device=like.device)
        return sigma.to(like.dtype)

    def _calibrated(self, sigma: torch.Tensor | None, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The channel scalings :math:`s_i(c(\sigma)\sigma)` ``[N or 1, C_out, 1, 1]`` and the
        convex-part weight :math:`m(\sigma)\mu` (a scalar or ``[N, 1, 1]``), the table read once."""
        sigma = self._noise_level(sigma, like).view(-1, 1)
        mu = self.mu.to(like.dtype)
        factor, mu_factor = self.calibration(sigma)
        if factor is not None:
            sigma = sigma * factor.view(-1, 1)
            mu = mu * mu_factor.view(-1, 1, 1)
        theta = self.scaling._value(sigma.expand(-1, self.scaling.num_activations).contiguous())
        return (theta.exp() / (sigma + _EPS)).view(sigma.shape[0], -1, 1, 1), mu

    def _profile(self, u: torch.Tensor, potential: bool, mu: torch.Tensor) -> torch.Tensor:
        shape = u.shape
        flat = u.reshape(shape[0], 1, -1)
        if potential:
            out = mu * self.phi_plus._potential(flat) - self.phi_minus._potential(flat)
        else:  # u comes from a checked image: the splines skip their own input check
            out = mu * self.phi_plus._value(flat) - self.phi_minus._value(flat)
        return out.reshape(shape)

    def activation(self, z: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        s, mu = self._calibrated(sigma, z)
        return self._profile(s * z, potential=False, mu=mu) / s

    @torch.no_grad()
    def _activation_operator(self, sigma: torch.Tensor | None, like: torch.Tensor):
        # phi(z) = (m mu phi_+ - phi_-)(s z) / s: phi_+ and phi_- share their knots, so the profile
        # is one spline whose table is m mu c_+ - c_- (one row per sample when m mu varies)
        s, mu = self._calibrated(sigma, like)
        plus, minus = self.phi_plus, self.phi_minus
        if (plus.num_knots, plus.x_range) != (minus.num_knots, minus.x_range):
            return super()._activation_operator(sigma, like)
        table = mu.reshape(-1, 1) * plus.projected_coefficients().to(like.dtype) \
            - minus.projected_coefficients().to(like.dtype)
        group = None if table.shape[0] == 1 else torch.arange(table.shape[0], device=like.device).view(-1, 1, 1, 1)
        return frozen_spline(table, -plus.x_range, plus.h, group=group, pre=s, post=1.0 / s)

    def potential(self, z: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        s, mu = self._calibrated(sigma, z)
        return self._profile(s * z, potential=True, mu=mu) / s**2

    def activation_lipschitz(self, sigma: torch.Tensor | None) -> torch.Tensor:
        # psi'' = m mu phi_+' - phi_-' lies in [-max phi_-', m mu max phi_+']
        _, factor = self.calibration(self._noise_level(sigma, self.log_mu))
        mu = self.mu if factor is None else self.mu * factor.max()
        upper = mu * self.phi_plus.slopes().max().clamp_min(0)
        lower = self.phi_minus.slopes().max().clamp_min(0)
        return torch.maximum(upper, lower).reshape(-1)
