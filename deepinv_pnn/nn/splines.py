r"""Learnable linear splines, one per channel, evaluated in one vectorised pass.

A linear spline :math:`\varphi_i` on the uniform grid :math:`t_k = -r + k h`,
:math:`k = 0, \dots, K-1`, :math:`h = 2r/(K-1)`, is given by its values
:math:`c_{i,k} = \varphi_i(t_k)` and extended linearly outside :math:`[-r, r]` with the
slope of its end segments. Constraints are imposed by a projection of the slopes
:math:`(c_{i,k+1} - c_{i,k})/h` onto an interval (``slope_min``, ``slope_max``), e.g.
nondecreasing splines (slopes :math:`\geq 0`) for convex ridge regularisers
:footcite:t:`goujon2023neural`, optionally with zero end slopes so that
:math:`\varphi_i` is bounded (a clipped spline). The projected spline is shifted so that
:math:`\varphi_i(0) = 0`.

The potential :math:`\psi_i(x) = \int_0^x \varphi_i` is piecewise quadratic and evaluated
exactly (:meth:`LinearSpline.potential`); the second-order total variation
:math:`\mathrm{TV}^{(2)}(\varphi_i) = \sum_k |c_{i,k+1} - 2c_{i,k} + c_{i,k-1}|/h` is the
sparsity penalty that favours few knots (:meth:`LinearSpline.tv2`).

Evaluation looks up the two neighbouring coefficients of each input with one
``torch.take`` into the small ``[C, K]`` table; the backward pass is written by hand
(the derivative with respect to the input is the slope of the active segment, the one
with respect to the coefficients one ``bincount``), which avoids autograd's
``index_put(accumulate=True)`` on CPU, the cause of the known slowdown of gather-based
splines (see ``benchmarks/bench_ridge_splines.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from deepinv_pnn.validation import check_bounds, check_count, check_positive


def _locate(x: torch.Tensor, num_knots: int, x_min: float, h: float, channels: int):
    """Left-knot index in the flat ``[C*K]`` table and the (unclamped) fraction."""
    u = x * (1.0 / h) - x_min / h
    idx = torch.floor(u).clamp_(0, num_knots - 2)
    frac = u - idx
    shape = [1, channels] + [1] * (x.dim() - 2)
    offset = torch.arange(channels, device=x.device, dtype=x.dtype).view(shape) * num_knots
    flat = (idx + offset).long()
    return flat, frac


class _SplineValue(torch.autograd.Function):
    """phi(x) with a hand-written backward (slope gather, bincount for coefficients)."""

    @staticmethod
    def forward(ctx, x, coeffs, x_min, h):
        channels, num_knots = coeffs.shape
        flat, frac = _locate(x, num_knots, x_min, h, channels)
        table = coeffs.reshape(-1)
        left = torch.take(table, flat)
        delta = torch.take(table, flat + 1) - left
        ctx.save_for_backward(flat, frac, delta)
        ctx.shape = coeffs.shape
        ctx.h = h
        return left + frac * delta

    @staticmethod
    def backward(ctx, grad_out):
        flat, frac, delta = ctx.saved_tensors
        grad_x = grad_c = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_out * delta / ctx.h
        if ctx.needs_input_grad[1]:
            n = ctx.shape[0] * ctx.shape[1]
            idx = flat.reshape(-1)
            g = grad_out.reshape(-1)
            f = frac.reshape(-1)
            grad_c = torch.bincount(idx, weights=g * (1 - f), minlength=n)
            grad_c = grad_c + torch.bincount(idx + 1, weights=g * f, minlength=n)
            grad_c = grad_c.to(grad_out.dtype).view(ctx.shape)
        return grad_x, grad_c, None, None


def spline_value(x: torch.Tensor, coeffs: torch.Tensor, x_min: float, h: float) -> torch.Tensor:
    r"""Evaluate per-channel linear splines, vectorised.

    :param torch.Tensor x: input ``[B, C, ...]``.
    :param torch.Tensor coeffs: values at the knots ``[C, K]``.
    :param float x_min: first knot.
    :param float h: knot spacing.
    :return: :math:`\varphi_c(x)` with the shape of ``x``.
    """
    return _SplineValue.apply(x, coeffs.to(x.dtype), x_min, h)


def spline_value_gather(x: torch.Tensor, coeffs: torch.Tensor, x_min: float, h: float) -> torch.Tensor:
    """Reference gather-based evaluation (autograd through advanced indexing); for tests and benchmarks."""
    channels, num_knots = coeffs.shape
    u = (x - x_min) / h
    idx = torch.clamp(torch.floor(u), 0, num_knots - 2).long()
    frac = u - idx
    shape = [1, channels] + [1] * (x.dim() - 2)
    ch = torch.arange(channels, device=x.device).view(shape).expand_as(idx)
    c = coeffs.to(x.dtype)
    left = c[ch, idx]
    return left + frac * (c[ch, idx + 1] - left)


def spline_potential(x: torch.Tensor, coeffs: torch.Tensor, x_min: float, h: float) -> torch.Tensor:
    r"""Evaluate :math:`\psi_c(x) = \int_{t_0}^{x} \varphi_c` exactly (piecewise quadratic).

    The constant is the one of the integral from the first knot; subtract the value at
    0 to normalise. Differentiable in ``x`` (its derivative is :func:`spline_value`).
    """
    channels, num_knots = coeffs.shape
    c = coeffs.to(x.dtype)
    cum = torch.cumsum(h * 0.5 * (c[:, 1:] + c[:, :-1]), dim=1)
    cum = torch.cat([torch.zeros_like(c[:, :1]), cum], dim=1).reshape(-1)
    flat, frac = _locate(x, num_knots, x_min, h, channels)
    table = c.reshape(-1)
    left = torch.take(table, flat)
    delta = torch.take(table, flat + 1) - left
    return torch.take(cum, flat) + h * frac * (left + 0.5 * frac * delta)


@torch.no_grad()
def frozen_spline(
    coeffs: torch.Tensor,
    x_min: float,
    h: float,
    group: torch.Tensor | None = None,
    pre: torch.Tensor | float = 1.0,
    post: torch.Tensor | float | None = None,
):
    r"""The map :math:`z \mapsto b\,\varphi_g(a z)` for a fixed coefficient table, without autograd.

    For iterative solvers that evaluate the same splines many times: the table, its segment
    differences and the affine map to knot units are prepared once, and each call is about
    ten element-wise passes (one ``floor``, two ``take``), written in place.

    :param torch.Tensor coeffs: values at the knots ``[G, K]`` (in the dtype of the inputs).
    :param float x_min: first knot.
    :param float h: knot spacing.
    :param torch.Tensor group: which row of ``coeffs`` each input entry uses, an integer-valued
        tensor broadcastable to the input (e.g. the channel index ``[1, C, 1, 1]`` or the sample
        index ``[N, 1, 1, 1]``); ``None`` when ``G = 1``.
    :param pre: the factor :math:`a` (a number or a tensor broadcastable to the input).
    :param post: the factor :math:`b` (``None``: 1).
    :return: a function of ``z`` with the shape of ``z``.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.nn.splines import frozen_spline
    >>> phi = frozen_spline(torch.tensor([[-1.0, 0.0, 1.0]]), x_min=-1.0, h=1.0, pre=2.0)
    >>> phi(torch.tensor([0.25, 3.0])).tolist()  # phi(u) = u, extended linearly
    [0.5, 6.0]
    """
    coeffs = coeffs.detach()
    num_groups, num_knots = coeffs.shape
    if group is None and num_groups != 1:
        raise ValueError(f"a table of {num_groups} rows needs a group index")
    table = coeffs.reshape(-1).contiguous()
    delta = torch.cat([coeffs[:, 1:] - coeffs[:, :-1], torch.zeros_like(coeffs[:, :1])], 1).reshape(-1)
    scale = pre / h
    shift = -x_min / h
    offset = None if group is None else (group * num_knots).to(coeffs.dtype)

    def evaluate(z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            u = (z * scale).add_(shift)  # knot units
            idx = torch.floor(u).clamp_(0, num_knots - 2)
            frac = u.sub_(idx)  # unclamped: linear extension beyond the end knots
            if offset is not None:
                idx = idx.add_(offset)
            flat = idx.long()
            out = torch.take(delta, flat).mul_(frac).add_(torch.take(table, flat))
            return out if post is None else out.mul_(post)

    return evaluate


def clamp_closed(x: torch.Tensor, lo: float | None, hi: float | None) -> torch.Tensor:
    """``clamp`` whose gradient is the identity on the closed interval ``[lo, hi]``.

    ``torch.clamp`` passes no gradient at the bounds themselves, so a spline initialised with
    slopes exactly on a bound (e.g. the soft-clip start of slopes 0 and 1) could never move
    them; here only the strictly outside values are cut off from the gradient.

    :param torch.Tensor x: the values.
    :param float lo: lower bound (or ``None``).
    :param float hi: upper bound (or ``None``).
    """
    inside = torch.ones_like(x, dtype=torch.bool)
    if lo is not None:
        inside &= x >= lo
    if hi is not None:
        inside &= x <= hi
    return torch.where(inside, x, torch.clamp(x, lo, hi).detach())


class LinearSpline(nn.Module):
    r"""``C`` learnable linear splines :math:`\varphi_i`, applied channel-wise to ``[B, C, ...]``.

    :param int num_activations: number of channels ``C``.
    :param int num_knots: number of knots ``K`` (odd, so that 0 is a knot).
    :param float x_range: the knots cover :math:`[-r, r]`.
    :param str init: ``"zero"``, ``"identity"`` or ``"soft-clip"`` (identity clipped at
        :math:`\pm r/2`).
    :param float slope_min: lower bound of the slopes (``None``: none), e.g. 0 for
        nondecreasing splines.
    :param float slope_max: upper bound of the slopes (``None``: none).
    :param bool clip_ends: zero slope outside :math:`[-r, r]` (bounded spline).

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.nn.splines import LinearSpline
    >>> phi = LinearSpline(4, num_knots=11, x_range=1.0, init="identity", slope_min=0.0)
    >>> phi(torch.tensor([0.5]).view(1, 1, 1).expand(1, 4, 1)).flatten().tolist()
    [0.5, 0.5, 0.5, 0.5]
    """

    def __init__(
        self,
        num_activations: int,
        num_knots: int = 21,
        x_range: float = 0.1,
        init: str = "zero",
        slope_min: float | None = None,
        slope_max: float | None = None,
        clip_ends: bool = False,
    ):
        super().__init__()
        num_activations = check_count(num_activations, "num_activations")
        if check_count(num_knots, "num_knots", minimum=3) % 2 == 0:
            raise ValueError(f"num_knots must be odd and >= 3, got {num_knots}")
        x_range = check_positive(x_range, "x_range")
        check_bounds(slope_min, slope_max, "slope_min", "slope_max")
        self.num_activations = int(num_activations)
        self.num_knots = int(num_knots)
        self.x_range = float(x_range)
        self.h = 2 * self.x_range / (self.num_knots - 1)
        self.slope_min = slope_min
        self.slope_max = slope_max
        self.clip_ends = clip_ends
        grid = torch.linspace(-self.x_range, self.x_range, self.num_knots)
        if init == "zero":
            values = torch.zeros_like(grid)
        elif init == "identity":
            values = grid.clone()
        elif init == "soft-clip":
            values = grid.clamp(-self.x_range / 2, self.x_range / 2)
        else:
            raise ValueError(f"init must be 'zero', 'identity' or 'soft-clip', got {init!r}")
        self.coefficients = nn.Parameter(values.repeat(self.num_activations, 1))

    @property
    def knots(self) -> torch.Tensor:
        """The knot positions ``[K]``."""
        c = self.coefficients
        return torch.linspace(-self.x_range, self.x_range, self.num_knots, device=c.device, dtype=c.dtype)

    def projected_coefficients(self) -> torch.Tensor:
        r"""Coefficients of the constrained spline, with :math:`\varphi_i(0) = 0`, ``[C, K]``."""
        c = self.coefficients
        constrained = self.slope_min is not None or self.slope_max is not None or self.clip_ends
        if constrained:
            slopes = (c[:, 1:] - c[:, :-1]) / self.h
            slopes = clamp_closed(slopes, self.slope_min, self.slope_max)
            if self.clip_ends:
                mask = torch.ones_like(slopes)
                mask[:, 0] = 0
                mask[:, -1] = 0
                slopes = slopes * mask
            c = torch.cat([torch.zeros_like(c[:, :1]), torch.cumsum(slopes * self.h, dim=1)], dim=1)
        return c - c[:, self.num_knots // 2 : self.num_knots // 2 + 1]

    @torch.no_grad()
    def project_(self) -> None:
        """Replace the coefficients by the projected ones (in place): projected gradient."""
        self.coefficients.copy_(self.projected_coefficients())

    def slopes(self) -> torch.Tensor:
        """Slopes of the projected spline's segments ``[C, K-1]``."""
        c = self.projected_coefficients()
        return (c[:, 1:] - c[:, :-1]) / self.h

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 2 or x.shape[1] != self.num_activations:
            raise ValueError(
                f"x must have shape [B, {self.num_activations}, ...], got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"x must have a floating-point dtype, got {x.dtype}")
        if not torch.isfinite(x).all():  # a NaN would index outside the knot table
            raise ValueError("x contains NaN or Inf values")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\varphi_i(x_{b,i,\dots})` for ``x`` of shape ``[B, C, ...]``.

        :raises ValueError: on a wrong shape or non-finite entries.
        """
        self._check_input(x)
        return self._value(x)

    def _value(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` for a checked input (the ridge regularisers check their own input)."""
        return spline_value(x, self.projected_coefficients(), -self.x_range, self.h)

    def potential(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\psi_i(x) = \int_0^x \varphi_i(t)\,dt`, exact, same shape as ``x``.

        :raises ValueError: on a wrong shape or non-finite entries.
        """
        self._check_input(x)
        return self._potential(x)

    def _potential(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`potential` for a checked input."""
        c = self.projected_coefficients()
        psi = spline_potential(x, c, -self.x_range, self.h)
        zero = torch.zeros((1, self.num_activations) + (1,) * (x.dim() - 2), dtype=x.dtype, device=x.device)
        return psi - spline_potential(zero, c, -self.x_range, self.h)

    def tv2(self) -> torch.Tensor:
        r"""Second-order total variation :math:`\sum_i \sum_k |c_{i,k+1} - 2c_{i,k} + c_{i,k-1}| / h`."""
        c = self.projected_coefficients()
        return (c[:, 2:] - 2 * c[:, 1:-1] + c[:, :-2]).abs().sum() / self.h

    def tv2_per_channel(self) -> torch.Tensor:
        """The TV^2 of each spline ``[C]`` (used to prune dead splines)."""
        c = self.projected_coefficients()
        return (c[:, 2:] - 2 * c[:, 1:-1] + c[:, :-2]).abs().sum(1) / self.h

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the splines ``index`` (pruning)."""
        self.coefficients = nn.Parameter(self.coefficients.data[index].clone())
        self.num_activations = int(self.coefficients.shape[0])

    def extra_repr(self) -> str:
        return (
            f"num_activations={self.num_activations}, num_knots={self.num_knots}, "
            f"x_range={self.x_range}, slope_min={self.slope_min}, slope_max={self.slope_max}, "
            f"clip_ends={self.clip_ends}"
        )
