r"""Invertible blocks and (conditional) normalizing flows with exact log-determinants.

Every block maps ``x -> (y, log|det J|)`` with ``log|det J|`` of shape ``[B]`` and has an
exact inverse (``rev=True``, returning the log-determinant of the inverse map). Blocks act
on dimension 1 of ``[B, D]`` vectors or ``[B, C, H, W]`` images (then pixel-wise, like
GLOW's 1x1 convolutions), and accept an optional condition ``cond``.

- :class:`ActNorm`: per-channel affine map, initialised from the first batch (GLOW).
- :class:`InvertibleMixing`: learned invertible channel mixing in LU form
  (1x1 convolution for images), :math:`\log|\det| = (\#\text{pixels}) \sum \log|s|`.
- :class:`Permutation`: a fixed random permutation of the channels.
- :class:`AffineCoupling`: :math:`y_2 = x_2 e^{s(x_1, c)} + t(x_1, c)`, soft-clamped scales.
- :class:`SequentialFlow`: a chain of blocks.

:func:`patch_flow` builds the dense flow used by :class:`deepinv_pnn.optim.PatchNR`: deepinv's
:class:`deepinv.optim.prior.GLOWCouplingBlock` interleaved with ActNorm and invertible
mixing, which deepinv's own ``NormalizingFlow`` lacks (deepinv issue #389).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from deepinv_pnn.validation import check_count


def _spatial(x: torch.Tensor) -> int:
    return int(math.prod(x.shape[2:])) if x.dim() > 2 else 1


def _view(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a ``[C]`` vector to broadcast over dimension 1 of ``x``."""
    return v.view((1, -1) + (1,) * (x.dim() - 2))


class ActNorm(nn.Module):
    r"""Per-channel affine map :math:`y = (x - b) e^{-\log\sigma}`, initialised on the first batch
    so that the output has zero mean and unit variance per channel.

    :param int channels: size of dimension 1.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        dims = [0] + list(range(2, x.dim()))
        mean = x.mean(dim=dims)
        std = x.std(dim=dims) if x.numel() // x.shape[1] > 1 else torch.ones_like(mean)
        self.bias.copy_(mean)
        self.log_scale.copy_(torch.log(std.clamp_min(1e-6)))
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None, rev: bool = False):
        if not rev and not bool(self.initialized) and self.training:
            self._initialize(x)
        logdet = -self.log_scale.sum() * _spatial(x) * x.new_ones(x.shape[0])
        if not rev:
            return (x - _view(self.bias, x)) * torch.exp(-_view(self.log_scale, x)), logdet
        return x * torch.exp(_view(self.log_scale, x)) + _view(self.bias, x), -logdet


class InvertibleMixing(nn.Module):
    r"""Learned invertible linear map over dimension 1, :math:`W = P L (U + \operatorname{diag}(\operatorname{sign}\cdot e^{\log|s|}))`.

    :param int channels: size of dimension 1.
    :param int seed: seed of the random orthogonal initialisation.
    """

    def __init__(self, channels: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=g, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(q)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p.float())
        self.register_buffer("sign", torch.sign(s).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.lower = nn.Parameter(lower.float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(s.abs()).float())

    def weight(self) -> torch.Tensor:
        eye = torch.eye(self.lower.shape[0], dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.lower_mask + eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None, rev: bool = False):
        w = self.weight().to(x.dtype)
        logdet = self.log_s.sum().to(x.dtype) * _spatial(x) * x.new_ones(x.shape[0])
        if rev:
            w, logdet = torch.linalg.inv(w), -logdet
        y = torch.einsum("ij,bj...->bi...", w, x)
        return y, logdet


class Permutation(nn.Module):
    """A fixed random permutation of dimension 1 (log-determinant 0).

    :param int channels: size of dimension 1.
    :param int seed: seed of the permutation.
    """

    def __init__(self, channels: int, seed: int = 0):
        super().__init__()
        perm = torch.randperm(channels, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("perm", perm)
        self.register_buffer("inverse", torch.argsort(perm))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None, rev: bool = False):
        return x[:, self.inverse if rev else self.perm], x.new_zeros(x.shape[0])


class AffineCoupling(nn.Module):
    r"""Affine coupling :math:`y_1 = x_1`, :math:`y_2 = x_2 \odot e^{s} + t` with
    :math:`(s, t) = \text{subnet}([x_1, c])`, :math:`s` soft-clamped to
    :math:`(-\text{clamp}, \text{clamp})` by :math:`\text{clamp}\cdot\frac2\pi\arctan(s/\text{clamp})`.

    :param int channels: size of dimension 1 (split into ``channels // 2`` and the rest).
    :param Callable subnet: ``subnet(c_in, c_out) -> nn.Module`` (an MLP for vectors, a
        CNN for images); its last layer is zero-initialised so the block starts as identity.
    :param int cond_channels: channels of the condition concatenated to :math:`x_1`.
    :param float clamp: soft-clamp of the log-scales.
    """

    def __init__(self, channels: int, subnet: Callable, cond_channels: int = 0, clamp: float = 1.6):
        super().__init__()
        self.split = channels // 2
        self.rest = channels - self.split
        self.clamp = clamp
        self.net = subnet(self.split + cond_channels, 2 * self.rest)
        last = [m for m in self.net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None, rev: bool = False):
        x1, x2 = x[:, : self.split], x[:, self.split :]
        inp = x1 if cond is None else torch.cat([x1, cond], dim=1)
        s, t = self.net(inp).chunk(2, dim=1)
        s = self.clamp * (2 / math.pi) * torch.atan(s / self.clamp)
        logdet = s.flatten(1).sum(1)
        if not rev:
            return torch.cat([x1, x2 * torch.exp(s) + t], dim=1), logdet
        return torch.cat([x1, (x2 - t) * torch.exp(-s)], dim=1), -logdet


class _Unconditional(nn.Module):
    """Adapter for blocks with signature ``block(x, rev=...)`` (e.g. deepinv's GLOW coupling)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x, cond=None, rev=False):
        return self.block(x, rev=rev)


class SequentialFlow(nn.Module):
    r"""A chain of invertible blocks :math:`f = f_K \circ \dots \circ f_1`.

    ``forward(x, cond, rev=False)`` returns :math:`(f(x), \log|\det J_f(x)|)`;
    ``rev=True`` applies :math:`f^{-1}` and returns :math:`\log|\det J_{f^{-1}}|`.

    :param list blocks: the blocks, each ``block(x, cond=None, rev=False) -> (y, logdet)``.
    """

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None, rev: bool = False):
        logdet = x.new_zeros(x.shape[0])
        for block in (reversed(self.blocks) if rev else self.blocks):
            x, ld = block(x, cond=cond, rev=rev)
            logdet = logdet + ld
        return x, logdet


def mlp(hidden: int, activation: type[nn.Module] = nn.SiLU) -> Callable[[int, int], nn.Module]:
    """Subnet factory: a 2-hidden-layer MLP of width ``hidden``.

    The default SiLU keeps the flow's log-density smooth (a ReLU network is only piecewise
    smooth, so the prox of the resulting regulariser can sit on a kink).
    """

    def build(c_in: int, c_out: int) -> nn.Module:
        return nn.Sequential(
            nn.Linear(c_in, hidden), activation(), nn.Linear(hidden, hidden), activation(), nn.Linear(hidden, c_out)
        )

    return build


def conv_net(hidden: int, kernel_size: int = 3) -> Callable[[int, int], nn.Module]:
    """Subnet factory: a 3-layer ReLU CNN of width ``hidden`` (same padding)."""
    pad = kernel_size // 2

    def build(c_in: int, c_out: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(c_in, hidden, kernel_size, padding=pad), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
            nn.Conv2d(hidden, c_out, kernel_size, padding=pad),
        )

    return build


def patch_flow(dim: int, n_blocks: int = 5, hidden: int = 256, mixing: str = "lu", clamp: float = 1.6, seed: int = 0) -> SequentialFlow:
    r"""Dense flow on patch vectors: ``n_blocks`` x [ActNorm, mixing, GLOW coupling].

    :param int dim: patch dimension :math:`C p^2`.
    :param int n_blocks: number of blocks.
    :param int hidden: width of the coupling MLPs.
    :param str mixing: ``"lu"`` (learned :class:`InvertibleMixing`), ``"permutation"`` or ``"none"``.
    :return: a :class:`SequentialFlow` mapping patches to latent codes.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.nn.flows import patch_flow
    >>> flow = patch_flow(36, n_blocks=2, hidden=32)
    >>> z, logdet = flow(torch.randn(5, 36))
    >>> x, _ = flow(z, rev=True)
    >>> z.shape, logdet.shape
    (torch.Size([5, 36]), torch.Size([5]))
    """
    from deepinv.optim.prior import GLOWCouplingBlock

    dim, n_blocks, hidden = check_count(dim, "dim"), check_count(n_blocks, "n_blocks"), check_count(hidden, "hidden")
    blocks: list[nn.Module] = []
    for k in range(n_blocks):
        blocks.append(ActNorm(dim))
        if mixing == "lu":
            blocks.append(InvertibleMixing(dim, seed=seed + k))
        elif mixing == "permutation":
            blocks.append(Permutation(dim, seed=seed + k))
        elif mixing != "none":
            raise ValueError(f"mixing must be 'lu', 'permutation' or 'none', got {mixing!r}")
        blocks.append(_Unconditional(GLOWCouplingBlock(dim, mlp(hidden), clamp=clamp)))
    return SequentialFlow(blocks)


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """Space-to-depth by 2: ``[B, C, H, W] -> [B, 4C, H/2, W/2]`` (volume preserving)."""
    return F.pixel_unshuffle(x, 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`squeeze`."""
    return F.pixel_shuffle(x, 2)
