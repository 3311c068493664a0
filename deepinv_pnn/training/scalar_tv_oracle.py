r"""The oracle-best scalar TV: the reference of the TV parameter-map acceptance.

For a known ground truth, :math:`\lambda` of
:math:`\operatorname{argmin}_x \tfrac12\|Ax-y\|^2 + \lambda\,\mathrm{TV}(x)` is tuned on the
image itself (a grid search), so no scalar-TV method can do better on that image.
"""

from __future__ import annotations

import deepinv as dinv
import torch

from deepinv_pnn.models.unrolled_pdhg import UnrolledPDHG
from deepinv_pnn.optim.weighted_tv import weighted_tv_denoise


def scalar_tv(y: torch.Tensor, physics, lambdas: torch.Tensor, n_iter: int = 600) -> torch.Tensor:
    r"""Scalar-TV reconstructions :math:`\operatorname{argmin}_x \tfrac12\|Ax-y\|^2 + \lambda\,\mathrm{TV}(x)`
    of one measurement for several :math:`\lambda` at once (batched).

    Denoising is solved by ``n_iter`` iterations of the fast dual projected gradient
    :func:`~deepinv_pnn.optim.weighted_tv.weighted_tv_denoise`; other problems by
    ``n_iter`` iterations of :class:`~deepinv_pnn.models.unrolled_pdhg.UnrolledPDHG`
    (:math:`\tau/\sigma = e^4`, over-relaxation 1.9).

    :param torch.Tensor y: one measurement ``[1, C, H, W]``.
    :param lambdas: the values of :math:`\lambda`, shape ``[G]``.
    :return: ``[G, C, H, W]``.
    """
    lam = lambdas.to(y).view(-1, 1, 1, 1)
    ys = y.expand(len(lambdas), *y.shape[1:])
    if isinstance(physics, dinv.physics.Denoising):
        return weighted_tv_denoise(ys, lam, tol=1e-4, max_iter=n_iter)
    solver = UnrolledPDHG(
        n_iter=n_iter, rho_init=1.9, log_ratio_init=2.0, learn_steps=False, learn_relaxation=False
    ).to(y)
    return solver(ys, physics, lam)


@torch.no_grad()
def oracle_scalar_tv(
    y: torch.Tensor, physics, x: torch.Tensor, n_iter: int = 600, coarse_iter: int | None = None
) -> tuple[float, float]:
    r"""The best scalar TV for a known ground truth: grid search of :math:`\lambda` (21 values,
    :math:`10^{-4.5}` to :math:`10^{-0.5}`) refined by a finer grid (9 values) around the best value.

    :param int n_iter: iterations of the solver (:func:`scalar_tv`) for the fine grid.
    :param int coarse_iter: iterations for the coarse grid, which only brackets the best
        value (default ``n_iter``); the result is then the best of the fine grid.
    :return: ``(best PSNR, best lambda)``.
    """
    psnr = dinv.metric.PSNR()
    grid = torch.logspace(-4.5, -0.5, 21, dtype=torch.float64)
    coarse_iter = n_iter if coarse_iter is None else coarse_iter
    scores = psnr(scalar_tv(y, physics, grid, coarse_iter), x.expand(len(grid), *x.shape[1:]))
    best = int(scores.argmax())
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    fine = torch.logspace(float(low.log10()), float(high.log10()), 9, dtype=torch.float64)
    fine_scores = psnr(scalar_tv(y, physics, fine, n_iter), x.expand(len(fine), *x.shape[1:]))
    best_fine = int(fine_scores.argmax())
    if coarse_iter != n_iter or fine_scores[best_fine] >= scores[best]:
        return float(fine_scores[best_fine]), float(fine[best_fine])
    return float(scores[best]), float(grid[best])
