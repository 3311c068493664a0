r"""Sliced MMD with the Riesz kernel: value and gradient by sorting, batched over projections.

In one dimension, with the signed weights :math:`w = 1/N` on the :math:`x_i` and
:math:`w = -1/M` on the :math:`y_j`, all points sorted as :math:`z_{(1)} \le \dots \le
z_{(N+M)}` and :math:`C_k = \sum_{l \le k} w_{(l)} = F_\mu(z_{(k)}) - F_\nu(z_{(k)})` the
difference of the empirical distribution functions,

.. math::

    \mathrm{MMD}_K^2(\mu, \nu) = 2 \int (F_\mu - F_\nu)^2 = 2 \sum_k C_k^2 \,(z_{(k+1)} - z_{(k)}),
    \qquad
    \frac{\partial\, \mathrm{MMD}_K^2}{\partial z_{(k)}} = -2\, w_{(k)} \,(2 C_k - w_{(k)}),

for :math:`K(x, y) = -|x - y|`: one sort and one cumulative count, :math:`O((N+M)\log(N+M))`
(Hertrich, Wald, Altekrüger, Hagemann, *Generative sliced MMD flows with Riesz kernels*,
ICLR 2024). On CPU in float32 the sort is one 64-bit key sort per projection
(:mod:`deepinv_pnn.sampling.sliced_mmd_cpu`); elsewhere an argsort. In :math:`d` dimensions,
:math:`\mathrm{MMD}^2 = c_d\, \mathbb E_{\xi \sim U(S^{d-1})} \mathrm{MMD}^2(\langle\xi, x\rangle,
\langle\xi, y\rangle)` (see :func:`~deepinv_pnn.sampling.riesz_constant`), estimated with
:math:`P` random directions with error :math:`O(\sqrt{d/P})`.
Ties between points get the sign of their order in the sort (a valid subgradient).
"""

from __future__ import annotations

import numpy as np
import torch

from deepinv_pnn.sampling.mmd_riesz import _all_finite, check_point_cloud, riesz_constant
from deepinv_pnn.sampling.sliced_mmd_cpu import sliced_cpu_float32, supports_cpu_float32
from deepinv_pnn.validation import check_count, check_img_shape, check_positive

__all__ = ["local_projections", "random_directions", "sliced_mmd_riesz", "sliced_mmd_riesz_1d"]


def random_directions(
    d: int,
    n_projections: int,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""``n_projections`` directions uniform on the sphere :math:`S^{d-1}`, as columns ``[d, P]``."""
    d = check_count(d, "d")
    n_projections = check_count(n_projections, "n_projections")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype}")
    xi = torch.randn(d, n_projections, generator=generator, device=device, dtype=dtype)
    return xi / xi.norm(dim=0, keepdim=True)


def local_projections(
    img_shape: tuple[int, int, int],
    patch_size: int,
    n_projections: int,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""Local (patch) projections for images, as columns ``[C H W, P]``.

    Each direction is a uniform unit vector of :math:`\mathbb R^{C s^2}` placed on an
    ``s x s`` patch at a uniformly random position of the ``C x H x W`` image and zero
    elsewhere. With them, :math:`c_{C s^2}` times the sliced value estimates the average
    over patch positions of the exact :math:`\mathrm{MMD}^2` of the patch distributions,
    a discrepancy that sees local structure with far fewer projections
    (Hertrich et al., ICLR 2024, Sec. 4).

    :param tuple img_shape: ``(C, H, W)``.
    :param int patch_size: the side ``s`` of the patches (``<= min(H, W)``).
    :param int n_projections: the number ``P`` of directions.
    """
    c, h, w = check_img_shape(img_shape)
    s = check_count(patch_size, "patch_size")
    if s > min(h, w):
        raise ValueError(f"patch_size must be in [1, {min(h, w)}] for img_shape {img_shape}, got {patch_size}")
    p = check_count(n_projections, "n_projections")
    local = random_directions(c * s * s, p, generator=generator, device=device, dtype=dtype)
    rows = torch.randint(0, h - s + 1, (p,), generator=generator, device=device)
    cols = torch.randint(0, w - s + 1, (p,), generator=generator, device=device)
    out = torch.zeros(p, c, h, w, device=device, dtype=dtype)
    patches = local.T.reshape(p, c, s, s)
    di = torch.arange(s, device=device)
    ii = (rows[:, None] + di)[:, None, :, None].expand(p, c, s, s)
    jj = (cols[:, None] + di)[:, None, None, :].expand(p, c, s, s)
    pp = torch.arange(p, device=device)[:, None, None, None].expand(p, c, s, s)
    cc = torch.arange(c, device=device)[None, :, None, None].expand(p, c, s, s)
    out[pp, cc, ii, jj] = patches
    return out.reshape(p, c * h * w).T.contiguous()


def sliced_mmd_riesz_1d(
    zx: torch.Tensor, zy: torch.Tensor, grad_y: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    r"""Exact 1D :math:`\mathrm{MMD}^2` and its gradients for ``P`` problems at once, by sorting.

    :param torch.Tensor zx: projected particles ``[P, N]``.
    :param torch.Tensor zy: projected targets ``[P, M]``.
    :param bool grad_y: also return the gradient with respect to ``zy``.
    :return: values ``[P]``, gradient w.r.t. ``zx`` ``[P, N]``, gradient w.r.t. ``zy``
        ``[P, M]`` or ``None``.
    """
    for name, z in (("zx", zx), ("zy", zy)):
        if not isinstance(z, torch.Tensor) or not z.is_floating_point():
            got = z.dtype if isinstance(z, torch.Tensor) else type(z).__name__
            raise TypeError(f"{name} must be a floating-point tensor [P, N], got {got}")
        if z.dim() != 2 or z.shape[1] < 1:
            raise ValueError(f"{name} must have shape [P, N] with N >= 1, got {tuple(z.shape)}")
    if zx.shape[0] != zy.shape[0] or zx.dtype != zy.dtype or zx.device != zy.device:
        raise ValueError(
            f"zx and zy must have the same number P of rows, dtype and device, got {tuple(zx.shape)} "
            f"{zx.dtype} {zx.device} and {tuple(zy.shape)} {zy.dtype} {zy.device}"
        )
    if not (_all_finite(zx) and _all_finite(zy)):
        raise ValueError("zx and zy must be finite (no NaN or Inf)")
    return _sliced_1d(zx, zy, grad_y)


def _sliced_1d(zx, zy, grad_y):
    """:func:`sliced_mmd_riesz_1d` without the input checks (called once per chunk)."""
    n, m = zx.shape[1], zy.shape[1]
    z = torch.cat([zx, zy], dim=1)
    if z.device.type == "cpu":
        # numpy's vectorised (AVX-512/AVX2) argsort is several times faster than torch.sort on CPU
        order = torch.from_numpy(np.argsort(z.numpy(), axis=1))
        values = torch.gather(z, 1, order)
    else:
        values, order = torch.sort(z, dim=1)
    del z
    is_x = order < n
    # counts are exact integers in floating point (float32 below 2^24 points)
    ct = torch.float64 if (zx.dtype == torch.float64 or n + m >= 2**24) else torch.float32
    cdf = torch.cumsum(is_x, dim=1, dtype=ct)
    # C_k = count_x / n - (k - count_x) / m
    cdf.mul_(1.0 / n + 1.0 / m).sub_(torch.arange(1, n + m + 1, device=zx.device, dtype=ct) / m)
    mmd = 2 * torch.einsum("pk,pk->p", cdf[:, :-1].square(), torch.diff(values, dim=1)).to(zx.dtype)
    del values
    one = torch.ones((), dtype=ct, device=zx.device)
    w = torch.where(is_x, one / n, -one / m)
    del is_x
    # dMMD^2/dz_(k) = -2 w_k (2 C_k - w_k) = w_k (2 w_k - 4 C_k)
    g_sorted = cdf.mul_(-4).add_(w, alpha=2).mul_(w).to(zx.dtype)
    del w
    grad = torch.empty_like(g_sorted).scatter_(1, order, g_sorted)
    return mmd, grad[:, :n], (grad[:, n:] if grad_y else None)


def _sliced(x, y, xi, need_gx, need_gy, memory_budget, scale=1.0):
    """``scale`` times the summed 1D values, and the gradients of that."""
    if supports_cpu_float32(x, y):
        # one 64-bit key sort per projection instead of an argsort (sliced_mmd_cpu.py)
        return sliced_cpu_float32(x, y, xi, need_gx, need_gy, memory_budget, scale)
    n_proj = xi.shape[1]
    chunk = _chunk_for(x.shape[0] + y.shape[0], n_proj, memory_budget)
    value = x.new_zeros(())
    gx = torch.zeros_like(x) if need_gx else None
    gy = torch.zeros_like(y) if need_gy else None
    for start in range(0, n_proj, chunk):
        xi_c = xi[:, start : start + chunk]
        zx = (x @ xi_c).T.contiguous()
        zy = (y @ xi_c).T.contiguous()
        vals, g1x, g1y = _sliced_1d(zx, zy, need_gy)
        del zx, zy
        value = value + vals.sum()
        if need_gx:
            gx.addmm_(g1x.T, xi_c.T, alpha=scale)
        if need_gy:
            gy.addmm_(g1y.T, xi_c.T, alpha=scale)
    return value * scale, gx, gy


class _SlicedMMDRiesz(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, xi, scale, memory_budget):
        need_gx, need_gy = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        value, gx, gy = _sliced(x.detach(), y.detach(), xi, need_gx, need_gy, memory_budget, scale)
        ctx.save_for_backward(gx if need_gx else torch.empty(0), gy if need_gy else torch.empty(0))
        ctx.needs = (need_gx, need_gy)
        return value

    @staticmethod
    def backward(ctx, grad_out):
        gx, gy = ctx.saved_tensors
        need_gx, need_gy = ctx.needs
        return (
            grad_out * gx if need_gx else None,
            grad_out * gy if need_gy else None,
            None,
            None,
            None,
        )


def _chunk_for(n_points: int, n_proj: int, memory_budget: float) -> int:
    # about 40 bytes per (point, projection): values, order (int64), counts, cdf, gradients
    return max(1, min(n_proj, int(memory_budget // (40 * max(n_points, 1)))))


def sliced_mmd_riesz(
    x: torch.Tensor,
    y: torch.Tensor,
    n_projections: int = 100,
    projections: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    return_grad: bool = False,
    scale: float | None = None,
    memory_budget: float = 5e8,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Sliced estimate of :math:`\mathrm{MMD}^2` with the kernel :math:`-\|x-y\|`, by sorting.

    .. math::

        \widehat{\mathrm{MMD}}^2 = \frac{c_d}{P} \sum_{p=1}^P
        \mathrm{MMD}^2\big(\langle \xi_p, x\rangle, \langle \xi_p, y\rangle\big),

    an unbiased estimate of the exact value of :func:`~deepinv_pnn.sampling.mmd_riesz`
    for uniform directions :math:`\xi_p`. Time :math:`O(P (N+M) (d + \log(N+M)))`; the
    projections are processed in chunks so that the work memory stays near
    ``memory_budget`` bytes on top of the inputs. Differentiable with respect to ``x``
    and ``y`` (the gradient is computed in the forward pass, no autograd graph is kept).

    :param torch.Tensor x: the particles, ``[N, d]``.
    :param torch.Tensor y: the target sample, ``[M, d]``.
    :param int n_projections: the number ``P`` of random directions (ignored if
        ``projections`` is given).
    :param torch.Tensor projections: directions as columns ``[d, P]`` (e.g. from
        :func:`local_projections`); default: uniform on the sphere.
    :param torch.Generator generator: the random generator of the directions.
    :param bool return_grad: return ``(value, grad_x)`` directly (no autograd).
    :param float scale: the factor (``>= 0``) in front of the mean over projections; default
        :math:`c_d` (so the value estimates the exact MMD^2 for uniform directions).
    :param float memory_budget: bytes of work memory per chunk of projections.
    :return: the value (0-d tensor), or ``(value, grad_x)`` with ``grad_x`` ``[N, d]``, in the
        dtype of ``x`` (float16 and bfloat16 inputs are computed in float32).

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.sampling import sliced_mmd_riesz
    >>> x = torch.tensor([[0.0], [1.0]]); y = torch.tensor([[0.0], [3.0]])
    >>> float(sliced_mmd_riesz(x, y, n_projections=1))  # exact in 1D
    1.0
    >>> g = torch.Generator().manual_seed(0)
    >>> value, grad = sliced_mmd_riesz(torch.randn(500, 8), torch.randn(400, 8) + 1,
    ...                                n_projections=50, generator=g, return_grad=True)
    >>> grad.shape
    torch.Size([500, 8])
    """
    check_point_cloud(x, "x")
    check_point_cloud(y, "y", dim=x.shape[1])
    if scale is not None:
        scale = check_positive(scale, "scale", allow_zero=True)
    memory_budget = check_positive(memory_budget, "memory_budget")
    out_dtype = x.dtype
    if x.dtype in (torch.float16, torch.bfloat16):
        # the cumulative counts and sorts need float32: compute there, return the input dtype
        x = x.float()
    d = x.shape[1]
    if projections is None:
        projections = random_directions(d, n_projections, generator, x.device, x.dtype)
    elif (
        not isinstance(projections, torch.Tensor)
        or projections.dim() != 2
        or projections.shape[0] != d
        or projections.shape[1] < 1
    ):
        shape = tuple(projections.shape) if isinstance(projections, torch.Tensor) else type(projections).__name__
        raise ValueError(f"projections must be a [d={d}, P] tensor with P >= 1, got {shape}")
    elif not projections.is_floating_point() or not _all_finite(projections):
        raise ValueError("projections must be finite floating-point directions")
    elif bool((projections == 0).all(dim=0).any()):  # a zero column would only dilute the mean
        raise ValueError("projections must not have an all-zero column: each column is a direction")
    projections = projections.to(device=x.device, dtype=x.dtype)
    y = y.to(device=x.device, dtype=x.dtype)
    n_proj = projections.shape[1]
    factor = (riesz_constant(d) if scale is None else scale) / n_proj
    if return_grad:
        with torch.no_grad():
            value, grad = _sliced(x, y, projections, True, False, memory_budget, factor)[:2]
        return value.to(out_dtype), grad.to(out_dtype)
    if not (x.requires_grad or y.requires_grad) or not torch.is_grad_enabled():
        with torch.no_grad():
            return _sliced(x, y, projections, False, False, memory_budget, factor)[0].to(out_dtype)
    return _SlicedMMDRiesz.apply(x, y, projections, factor, memory_budget).to(out_dtype)
