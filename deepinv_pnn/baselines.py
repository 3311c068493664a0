"""Total-variation baselines: deepinv's TV denoiser and prior with input checks.

They are the reference entries of the registry (``tv-denoiser``, ``tv-prior``) that
every learned component is compared with in the demo and the benchmarks.
"""

from __future__ import annotations

import deepinv as dinv
import torch

from deepinv_pnn.validation import check_count, check_image, check_positive, check_sigma


class TVDenoiser(dinv.models.TVDenoiser):
    r"""Isotropic TV denoiser :math:`\operatorname{argmin}_x \tfrac12\|x-y\|^2 + \gamma\|Dx\|_{1,2}`.

    deepinv's :class:`deepinv.models.TVDenoiser` with input checks; the noise level
    passed to ``forward`` is the threshold :math:`\gamma` (scaled by ``scale``).

    :param float scale: :math:`\gamma = \text{scale}\cdot\sigma`.
    :param int n_it_max: maximum number of inner iterations.
    :param float crit: relative tolerance of the inner solver.
    :param bool warm_start: start the inner solver from the previous call's solution
        (faster inside iterative schemes, but two calls with the same input may then
        differ slightly); off by default so that the denoiser is a deterministic map.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.baselines import TVDenoiser
    >>> TVDenoiser()(torch.rand(1, 1, 16, 16), 0.1).shape
    torch.Size([1, 1, 16, 16])
    """

    def __init__(
        self, scale: float = 1.0, n_it_max: int = 1000, crit: float = 1e-5, warm_start: bool = False
    ):
        check_positive(scale, "scale", allow_zero=True)
        check_positive(crit, "crit", allow_zero=True)
        super().__init__(n_it_max=check_count(n_it_max, "n_it_max"), crit=crit)
        self.scale = scale
        self.warm_start = warm_start

    def forward(self, y: torch.Tensor, sigma: float | torch.Tensor = 0.1, **kwargs) -> torch.Tensor:
        check_image(y, "y")
        check_sigma(sigma)
        ths = self._handle_sigma(sigma, reference_tensor=y).flatten() * self.scale
        if not self.warm_start:
            self.restart = True
        return super().forward(y, ths=ths)


class TVPrior(dinv.optim.TVPrior):
    r"""Isotropic total variation :math:`g(x) = \|Dx\|_{1,2}` with input checks.

    deepinv's :class:`deepinv.optim.TVPrior`; ``prox`` solves the TV denoising problem
    to a relative tolerance of ``def_crit``.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.baselines import TVPrior
    >>> TVPrior()(torch.rand(2, 1, 8, 8)).shape
    torch.Size([2])
    """

    def fn(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        check_image(x, nonempty=True)
        # vector_norm's derivative at 0 is 0 (a subgradient); sqrt(sum(.^2)) would give NaN.
        norms = torch.linalg.vector_norm(self.nabla(x), dim=-1)
        return norms.reshape(x.shape[0], -1).sum(-1)

    def grad(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        check_image(x, nonempty=True)
        return super().grad(x, *args, **kwargs)

    def prox(self, x: torch.Tensor, *args, gamma: float = 1.0, **kwargs) -> torch.Tensor:
        check_image(x, nonempty=True)
        check_sigma(gamma, "gamma")
        return super().prox(x, *args, gamma=gamma, **kwargs)
