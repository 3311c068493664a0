r"""Exactly orthogonal / Parseval convolutions with small filters, circular boundary.

The operator is a product of orthogonal :math:`1\times 1` channel mixings and
*channel-group shifts* (a product in the spirit of the block-convolution orthogonal
parametrisation of Li et al., NeurIPS 2019, with five-point stencils):

.. math::
    T = U_S\,\Sigma\,U_{S-1}\,\Sigma \cdots U_1\,\Sigma\,V, \qquad
    V \in \mathrm{St}(K, M),\ U_s \in O(K),

where :math:`\Sigma` circularly shifts five groups of channels by :math:`(0,0)`,
:math:`(\pm 1, 0)`, :math:`(0, \pm 1)` pixels. A circular shift is a permutation of
pixels, so :math:`\Sigma` is orthogonal, and :math:`T^\top T = V^\top V = I_M`:
:math:`T` maps :math:`M` channels to :math:`K \ge M` channels and is the analysis
operator of a Parseval frame (orthogonal when :math:`K = M`). The equivalent filter of
:math:`T` is supported on the diamond :math:`|i| + |j| \le S` (inside a
:math:`(2S+1)\times(2S+1)` square). Exact for the **circular** boundary on every image
size (odd included); other boundaries (zero, reflect) are not orthogonal.

:Examples:

>>> import torch
>>> from deepinv_pnn.nn.orthogonal_conv import ParsevalConv2d
>>> T = ParsevalConv2d(1, 8, n_stages=2)
>>> x = torch.randn(2, 1, 9, 7)
>>> bool(torch.allclose(T.adjoint(T(x)), x, atol=1e-5))
True
"""

from __future__ import annotations

import torch
from torch import nn

from deepinv_pnn.nn.stiefel import (
    MAPS,
    constrain,
    orthogonality_error,
    random_stiefel,
    stiefel_parameter,
)
from deepinv_pnn.validation import check_count

SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def _group_bounds(channels: int) -> list[tuple[int, int]]:
    """Split ``channels`` into len(SHIFTS) contiguous groups of near-equal size."""
    n = len(SHIFTS)
    sizes = [channels // n + (1 if g < channels % n else 0) for g in range(n)]
    bounds, start = [], 0
    for size in sizes:
        bounds.append((start, start + size))
        start += size
    return bounds


_PERM_CACHE: dict = {}


def _shift_permutation(channels: int, height: int, width: int, sign: int, device) -> torch.Tensor:
    """Flat gather index ``[C*H*W]`` of the channel-group shift (cached)."""
    key = (channels, height, width, sign, str(device))
    perm = _PERM_CACHE.get(key)
    if perm is None:
        rows = torch.arange(height).view(height, 1)
        cols = torch.arange(width).view(1, width)
        parts = []
        for (start, stop), (dy, dx) in zip(_group_bounds(channels), SHIFTS):
            # out[c, i, j] = in[c, (i - dy) mod H, (j - dx) mod W]
            src = ((rows - sign * dy) % height) * width + (cols - sign * dx) % width
            for c in range(start, stop):
                parts.append(c * height * width + src.reshape(-1))
        perm = torch.cat(parts).to(device)
        if len(_PERM_CACHE) > 64:
            _PERM_CACHE.clear()
        _PERM_CACHE[key] = perm
    return perm


def _shift_flat(y: torch.Tensor, height: int, width: int, sign: int) -> torch.Tensor:
    """Channel-group shift of ``y`` of shape ``[B, C, H*W]`` (one gather)."""
    b, c, n = y.shape
    perm = _shift_permutation(c, height, width, sign, y.device)
    return y.reshape(b, c * n).index_select(1, perm).view(b, c, n)


def group_shift(x: torch.Tensor, sign: int = 1) -> torch.Tensor:
    r"""The channel-group shift :math:`\Sigma` (``sign=1``) or its inverse :math:`\Sigma^\top` (``sign=-1``).

    Channel group :math:`g` is rolled circularly by ``sign * SHIFTS[g]`` pixels.
    """
    b, c, h, w = x.shape
    return _shift_flat(x.reshape(b, c, h * w), h, w, sign).view(b, c, h, w)


def _check_input(x: torch.Tensor, channels: int, name: str) -> None:
    """Check the shape and dtype of an input ``[B, channels, H, W]`` (metadata only)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        given = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(
            f"{name} must be a floating-point tensor [B, {channels}, H, W], got {given}"
        )
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"{name} must have shape [B, {channels}, H, W], got {tuple(x.shape)}")


def _mix(y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Apply a channel matrix ``w`` ([out, in]) at every pixel of ``y`` ([B, in, N]); a plain
    fp32 matmul (no TF32), so the orthogonality is kept to float precision on GPUs too."""
    return torch.matmul(w.to(y.dtype), y)


class ParsevalConv2d(nn.Module):
    r"""Convolution :math:`T: \mathbb{R}^{M\times H\times W}\to\mathbb{R}^{K\times H\times W}` with :math:`T^\top T = I`.

    See the module docstring for the construction. :meth:`forward` applies :math:`T`,
    :meth:`adjoint` applies :math:`T^\top`.

    :param int in_channels: :math:`M`.
    :param int out_channels: :math:`K \ge M`.
    :param int n_stages: number :math:`S` of shift stages (filter radius).
    :param str parametrization: ``"manifold"`` (matrices are tagged Stiefel points, train
        with :mod:`deepinv_pnn.training.manifold`), ``"cayley"`` or ``"exp"`` (any optimiser).
    :param torch.Generator generator: seed of the random (Haar) initialisation.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_stages: int = 2,
        parametrization: str = "manifold",
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        in_channels = check_count(in_channels, "in_channels")
        out_channels = check_count(out_channels, "out_channels")
        n_stages = check_count(n_stages, "n_stages", minimum=0)
        if out_channels < in_channels:
            raise ValueError(
                f"need 1 <= in_channels <= out_channels, got in_channels={in_channels}, out_channels={out_channels}"
            )
        if parametrization not in ("manifold",) + MAPS:
            raise ValueError(
                f"parametrization must be 'manifold', 'cayley' or 'exp', got {parametrization!r}"
            )
        self.in_channels, self.out_channels, self.n_stages = in_channels, out_channels, n_stages
        self.parametrization = parametrization
        self.first = stiefel_parameter(
            random_stiefel(out_channels, in_channels, generator=generator)
        )
        self.mixings = stiefel_parameter(
            random_stiefel(n_stages, out_channels, out_channels, generator=generator)
        )
        if parametrization != "manifold":
            del self.first.manifold, self.mixings.manifold
            constrain(self, "first", parametrization)
            if n_stages > 0:
                constrain(self, "mixings", parametrization)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`T x`, ``[B, M, H, W] -> [B, K, H, W]``."""
        _check_input(x, self.in_channels, "x")
        b, _, h, w = x.shape
        y = _mix(x.reshape(b, self.in_channels, h * w), self.first)
        mixings = self.mixings
        for s in range(self.n_stages):
            y = _mix(_shift_flat(y, h, w, 1), mixings[s])
        return y.view(b, self.out_channels, h, w)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        r""":math:`T^\top y`, ``[B, K, H, W] -> [B, M, H, W]``."""
        _check_input(y, self.out_channels, "y")
        b, _, h, w = y.shape
        y = y.reshape(b, self.out_channels, h * w)
        mixings = self.mixings
        for s in reversed(range(self.n_stages)):
            y = _shift_flat(_mix(y, mixings[s].T), h, w, -1)
        return _mix(y, self.first.T).view(b, self.in_channels, h, w)

    def orthogonality_error(self) -> float:
        r"""Largest entry of :math:`|Q^\top Q - I|` over the stored matrices (float64)."""
        errors = [orthogonality_error(self.first)]
        if self.n_stages > 0:
            errors.append(orthogonality_error(self.mixings))
        return float(max(errors))

    def norm_bound(self) -> float:
        r"""Upper bound of :math:`\|T\|_2` from the stored matrices: :math:`\prod_Q \|Q\|_2`.

        :math:`\|Q\|_2^2 \le 1 + \|Q^\top Q - I\|_2`; equals 1 up to rounding.
        """
        bound = 1.0
        mats = [self.first] + ([m for m in self.mixings] if self.n_stages > 0 else [])
        for q in mats:
            q64 = q.detach().to(torch.float64)
            gram = q64.T @ q64
            dev = torch.linalg.matrix_norm(
                gram - torch.eye(gram.shape[0], dtype=torch.float64, device=q.device), ord=2
            )
            bound *= float(torch.sqrt(1.0 + dev))
        return bound

    def as_matrix(self, height: int, width: int) -> torch.Tensor:
        """The dense ``[K H W, M H W]`` matrix of :math:`T` (for tests on small images)."""
        n = self.in_channels * height * width
        basis = torch.eye(n, dtype=self.first.dtype, device=self.first.device)
        basis = basis.reshape(n, self.in_channels, height, width)
        return self.forward(basis).reshape(n, -1).T

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"n_stages={self.n_stages}, parametrization={self.parametrization!r}"
        )
