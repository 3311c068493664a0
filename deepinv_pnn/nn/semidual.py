r"""Semi-discrete optimal transport between patch clouds, memory-bounded.

For point clouds :math:`x_1..x_N` and :math:`y_1..y_M` in :math:`\mathbb{R}^d` with uniform
weights, the squared Wasserstein-2 distance has the semi-dual form

.. math::

    W_2^2 = \max_{\psi \in \mathbb{R}^M} F(\psi), \qquad
    F(\psi) = \frac1N \sum_{i=1}^N \min_j \big(\|x_i - y_j\|^2 - \psi_j\big) + \frac1M \sum_{j=1}^M \psi_j .

:math:`F` is concave with supergradient :math:`\partial_{\psi_j} F = \frac1M - \frac{|\{i : \sigma(i) = j\}|}{N}`,
:math:`\sigma(i) = \operatorname{argmin}_j (\|x_i - y_j\|^2 - \psi_j)`, and for fixed :math:`\psi`,
:math:`\nabla_{x_i} F = \frac2N (x_i - y_{\sigma(i)})`. Everything here only needs
:math:`\sigma`, which is computed by blocks of rows so that no more than
``memory_budget`` bytes of the :math:`N \times M` cost matrix exist at once
(or lazily by KeOps when installed). References: Hertrich, Houdard, Redenbach,
*Wasserstein patch prior for image superresolution*, IEEE TCI 2022.
"""

from __future__ import annotations

import torch

DEFAULT_BUDGET = 64 * 2**20  # bytes of cost matrix alive at once

try:  # optional lazy reductions
    from pykeops.torch import LazyTensor  # type: ignore

    HAS_KEOPS = True
except ImportError:  # pragma: no cover - depends on the environment
    LazyTensor = None
    HAS_KEOPS = False


def chunk_rows(m: int, itemsize: int, memory_budget: int) -> int:
    """Rows per block so that the block's temporaries (about 3 copies of rows x m) fit the budget."""
    return max(1, int(memory_budget) // (3 * max(m, 1) * itemsize))


def assign(
    x: torch.Tensor,
    y: torch.Tensor,
    psi: torch.Tensor,
    y_sqnorm: torch.Tensor | None = None,
    memory_budget: int = DEFAULT_BUDGET,
    use_keops: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""For each :math:`x_i`, the minimum and argmin over :math:`j` of :math:`\|x_i - y_j\|^2 - \psi_j`.

    :param torch.Tensor x: ``[N, d]`` points.
    :param torch.Tensor y: ``[M, d]`` points.
    :param torch.Tensor psi: ``[M]`` dual potential.
    :param torch.Tensor y_sqnorm: ``[M]`` precomputed :math:`\|y_j\|^2` (optional).
    :param int memory_budget: bytes of cost matrix allowed at once.
    :param bool use_keops: use KeOps' lazy argmin (no cost matrix at all).
    :return: ``(values [N], indices [N])``.
    """
    x, y, psi = x.detach(), y.detach(), psi.detach()
    if use_keops:
        if not HAS_KEOPS:
            raise ImportError("use_keops=True needs pykeops (pip install pykeops)")
        x_i = LazyTensor(x[:, None, :].contiguous())
        y_j = LazyTensor(y[None, :, :].contiguous())
        p_j = LazyTensor(psi[None, :, None].contiguous())
        idx = (((x_i - y_j) ** 2).sum(-1) - p_j).argmin(dim=1).view(-1)
        vals = ((x - y[idx]) ** 2).sum(-1) - psi[idx]
        return vals, idx
    if y_sqnorm is None:
        y_sqnorm = (y * y).sum(-1)
    shifted = y_sqnorm - psi  # [M]
    rows = chunk_rows(y.shape[0], x.element_size(), memory_budget)
    vals = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    idx = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for start in range(0, x.shape[0], rows):
        xb = x[start : start + rows]
        # ||x||^2 + ||y||^2 - 2 x.y - psi, with ||x||^2 added after the min (it does not depend on j)
        cost = torch.addmm(shifted[None, :], xb, y.T, alpha=-2.0)
        v, j = cost.min(dim=1)
        vals[start : start + rows] = v + (xb * xb).sum(-1)
        idx[start : start + rows] = j
        del cost
    return vals, idx


def ascend_dual(
    x: torch.Tensor,
    y: torch.Tensor,
    psi: torch.Tensor,
    iters: int,
    lr: float = 1.0,
    memory_budget: int = DEFAULT_BUDGET,
    use_keops: bool = False,
) -> torch.Tensor:
    r"""Averaged stochastic (super)gradient ascent on :math:`F(\psi)`, warm-started at ``psi``.

    :math:`\psi^{t+1} = \psi^t + \eta\, \partial F(\psi^t)`, returning the average of
    :math:`\psi^1..\psi^T` (Polyak-Ruppert averaging, as ``torch.optim.ASGD(t0=1)`` in the
    papers' code).

    :param torch.Tensor x: ``[N, d]`` points (the image's patches).
    :param torch.Tensor y: ``[M, d]`` points (the reference patches).
    :param torch.Tensor psi: ``[M]`` start value.
    :param int iters: number of ascent steps :math:`T` (0 returns ``psi``).
    :param float lr: step :math:`\eta`.
    :return: the averaged potential ``[M]``.
    """
    psi = psi.detach().clone()
    if iters <= 0:
        return psi
    m, n = y.shape[0], x.shape[0]
    y_sqnorm = (y * y).sum(-1)
    avg = torch.zeros_like(psi)
    for t in range(iters):
        _, idx = assign(x, y, psi, y_sqnorm, memory_budget, use_keops)
        counts = torch.bincount(idx, minlength=m).to(psi.dtype)
        psi = psi + lr * (1.0 / m - counts / n)
        avg += (psi - avg) / (t + 1)
    return avg


class _SemiDual(torch.autograd.Function):
    """F(psi) for fixed psi as a function of x, with the assignment-based gradient."""

    @staticmethod
    def forward(ctx, x, y, psi, memory_budget, use_keops):
        vals, idx = assign(x, y, psi, None, memory_budget, use_keops)
        ctx.save_for_backward(x, y, idx)
        return vals.mean() + psi.mean()

    @staticmethod
    def backward(ctx, grad_out):
        x, y, idx = ctx.saved_tensors
        grad_x = (2.0 / x.shape[0]) * (x - y[idx]) * grad_out
        return grad_x, None, None, None, None


def semidual_value(
    x: torch.Tensor,
    y: torch.Tensor,
    psi: torch.Tensor,
    memory_budget: int = DEFAULT_BUDGET,
    use_keops: bool = False,
) -> torch.Tensor:
    r"""The semi-dual objective :math:`F(\psi)` (a scalar), differentiable in ``x``.

    Its gradient :math:`\frac2N (x_i - y_{\sigma(i)})` is computed from the optimal
    assignment, never from the cost matrix, so backward costs :math:`O(N d)` memory.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.nn.semidual import semidual_value
    >>> x = torch.zeros(3, 2, requires_grad=True)
    >>> y = torch.ones(4, 2)
    >>> semidual_value(x, y, torch.zeros(4))
    tensor(2., grad_fn=<_SemiDualBackward>)
    """
    return _SemiDual.apply(x, y, psi, int(memory_budget), bool(use_keops))


def dense_semidual_value(x: torch.Tensor, y: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
    """Reference implementation of :func:`semidual_value` that materialises the N x M matrix."""
    cost = torch.cdist(x, y) ** 2 - psi[None, :]
    return cost.min(dim=1).values.mean() + psi.mean()
