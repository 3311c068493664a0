r"""The proximal operator of a ridge regulariser as a :class:`deepinv.models.Denoiser`.

.. math::

    D_\sigma(y) = \operatorname{argmin}_x \tfrac12\|x - y\|^2 + R_\sigma(x),

where :math:`R_\sigma` is a :class:`~deepinv_pnn.optim.ConvexRidgeRegularizer` with the
:math:`(\lambda(\sigma), \mu(\sigma))` tuned for the noise level :math:`\sigma`, or a
:class:`~deepinv_pnn.optim.WeaklyConvexRidgeRegularizer` conditioned on :math:`\sigma`.
For a CRR the denoiser is the proximal operator of a convex function, hence firmly
nonexpansive, so plug-and-play schemes that use it converge
:footcite:t:`goujon2023neural`; for a WCRR the objective is convex and the denoiser is
the proximal operator of a 1-weakly convex function.
"""

from __future__ import annotations

import deepinv as dinv
import torch

from deepinv_pnn.optim.ridge import RidgeRegularizer
from deepinv_pnn.validation import check_count, check_image, check_positive, check_sigma


class RidgeDenoiser(dinv.models.Denoiser):
    r"""Denoiser :math:`D_\sigma = \operatorname{prox}_{R_\sigma}` of a ridge regulariser.

    :param RidgeRegularizer prior: the regulariser.
    :param float tol: relative tolerance of the inner accelerated gradient solver.
    :param int max_iter: maximum number of inner iterations.
    :param float strength: multiplies the regulariser (:math:`\gamma` of the prox).

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.optim import ConvexRidgeRegularizer
    >>> from deepinv_pnn.models import RidgeDenoiser
    >>> denoiser = RidgeDenoiser(ConvexRidgeRegularizer(channels=(1, 4, 8), kernel_size=5))
    >>> denoiser(torch.rand(1, 1, 37, 31), 0.1).shape
    torch.Size([1, 1, 37, 31])
    """

    def __init__(
        self, prior: RidgeRegularizer, tol: float = 1e-5, max_iter: int = 1000, strength: float = 1.0
    ):
        super().__init__()
        if not isinstance(prior, RidgeRegularizer):
            raise TypeError(f"prior must be a RidgeRegularizer, got {type(prior).__name__}")
        self.prior = prior
        self.tol = None if tol is None else check_positive(tol, "tol", allow_zero=True)
        self.max_iter = None if max_iter is None else check_count(max_iter, "max_iter")
        self.strength = check_positive(strength, "strength", allow_zero=True)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor = 0.1, **kwargs) -> torch.Tensor:
        r"""Denoise ``x`` (``[B, C, H, W]``) at noise level ``sigma`` (float, 0-d or ``[B]``)."""
        check_image(x, "x")
        check_sigma(sigma, "sigma")
        sig = self._handle_sigma(sigma, reference_tensor=x).reshape(-1)
        if sig.numel() == 1:
            sig = sig.expand(x.shape[0])
        sig = sig.detach().clamp_min(1e-4)
        return self.prior.prox(
            x, sig, gamma=self.strength, tol=self.tol, max_iter=self.max_iter
        )
