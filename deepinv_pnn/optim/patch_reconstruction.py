r"""Per-image variational reconstruction with a patch prior, minimised by Adam.

.. math::

    \hat x = \operatorname{argmin}_x\ \frac1m\|Ax - y\|^2 + \lambda\, g(x),

with :math:`m` the number of measurements per image (patch priors are *means* over
patches, so the mean-squared data term keeps :math:`\lambda` independent of the image size;
the WPP paper's weight corresponds to :math:`\lambda \approx 0.013` for two scales, patchNR's
to :math:`\lambda \approx 7 \cdot 10^{-6}`),

the way the WPP and patchNR papers reconstruct (Adam on the image, the prior's internal
state — WPP's dual potentials, patchNR's random patch subsets — refreshed at every step).
deepinv's optimisers assume a fixed, deterministic prior; this reconstructor does not.
"""

from __future__ import annotations

import deepinv as dinv
import torch

from deepinv_pnn.models.wppnet import backprojection, check_physics
from deepinv_pnn.validation import (
    check_count,
    check_image,
    check_image_fits,
    check_positive,
    physics_must_fit,
)


class AdamPatchReconstructor(dinv.models.Reconstructor):
    r"""Minimise :math:`\|Ax - y\|^2 + \lambda g(x)` per image by Adam from the back-projection.

    :param deepinv.optim.Prior prior: e.g. :class:`deepinv_pnn.optim.WassersteinPatchPrior`
        or :class:`deepinv_pnn.optim.PatchNR` (its ``fn`` must return ``(B,)``).
    :param float lambda_reg: :math:`\lambda`.
    :param int steps: Adam iterations.
    :param float lr: Adam step.
    :param bool clamp: clip the iterate to :math:`[0, 1]` after each step.
    :param int average_from: if set, return the running mean of the iterates from this step on
        (Polyak-Ruppert averaging) instead of the last iterate. With stochastic priors
        (random patch subsets redrawn at each step) the iterates jitter around the solution;
        their mean is closer to it and no longer depends on the exact number of steps.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.baselines import TVPrior
    >>> from deepinv_pnn.optim.patch_reconstruction import AdamPatchReconstructor
    >>> from deepinv_pnn.sr_physics import WPPSuperResolution
    >>> model = AdamPatchReconstructor(TVPrior(), lambda_reg=0.01, steps=5)
    >>> model(torch.rand(1, 1, 8, 8), WPPSuperResolution(4)).shape
    torch.Size([1, 1, 32, 32])
    """

    def __init__(self, prior: torch.nn.Module, lambda_reg: float, steps: int = 500, lr: float = 0.01,
                 clamp: bool = False, average_from: int | None = None):
        super().__init__()
        if not isinstance(prior, dinv.optim.Prior):
            raise TypeError(f"prior must be a deepinv.optim.Prior (with fn), got {type(prior).__name__}")
        self.prior = prior
        self.lambda_reg = check_positive(lambda_reg, "lambda_reg", allow_zero=True)
        self.steps = check_count(steps, "steps")
        self.lr = check_positive(lr, "lr")
        self.clamp = clamp
        if average_from is not None and not 1 <= int(average_from) <= self.steps:
            raise ValueError(f"average_from must be in [1, steps={self.steps}], got {average_from}")
        self.average_from = None if average_from is None else int(average_from)

    def forward(self, y: torch.Tensor, physics: dinv.physics.LinearPhysics, init: torch.Tensor | None = None,
                **kwargs) -> torch.Tensor:
        """Reconstruct ``y``; ``init`` defaults to the normalised back-projection."""
        x = self._start(y, physics, init)
        optimizer = torch.optim.Adam([x], lr=self.lr)
        mean, count = None, 0
        with torch.enable_grad():
            for step in range(1, self.steps + 1):
                optimizer.zero_grad(set_to_none=True)
                loss = ((physics.A(x) - y) ** 2).flatten(1).mean(1).sum()
                if self.lambda_reg:
                    loss = loss + self.lambda_reg * self.prior.fn(x).sum()
                loss.backward()
                optimizer.step()
                if self.clamp:
                    with torch.no_grad():
                        x.clamp_(0, 1)
                if self.average_from is not None and step >= self.average_from:
                    count += 1
                    mean = x.detach().clone() if mean is None else mean.add_(x.detach() - mean, alpha=1.0 / count)
        return x.detach() if mean is None else mean

    def _start(self, y: torch.Tensor, physics: dinv.physics.Physics, init: torch.Tensor | None) -> torch.Tensor:
        """The starting point, after checking ``y``, ``physics`` and ``init``."""
        check_image(y, "y", nonempty=True)
        if init is None:
            check_physics(physics)
            with physics_must_fit(y, type(self).__name__):
                init = backprojection(y, physics)
        else:
            if not isinstance(physics, dinv.physics.Physics):
                raise TypeError(f"physics must be a deepinv.physics.Physics, got {type(physics).__name__}")
            check_image(init, "init", channels=y.shape[1])
            check_image_fits(y, physics, init, type(self).__name__, "init")
        return init.detach().clone().requires_grad_(True)
