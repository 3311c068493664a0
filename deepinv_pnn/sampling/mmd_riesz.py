r"""Exact maximum mean discrepancy with the Riesz (negative distance) kernel.

For the kernel :math:`K(x, y) = -\|x - y\|` and empirical measures
:math:`\mu = \frac1N \sum_i \delta_{x_i}`, :math:`\nu = \frac1M \sum_j \delta_{y_j}`,

.. math::

    \mathrm{MMD}_K^2(\mu, \nu) = \frac{2}{NM} \sum_{i,j} \|x_i - y_j\|
    - \frac{1}{N^2} \sum_{i,k} \|x_i - x_k\| - \frac{1}{M^2} \sum_{j,l} \|y_j - y_l\|,

the energy distance (a V-statistic, non-negative because :math:`K` is conditionally
positive definite). Its gradient with respect to the particle :math:`x_i` is

.. math::

    \nabla_{x_i} \mathrm{MMD}_K^2 = \frac{2}{NM} \sum_j \frac{x_i - y_j}{\|x_i - y_j\|}
    - \frac{2}{N^2} \sum_k \frac{x_i - x_k}{\|x_i - x_k\|}.

This module computes both in :math:`O(NM + N^2 + M^2)` time but in blocks, so the
memory stays :math:`O(\text{chunk}^2 + (N + M) d)`; it is the reference for the sliced
estimator of :mod:`deepinv_pnn.sampling.sliced_mmd`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["check_point_cloud", "mmd_riesz", "riesz_constant"]


def check_point_cloud(x: object, name: str, dim: int | None = None) -> torch.Tensor:
    """Check that ``x`` is a finite floating-point ``[N, d]`` tensor (``N >= 1``).

    :raises TypeError: if ``x`` is not a floating-point tensor.
    :raises ValueError: on a wrong rank, a wrong dimension ``d`` or non-finite entries.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [N, d], got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {x.dtype}")
    if x.dim() != 2 or x.shape[0] < 1:
        raise ValueError(f"{name} must have shape [N, d] with N >= 1, got {tuple(x.shape)}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} must have d = {dim} columns, got shape {tuple(x.shape)}")
    if not _all_finite(x):
        raise ValueError(f"{name} contains NaN or Inf values")
    return x


def _all_finite(x: torch.Tensor) -> bool:
    # one reduction instead of an elementwise test: a sum is finite unless an entry is NaN or
    # Inf or the sum overflows (only then is every entry tested)
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        # NumPy's sum runs on the calling thread: a torch reduction would start an OpenMP
        # team, whose threads then spin for milliseconds and slow the sliced kernel's pool
        values = x.detach().numpy()
        return bool(np.isfinite(values.sum())) or bool(np.isfinite(values).all())
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def riesz_constant(d: int) -> float:
    r"""The slicing constant :math:`c_d = \sqrt{\pi}\,\Gamma(\frac{d+1}{2}) / \Gamma(\frac d2)`.

    For :math:`\xi` uniform on the sphere :math:`S^{d-1}`,
    :math:`\mathbb E_\xi |\langle \xi, v\rangle| = \|v\| / c_d`, hence
    :math:`\mathrm{MMD}^2 = c_d\, \mathbb E_\xi\, \mathrm{MMD}^2(\xi_\# \mu, \xi_\# \nu)`
    (Hertrich et al., ICLR 2024, Theorem 2). :math:`c_1 = 1`, :math:`c_d \approx \sqrt{\pi d / 2}`.

    :param int d: the dimension (>= 1).
    """
    if int(d) != d or d < 1:
        raise ValueError(f"d must be a positive integer, got {d}")
    return math.exp(0.5 * math.log(math.pi) + math.lgamma((d + 1) / 2) - math.lgamma(d / 2))


def _pair_sums(
    a: torch.Tensor, b: torch.Tensor, chunk: int, grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""``sum_{i,j} |a_i - b_j|`` and, if ``grad``, ``sum_j (a_i - b_j)/|a_i - b_j|`` per i."""
    # float64 is for reference values: avoid the (faster) |a|^2 + |b|^2 - 2ab expansion,
    # whose cancellation costs about half the digits of small distances
    mode = "donot_use_mm_for_euclid_dist" if a.dtype == torch.float64 else "use_mm_for_euclid_dist_if_necessary"
    total = a.new_zeros(())
    g = torch.zeros_like(a) if grad else None
    for i in range(0, a.shape[0], chunk):
        ai = a[i : i + chunk]
        for j in range(0, b.shape[0], chunk):
            bj = b[j : j + chunk]
            dist = torch.cdist(ai, bj, compute_mode=mode)
            total = total + dist.sum()
            if grad:
                # unit vectors sum: (a_i * sum_j 1/r_ij - sum_j b_j / r_ij); r = 0 contributes 0
                inv = torch.where(dist > 0, 1.0 / dist.clamp_min(torch.finfo(a.dtype).tiny), 0.0)
                g[i : i + chunk] += ai * inv.sum(1, keepdim=True) - inv @ bj
    return total, g


def mmd_riesz(
    x: torch.Tensor,
    y: torch.Tensor,
    return_grad: bool = False,
    chunk_size: int = 2048,
    unbiased: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Exact :math:`\mathrm{MMD}^2` with the kernel :math:`K(x,y) = -\|x-y\|`, in blocks.

    Differentiable with autograd when ``return_grad=False`` (keep ``N`` small then: the
    graph holds every block); with ``return_grad=True`` the gradient with respect to
    ``x`` is computed in closed form, block by block, without autograd.

    :param torch.Tensor x: the particles, ``[N, d]``.
    :param torch.Tensor y: the target sample, ``[M, d]``.
    :param bool return_grad: also return :math:`\nabla_x \mathrm{MMD}^2`, ``[N, d]``.
    :param int chunk_size: block size of the pairwise distances (memory ``chunk_size^2``).
    :param bool unbiased: the U-statistic (divide the within-sample sums by :math:`N(N-1)`
        and :math:`M(M-1)`), an unbiased estimate of the population energy distance; use
        it to compare samples of different or small sizes. The default V-statistic is the
        MMD of the empirical measures, which the flows minimise.
    :return: the value (0-d tensor), and the gradient if ``return_grad``.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.sampling import mmd_riesz
    >>> x = torch.tensor([[0.0], [1.0]]); y = torch.tensor([[0.0], [3.0]])
    >>> float(mmd_riesz(x, y))  # 2 * 6/4 - 2/4 - 6/4
    1.0
    """
    check_point_cloud(x, "x")
    check_point_cloud(y, "y", dim=x.shape[1])
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    y = y.to(x)
    n, m = x.shape[0], y.shape[0]
    if unbiased and min(n, m) < 2:
        raise ValueError(f"unbiased=True needs at least 2 points in x and y, got {n} and {m}")
    nx2, ny2 = (n * (n - 1), m * (m - 1)) if unbiased else (n**2, m**2)
    if return_grad:
        with torch.no_grad():
            sxy, gxy = _pair_sums(x, y, chunk_size, True)
            sxx, gxx = _pair_sums(x, x, chunk_size, True)
            syy, _ = _pair_sums(y, y, chunk_size, False)
            value = 2 * sxy / (n * m) - sxx / nx2 - syy / ny2
            grad = 2 * gxy / (n * m) - 2 * gxx / nx2
        return value, grad
    sxy, _ = _pair_sums(x, y, chunk_size, False)
    sxx, _ = _pair_sums(x, x, chunk_size, False)
    syy, _ = _pair_sums(y, y, chunk_size, False)
    return 2 * sxy / (n * m) - sxx / nx2 - syy / ny2
