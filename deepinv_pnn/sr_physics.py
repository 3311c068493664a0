r"""The superresolution forward operator of the Wasserstein-patch-prior papers.

Hertrich, Houdard, Redenbach (2022) and Altekrüger, Hertrich (2023) degrade a
high-resolution image :math:`x \in \mathbb{R}^{H \times W}` by a periodic Gaussian blur
with a :math:`16 \times 16` kernel and a subsampling by the factor :math:`s`:

.. math::

    (Ax)_{i,j} = \sum_{a,b=0}^{15} k_{a,b}\, x_{(s i + a) \bmod H,\ (s j + b) \bmod W},
    \qquad k_{a,b} \propto \exp\!\Big(-\frac{(a-7.5)^2 + (b-7.5)^2}{2\sigma^2}\Big),

with :math:`\sum k = 1`, :math:`\sigma = 2` for :math:`s = 4` and :math:`\sigma = 3` for
:math:`s = 6`. Low-resolution pixel :math:`i` is centred at high-resolution coordinate
:math:`s i + 7.5`, not :math:`s i + (s-1)/2`: an interpolation baseline must be shifted
accordingly (:func:`aligned_upsample`).

deepinv's :class:`deepinv.physics.Downsampling` with this kernel and circular padding
computes the same map up to a circular shift of the high-resolution image (its filter
is centred, ours is anchored at the top-left corner); ``tests/test_sr_physics.py``
measures it: ``WPPSuperResolution(x) == Downsampling(filter=k)(roll(x, -7))`` (exact
to machine precision), so it does **not** match without that shift.
"""

from __future__ import annotations

import deepinv as dinv
import torch
import torch.nn.functional as F

KERNEL_STD = {4: 2.0, 6: 3.0, 8: 4.0}


def wpp_gaussian_kernel(std: float, size: int = 16, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    r"""The normalised ``size x size`` Gaussian kernel centred at ``((size-1)/2, (size-1)/2)``.

    :return: ``[1, 1, size, size]`` kernel summing to one.
    """
    grid = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * std**2))
    return (g / g.sum()).to(dtype)[None, None]


def _wrap_add(z: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Fold a ``[..., H + q, W + q]`` tensor periodically onto ``[..., H, W]`` (adds the tails)."""
    out = z.new_zeros(z.shape[:-2] + (height, z.shape[-1]))
    for start in range(0, z.shape[-2], height):
        piece = z[..., start : start + height, :]
        out[..., : piece.shape[-2], :] += piece
    result = z.new_zeros(z.shape[:-2] + (height, width))
    for start in range(0, out.shape[-1], width):
        piece = out[..., start : start + width]
        result[..., : piece.shape[-1]] += piece
    return result


class WPPSuperResolution(dinv.physics.LinearPhysics):
    r"""Periodic Gaussian blur + subsampling of the WPP papers, as a deepinv linear physics.

    :param int factor: the magnification factor :math:`s` (stride of the subsampling).
    :param float kernel_std: standard deviation :math:`\sigma` of the Gaussian kernel
        (default: 2 for ``factor=4``, 3 for 6, 4 for 8).
    :param int kernel_size: side of the kernel (16 in the papers).
    :param tuple img_size: optional ``(C, H, W)`` of the high-resolution image, used by
        :meth:`A_adjoint` when the low-resolution size does not determine it
        (default ``H = s h``).
    :param kwargs: passed to :class:`deepinv.physics.LinearPhysics` (e.g. ``noise_model``).

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.sr_physics import WPPSuperResolution
    >>> physics = WPPSuperResolution(factor=4)
    >>> y = physics.A(torch.ones(1, 1, 100, 100))
    >>> y.shape, round(float(y.mean()), 6)
    (torch.Size([1, 1, 25, 25]), 1.0)
    """

    def __init__(
        self,
        factor: int = 4,
        kernel_std: float | None = None,
        kernel_size: int = 16,
        img_size: tuple[int, int, int] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(factor, int) or factor < 1:
            raise ValueError(f"factor must be a positive int, got {factor!r}")
        if kernel_std is None:
            if factor not in KERNEL_STD:
                raise ValueError(f"give kernel_std for factor {factor} (defaults exist for {sorted(KERNEL_STD)})")
            kernel_std = KERNEL_STD[factor]
        if kernel_std <= 0:
            raise ValueError(f"kernel_std must be > 0, got {kernel_std}")
        self.factor = factor
        self.kernel_std = float(kernel_std)
        self.kernel_size = int(kernel_size)
        self.img_size = tuple(img_size) if img_size is not None else None
        self.register_buffer("kernel", wpp_gaussian_kernel(self.kernel_std, self.kernel_size))

    def _kernel(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        return self.kernel.to(device=x.device, dtype=x.dtype).expand(c, 1, -1, -1)

    def A(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        r"""Blur periodically and keep every ``factor``-th pixel: ``[B, C, H, W] -> [B, C, h, w]``."""
        if x.dim() != 4:
            raise ValueError(f"x must be [B, C, H, W], got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        q = self.kernel_size - 1
        xp = torch.cat([x] + [x] * (q // h) + [x[..., : q % h, :]], dim=-2) if q else x
        xp = torch.cat([xp] + [xp] * (q // w) + [xp[..., : q % w]], dim=-1) if q else xp
        return F.conv2d(xp, self._kernel(x), stride=self.factor, groups=x.shape[1])

    def _hr_size(self, y: torch.Tensor) -> tuple[int, int]:
        if self.img_size is not None:
            return self.img_size[-2], self.img_size[-1]
        return y.shape[-2] * self.factor, y.shape[-1] * self.factor

    def A_adjoint(self, y: torch.Tensor, **kwargs) -> torch.Tensor:
        r"""Adjoint: zero-filled upsampling, correlation-transpose with the kernel, periodic folding."""
        if y.dim() != 4:
            raise ValueError(f"y must be [B, C, h, w], got shape {tuple(y.shape)}")
        h, w = self._hr_size(y)
        q = self.kernel_size - 1
        out_h, out_w = h + q, w + q
        z = F.conv_transpose2d(y, self._kernel(y), stride=self.factor, groups=y.shape[1])
        z = F.pad(z, (0, max(0, out_w - z.shape[-1]), 0, max(0, out_h - z.shape[-2])))
        return _wrap_add(z[..., :out_h, :out_w], h, w)


def aligned_upsample(y: torch.Tensor, factor: int = 4, mode: str = "bicubic", kernel_size: int = 16) -> torch.Tensor:
    r"""Interpolate a low-resolution image onto the high-resolution grid of :class:`WPPSuperResolution`.

    Low-resolution pixel :math:`i` sits at high-resolution coordinate :math:`s i + (k-1)/2`
    (``k`` the kernel size); standard interpolation puts it at :math:`s i + (s-1)/2`, so the
    interpolated image is shifted (periodically) by :math:`(k - s)/2` pixels (6 for
    :math:`s = 4`, ``k = 16``).

    :param torch.Tensor y: ``[B, C, h, w]`` low-resolution image.
    :param int factor: magnification :math:`s`.
    :param str mode: ``"bicubic"`` or ``"bilinear"`` or ``"nearest"``.
    :return: ``[B, C, s h, s w]``.
    """
    if (kernel_size - factor) % 2:
        raise ValueError(f"kernel_size - factor must be even, got {kernel_size} - {factor}")
    shift = (kernel_size - factor) // 2
    pad = -(-shift // factor) + 1  # low-resolution pixels of periodic context on each side
    yp = F.pad(y, (pad, pad, pad, pad), mode="circular")
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    hr = F.interpolate(yp, scale_factor=factor, mode=mode, **kwargs)
    start = pad * factor - shift
    return hr[..., start : start + factor * y.shape[-2], start : start + factor * y.shape[-1]]
