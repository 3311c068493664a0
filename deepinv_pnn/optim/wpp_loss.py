r"""The Wasserstein patch loss of a whole batch, for training networks (WPPNets, WPPFlows).

Reference: Altekrüger & Hertrich, "WPPNets and WPPFlows: the power of Wasserstein patch
priors for superresolution", SIAM J. Imaging Sci. 2023.
"""

from __future__ import annotations

import torch

from deepinv_pnn.nn import semidual
from deepinv_pnn.optim.wpp import WassersteinPatchPrior
from deepinv_pnn.validation import check_image

__all__ = ["WassersteinPatchLoss"]


class WassersteinPatchLoss(torch.nn.Module):
    r"""Training loss :math:`\sum_s w_s W_2^2(\mu_s, \nu_s)` between the patches of a whole batch
    (pooled into one empirical measure) and a reference, as in WPPNets.

    One potential :math:`\psi_s` is kept and warm-started across calls (``psi_iters``
    averaged ascent steps per call on the detached batch); the returned value is
    differentiable with respect to the images.

    :param torch.Tensor reference_images: ``[R, C, H, W]`` reference image(s).
    :param int patch_size: side of the patches.
    :param int n_scales: scales of the Gaussian pyramid.
    :param int n_reference_patches: random reference patches per scale.
    :param int psi_iters: ascent steps per call.
    :param bool center: subtract each patch's mean.
    :param float memory_budget_mb: MiB of cost matrix allowed at once.
    :param int n_patches: random patches per image and call (new positions at every call);
        ``None`` uses all patches.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.optim.wpp_loss import WassersteinPatchLoss
    >>> loss = WassersteinPatchLoss(torch.rand(1, 1, 40, 40), n_reference_patches=200)
    >>> loss(torch.rand(4, 1, 16, 16)).shape
    torch.Size([])
    """

    def __init__(self, reference_images, patch_size: int = 6, n_scales: int = 1, n_reference_patches: int = 10000,
                 psi_iters: int = 20, psi_lr: float = 1.0, center: bool = False, memory_budget_mb: float = 256.0,
                 use_keops: bool | str = "auto", seed: int = 0, n_patches: int | None = None):
        super().__init__()
        self.prior = WassersteinPatchPrior(
            reference_images, patch_size=patch_size, n_scales=n_scales, n_reference_patches=n_reference_patches,
            n_patches=n_patches, psi_iters=psi_iters, psi_lr=psi_lr, center=center, memory_budget_mb=memory_budget_mb,
            use_keops=use_keops, seed=seed,
        )
        self.psi: dict[int, torch.Tensor] = {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The loss of a batch ``[B, C, H, W]`` (``B >= 1``), differentiable with respect to it."""
        prior = self.prior
        check_image(images, "images", channels=prior.channels, nonempty=True)
        if prior.n_patches is not None:  # fresh random patch positions at every call
            prior._positions.clear()
            prior.seed = prior.seed + 1
        total = images.new_zeros(())
        for s, patches in prior._scales(images):
            pooled = patches.reshape(-1, patches.shape[-1])
            ref = prior.reference(s).to(device=images.device, dtype=images.dtype)
            psi = self.psi.get(s)
            if psi is None or psi.device != images.device or psi.dtype != images.dtype:
                psi = torch.zeros(ref.shape[0], dtype=images.dtype, device=images.device)
            psi = semidual.ascend_dual(pooled.detach(), ref, psi, prior.psi_iters, prior.psi_lr,
                                       prior.memory_budget, prior.use_keops)
            self.psi[s] = psi
            total = total + prior.scale_weights[s] * semidual.semidual_value(
                pooled, ref, psi, prior.memory_budget, prior.use_keops)
        return total
