r"""Multi-convolution: a chain of convolutions without nonlinearity, with its exact adjoint.

:math:`W = W_L \circ \dots \circ W_1`, each :math:`W_l` a zero-padded "same" convolution
with an odd kernel and no bias; the kernels of :math:`W_1` have zero mean, so constant
images are in the kernel of :math:`W` (ridge regularisers are then shift invariant in
intensity). The adjoint :math:`W^\top` chains the transposed convolutions in reverse
order and is exact (``conv_transpose2d`` with the same padding).

With ``normalize=True`` the operator is divided by a rigorous upper bound of its
spectral norm, so that :math:`\|W\| \le 1` holds by construction
:footcite:t:`goujon2024learning`. The bound comes from the Fourier transform: for zero
or circular padding :math:`\|W\|^2 \le \sup_\omega \lambda_{\max}(\hat T(\omega))` where
:math:`T = W^\top W \delta` is the (``2n+1``-wide) impulse response of the normal operator;
the trace replaces :math:`\lambda_{\max}` for several input channels. The supremum of the
trigonometric polynomial :math:`\hat T` of degree :math:`n` is bounded from its maximum on
an ``N x N`` FFT grid by Bernstein's inequality,
:math:`\sup \hat T \le \max_{\mathrm{grid}} \hat T / (1 - 2\pi^2 n^2 / N^2)`. This bound is
differentiable (used in training) and cached without autograd; the cache is refreshed
when the weights change (version counters: optimiser steps, :meth:`load_state_dict`) and after :meth:`to`.
:meth:`MultiConv2d.spectral_norm` measures the actual norm by power iteration (cached
eigenvector, refreshed after loading).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deepinv_pnn.validation import check_count, check_positive


def _channel_counts(channels: object) -> tuple[int, ...]:
    """``channels`` as a tuple of integers ``>= 1`` (at least two of them)."""
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence):
        raise TypeError(
            f"channels must be a sequence of channel counts such as (1, 8, 32), got {type(channels).__name__}"
        )
    if len(channels) < 2:
        raise ValueError(f"channels must list >= 2 positive counts, got {tuple(channels)}")
    return tuple(check_count(c, f"channels[{i}]") for i, c in enumerate(channels))


class MultiConv2d(nn.Module):
    r"""Chain of 2-D convolutions :math:`W` with exact adjoint and spectral normalisation.

    :param tuple channels: channel counts from input to output, e.g. ``(1, 8, 32)``.
    :param int kernel_size: odd kernel size of every convolution.
    :param bool zero_mean: the first layer's kernels have zero mean.
    :param bool normalize: divide by the Fourier bound of :math:`\|W\|` (so :math:`\|W\|\le 1`).
    :param int fft_size: FFT grid ``N`` of the bound.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.nn.multiconv import MultiConv2d
    >>> W = MultiConv2d((1, 4, 8), kernel_size=5)
    >>> x, y = torch.randn(1, 1, 16, 16), torch.randn(1, 8, 16, 16)
    >>> bool(torch.allclose((W(x) * y).sum(), (x * W.adjoint(y)).sum(), atol=1e-5))
    True
    >>> W.spectral_norm() <= 1 + 1e-4
    True
    """

    def __init__(
        self,
        channels: tuple = (1, 8, 32),
        kernel_size: int = 7,
        zero_mean: bool = True,
        normalize: bool = True,
        fft_size: int = 512,
    ):
        super().__init__()
        channels = _channel_counts(channels)
        if check_count(kernel_size, "kernel_size") % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        kernel_size = int(kernel_size)
        self.channels = list(channels)
        self.kernel_size = kernel_size
        self.padding = kernel_size // 2
        self.zero_mean = zero_mean
        self.normalize = normalize
        self.fft_size = check_count(fft_size, "fft_size")
        self.weights = nn.ParameterList()
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            w = torch.randn(c_out, c_in, kernel_size, kernel_size) / math.sqrt(c_in * kernel_size**2)
            self.weights.append(nn.Parameter(w))
        if normalize:
            self._fft_margin(self.fft_size)  # a grid too coarse for the bound fails here, not at forward
        self._bound_cache: dict = {}
        self._shared = None
        self.collapse = False
        self._kernel_cache: dict = {}
        self._u: torch.Tensor | None = None
        self.register_load_state_dict_post_hook(lambda module, keys: module.clear_cache())

    # ------------------------------------------------------------------ kernels
    def kernels(self) -> list[torch.Tensor]:
        """The kernels of the chain (the first one centred when ``zero_mean``)."""
        ks = list(self.weights)
        if self.zero_mean:
            ks[0] = ks[0] - ks[0].mean(dim=(-2, -1), keepdim=True)
        return ks

    @property
    def radius(self) -> int:
        """Half-width of the composite kernel."""
        return self.padding * len(self.weights)

    def _apply(self, fn, *args, **kwargs):
        self.clear_cache()
        return super()._apply(fn, *args, **kwargs)

    def clear_cache(self) -> None:
        """Forget the cached norm bound and power-iteration vector."""
        self._bound_cache = {}
        self._kernel_cache = {}
        self._u = None

    # --------------------------------------------------------------- operators
    def _raw_forward(self, x: torch.Tensor, kernels: list[torch.Tensor]) -> torch.Tensor:
        for k in kernels:
            x = F.conv2d(x, k.to(x.dtype), padding=self.padding)
        return x

    def _raw_adjoint(self, y: torch.Tensor, kernels: list[torch.Tensor]) -> torch.Tensor:
        for k in reversed(kernels):
            y = F.conv_transpose2d(y, k.to(y.dtype), padding=self.padding)
        return y

    def scale(self) -> torch.Tensor:
        """The factor applied to the raw chain: ``1 / bound`` when normalising, else 1.

        In eval mode or without autograd the value is a constant, cached until the weights
        change (their version counters: an optimiser step, :meth:`load_state_dict`); in
        training mode with autograd it is recomputed (differentiably) on each call, except
        inside :meth:`shared_scale`.
        """
        w = self.weights[0]
        if not self.normalize:
            return torch.ones((), dtype=w.dtype, device=w.device)
        key = (w.device, w.dtype, tuple(p._version for p in self.weights))
        if self.training and torch.is_grad_enabled() and w.requires_grad:
            if self._shared is not None and self._shared[0] == key:
                return self._shared[1]
            value = 1.0 / self.norm_bound()
            if self._shared is not None:
                self._shared = (key, value)
            return value
        if self._bound_cache.get("key") != key:
            with torch.no_grad():
                self._bound_cache = {"key": key, "value": 1.0 / self.norm_bound()}
        return self._bound_cache["value"]

    @contextlib.contextmanager
    def shared_scale(self):
        """Within this block the differentiable norm bound is computed once and reused
        (one training step: several applications of W share one graph)."""
        self._shared = (None, None)
        try:
            yield self
        finally:
            self._shared = None

    def _collapsed_kernel(self, dtype) -> torch.Tensor:
        w = self.weights[0]
        key = (w.device, dtype, tuple(p._version for p in self.weights))
        if self._kernel_cache.get("key") != key:
            with torch.no_grad():
                kernel = self.impulse_response().flip(-1, -2).to(dtype).contiguous()
            self._kernel_cache = {"key": key, "value": kernel}
        return self._kernel_cache["value"]

    def _check_input(self, x: torch.Tensor, channels: int, name: str) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must have a floating-point dtype, got {x.dtype}")
        if x.dim() not in (3, 4) or x.shape[-3] != channels:
            raise ValueError(f"{name} must have shape [B, {channels}, H, W], got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or Inf values")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`W x` for ``x`` of shape ``[B, channels[0], H, W]``.

        With ``self.collapse = True`` (inference only) the chain is applied as one
        convolution with its composite kernel (the same filters; the zero padding is then
        applied once rather than after each layer, which changes :math:`W` within
        ``radius`` pixels of the border); whether it is faster depends on the device
        (measure: ``benchmarks/bench_ridge_speed.py`` found no gain on CPU).

        :raises ValueError: on a wrong channel count or non-finite entries.
        """
        self._check_input(x, self.channels[0], "x")
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` for a checked input (solvers check theirs once)."""
        if self.collapse:
            return F.conv2d(x, self._collapsed_kernel(x.dtype), padding=self.radius)
        return self._raw_forward(x, self.kernels()) * self.scale().to(x.dtype)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        r""":math:`W^\top y` for ``y`` of shape ``[B, channels[-1], H, W]``."""
        self._check_input(y, self.channels[-1], "y")
        return self._adjoint(y)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """:meth:`adjoint` for a checked input."""
        if self.collapse:
            return F.conv_transpose2d(y, self._collapsed_kernel(y.dtype), padding=self.radius)
        return self._raw_adjoint(y, self.kernels()) * self.scale().to(y.dtype)

    transpose = adjoint

    @torch.no_grad()
    def frozen(self, dtype: torch.dtype | None = None):
        r"""``(forward, adjoint)``: :math:`W` and :math:`W^\top` with the normalised kernels
        computed once, for iterative solvers that apply them many times without autograd.

        The kernels are detached constants (no gradient reaches the weights) and the
        normalisation is folded into the first kernel; in ``collapse`` mode both apply the
        composite kernel. Values match :meth:`forward` and :meth:`adjoint` to rounding.

        :param torch.dtype dtype: the dtype of the inputs (default: the weights').
        """
        dtype = dtype or self.weights[0].dtype
        if self.collapse:
            kernel, r = self._collapsed_kernel(dtype), self.radius
            return (lambda x: F.conv2d(x, kernel, padding=r)), (lambda y: F.conv_transpose2d(y, kernel, padding=r))
        kernels = [k.detach().to(dtype) for k in self.kernels()]
        kernels[0] = (kernels[0] * self.scale().detach().to(dtype)).contiguous()
        pad = self.padding

        def forward(x):
            for k in kernels:
                x = F.conv2d(x, k, padding=pad)
            return x

        def adjoint(y):
            for k in reversed(kernels):
                y = F.conv_transpose2d(y, k, padding=pad)
            return y

        return forward, adjoint

    def impulse_response(self) -> torch.Tensor:
        """The composite kernel :math:`h` ``[C_out, C_in, 2r+1, 2r+1]`` of the (normalised)
        chain: :math:`Wx = h * x` (a true convolution, i.e. ``conv2d`` with ``h`` flipped)."""
        r = self.radius
        size = 2 * r + 1
        c_in = self.channels[0]
        w = self.weights[0]
        delta = torch.zeros(c_in, c_in, size, size, dtype=w.dtype, device=w.device)
        delta[torch.arange(c_in), torch.arange(c_in), r, r] = 1
        out = self._raw_forward(delta, self.kernels()) * self.scale()  # [C_in(batch), C_out, size, size]
        return out.transpose(0, 1)

    # -------------------------------------------------------------- norm bound
    def norm_bound(self, fft_size: int | None = None) -> torch.Tensor:
        r"""Differentiable upper bound of the spectral norm of the raw chain.

        :param int fft_size: FFT grid ``N`` (default ``self.fft_size``); must exceed
            :math:`\sqrt2\pi n` with :math:`n` twice the composite radius.
        :return: a 0-d tensor :math:`\ge \|W_{\text{raw}}\|`.
        """
        n_grid = self.fft_size if fft_size is None else check_count(fft_size, "fft_size")
        n = 2 * self.radius
        margin = self._fft_margin(n_grid)
        kernels = self.kernels()
        c_in = self.channels[0]
        size = 2 * n + 1
        w = kernels[0]
        delta = torch.zeros(c_in, c_in, size, size, dtype=w.dtype, device=w.device)
        delta[torch.arange(c_in), torch.arange(c_in), n, n] = 1
        normal = self._raw_adjoint(self._raw_forward(delta, kernels), kernels)
        trace = normal[torch.arange(c_in), torch.arange(c_in)].sum(0)  # [size, size]
        spectrum = torch.fft.rfft2(trace, s=(n_grid, n_grid)).abs()
        return torch.sqrt(spectrum.max() / margin)

    def _fft_margin(self, n_grid: int) -> float:
        r"""Bernstein's factor :math:`1 - 2\pi^2 n^2/N^2` of the bound on an ``N x N`` grid."""
        margin = 1.0 - 2 * math.pi**2 * (2 * self.radius) ** 2 / n_grid**2
        if margin <= 0.05:
            raise ValueError(f"fft_size {n_grid} is too small for a composite radius {self.radius}")
        return margin

    @torch.no_grad()
    def spectral_norm(self, n_iter: int = 100, size: int = 64, tol: float = 1e-7) -> float:
        r"""Spectral norm :math:`\|W\|` on ``size x size`` images, by power iteration on
        :math:`W^\top W` (the eigenvector estimate is cached between calls).

        :param int n_iter: maximum number of iterations.
        :param int size: image side of the iteration.
        :param float tol: relative change that stops the iteration.
        :return: the estimate (a lower bound that converges to the norm).
        """
        n_iter = check_count(n_iter, "n_iter")
        size = check_count(size, "size")
        tol = check_positive(tol, "tol", allow_zero=True)
        w = self.weights[0]
        shape = (1, self.channels[0], size, size)
        u = self._u
        if u is None or u.shape != shape or u.dtype != w.dtype or u.device != w.device:
            g = torch.Generator(device="cpu").manual_seed(0)
            u = torch.rand(shape, generator=g, dtype=torch.float64).to(dtype=w.dtype, device=w.device)
        value = 0.0
        for _ in range(n_iter):
            u = u / u.norm()
            v = self._adjoint(self._forward(u))
            new = float(v.norm())
            u = v
            if abs(new - value) <= tol * max(new, 1e-30):
                value = new
                break
            value = new
        self._u = u / u.norm()
        return math.sqrt(value)

    def keep_output_channels(self, index: torch.Tensor) -> None:
        """Keep only the output channels ``index`` of the last layer (pruning).

        :param index: integer indices in ``[0, C_out)`` (at least one), or a boolean mask ``[C_out]``.
        """
        last = self.weights[-1]
        index = _output_index(index, last.shape[0])
        self.weights[-1] = nn.Parameter(last.data[index].clone())
        self.channels[-1] = int(self.weights[-1].shape[0])
        self.clear_cache()


def _output_index(index: object, count: int) -> torch.Tensor:
    """``index`` as a non-empty integer index into ``count`` output channels."""
    index = torch.as_tensor(index)
    if index.dtype == torch.bool:
        if index.shape != (count,):
            raise ValueError(f"a boolean index must have shape [{count}], got {tuple(index.shape)}")
        index = torch.nonzero(index).flatten()
    elif index.is_floating_point() or index.is_complex() or index.dim() > 1:
        raise TypeError(f"index must be a 1-D integer tensor or list, got dtype {index.dtype}, shape {tuple(index.shape)}")
    index = index.reshape(-1)
    if index.numel() == 0:
        raise ValueError("index must keep at least one output channel, got an empty index")
    if int(index.min()) < 0 or int(index.max()) >= count:
        raise ValueError(f"index entries must lie in [0, {count}), got {index.tolist()}")
    return index
