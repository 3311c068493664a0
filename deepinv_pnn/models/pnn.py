r"""Proximal neural networks (PNNs): averaged denoisers by construction.

A PNN layer is :math:`x \mapsto T^\top \sigma(Tx + b)` with :math:`T` on the Stiefel
manifold and :math:`\sigma` a proximity operator (here soft-shrinkage
:math:`S_\lambda`, the prox of :math:`\lambda|\cdot|`). It is firmly nonexpansive for
both orientations :math:`T^\top T = I` and :math:`TT^\top = I`, so a composition
:math:`\Phi` of :math:`L` layers is :math:`\alpha`-averaged with
:math:`\alpha = L/(L+1)` (Hasannasab et al. 2020, Thm. 3.3; Hertrich et al. 2021).

The denoiser is the relaxed (scaled residual) network

.. math::
    D = \mathrm{Id} - t\,(\mathrm{Id} - \Phi) = (1-t)\,\mathrm{Id} + t\,\Phi,
    \qquad 0 < t < t_{\max} \le 1/\alpha,

which is :math:`t\alpha`-averaged, hence nonexpansive; with :math:`t \le 1/(2\alpha)`
it is firmly nonexpansive (a resolvent), which is what PnP-ADMM/DRS need.
:math:`\mathrm{Id} - t\Phi` itself is *not* nonexpansive for :math:`L \ge 2`
(two projections onto lines at 60 degrees are a counterexample), which is why the
residual is :math:`\mathrm{Id} - \Phi`.

One network serves every noise level by the scaling trick: with
:math:`s = \sigma_0/\sigma` and :math:`c = 1/2`,
:math:`D_\sigma(x) = c + s^{-1} D(s(x - c))`, which has the same averagedness constant.
"""

from __future__ import annotations

import math
import os

import deepinv as dinv
import torch
import torch.nn.functional as F
from torch import nn

from deepinv_pnn.nn.orthogonal_conv import ParsevalConv2d
from deepinv_pnn.nn.stiefel import StiefelLinear, orthogonality_error
from deepinv_pnn.pretrained import load_pretrained
from deepinv_pnn.validation import (
    check_batch_values,
    check_count,
    check_dtype_matches,
    check_image,
    check_positive,
    check_sigma,
)

SIGMA_MIN = 1e-4
CENTER = 0.5
SHIPPED = {
    "sigma25": ("convpnn_gray_sigma25.safetensors", 25 / 255),
    "sigma0.01": ("convpnn_gray_sigma001.safetensors", 0.01),
}
# problem-tuned weights, chosen by name: pretrained="deblur" (the sigma0 they were built for)
SHIPPED_FOR_PROBLEM = {
    "deblur": ("convpnn_gray_sigma001_deblur.safetensors", 0.01),
}
# orthonormal opponent colour transform: a gray ConvPNN denoises colour images channel by
# channel in this basis (an orthogonal change of variables keeps averagedness)
OPPONENT = torch.tensor(
    [
        [1 / math.sqrt(3)] * 3,
        [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)],
        [1 / math.sqrt(6), -2 / math.sqrt(6), 1 / math.sqrt(6)],
    ]
)


def soft_shrink(z: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    r"""Soft-shrinkage :math:`S_\lambda(z) = \mathrm{sign}(z)\max(|z|-\lambda, 0)`, the prox of :math:`\lambda|\cdot|`."""
    return z - torch.maximum(torch.minimum(z, threshold), -threshold)


class _Relaxation(nn.Module):
    """The relaxation parameter :math:`t = t_{\\max}\\,\\mathrm{sigmoid}(\\rho)` of :math:`D = (1-t)\\mathrm{Id} + t\\Phi`."""

    def __init__(self, n_layers: int, t: float, t_max: float | None, learn_t: bool):
        super().__init__()
        limit = (n_layers + 1) / n_layers
        t_max = limit if t_max is None else check_positive(t_max, "t_max")
        if t_max > limit + 1e-12:
            raise ValueError(
                f"t_max must be <= (L+1)/L = {limit:.4g} for an averaged denoiser with L={n_layers} layers, got {t_max}"
            )
        t = check_positive(t, "t")
        if t >= t_max:
            raise ValueError(f"t must lie in (0, t_max={t_max:.4g}), got {t}")
        self.n_layers, self.t_max = n_layers, t_max
        self.rho = nn.Parameter(torch.tensor(math.log(t / (t_max - t))), requires_grad=learn_t)

    @property
    def t(self) -> torch.Tensor:
        return self.t_max * torch.sigmoid(self.rho)

    def averaged_constant(self) -> float:
        r""":math:`t\alpha` with :math:`\alpha = L/(L+1)`: :math:`D` is averaged with this constant."""
        return float(self.t.detach()) * self.n_layers / (self.n_layers + 1)


class ParsevalPNN(nn.Module):
    r"""Dense PNN denoiser for signals / patches ``[B, d]``: :math:`D = (1-t)\mathrm{Id} + t\Phi`.

    .. math::
        \Phi = \phi_L \circ \cdots \circ \phi_1, \qquad
        \phi_i(x) = W_i^\top S_{\lambda_i}(W_i x + b_i),\quad W_i \in \mathrm{St}

    with :math:`W_i` of size ``hidden x dim``: tall (:math:`W^\top W = I`) when
    ``hidden >= dim``, wide (:math:`WW^\top = I`) otherwise (Hasannasab et al. 2020).

    :param int dim: signal length :math:`d`.
    :param int hidden: rows of each :math:`W_i`.
    :param int n_layers: :math:`L`.
    :param float t: initial relaxation, in :math:`(0, t_{\max})`.
    :param float t_max: upper bound of :math:`t` (default :math:`(L+1)/L`).
    :param bool learn_t: learn :math:`t`.
    :param float sigma0: noise level of the scaling trick (the training noise level).
    :param str parametrization: ``"manifold"``, ``"cayley"`` or ``"exp"`` (see :class:`~deepinv_pnn.nn.stiefel.StiefelLinear`).
    :param int seed: seed of the initialisation.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.models.pnn import ParsevalPNN
    >>> model = ParsevalPNN(dim=16, hidden=32, n_layers=3)
    >>> model(torch.randn(5, 16), 0.1).shape
    torch.Size([5, 16])
    """

    def __init__(
        self,
        dim: int,
        hidden: int,
        n_layers: int = 3,
        t: float = 1.0,
        t_max: float | None = None,
        learn_t: bool = True,
        sigma0: float = 0.1,
        parametrization: str = "manifold",
        seed: int = 0,
    ):
        super().__init__()
        dim, hidden = check_count(dim, "dim"), check_count(hidden, "hidden")
        n_layers = check_count(n_layers, "n_layers")
        sigma0 = check_positive(sigma0, "sigma0")
        generator = torch.Generator().manual_seed(seed)
        self.dim = dim
        self.layers = nn.ModuleList(
            StiefelLinear(
                dim, hidden, bias=True, parametrization=parametrization, generator=generator
            )
            for _ in range(n_layers)
        )
        init = 0.5 * sigma0 * math.sqrt(min(dim, hidden) / hidden) / n_layers
        self.log_thresholds = nn.Parameter(torch.full((n_layers,), math.log(init)))
        self.relaxation = _Relaxation(n_layers, t, t_max, learn_t)
        self.sigma0 = sigma0

    def phi(self, x: torch.Tensor) -> torch.Tensor:
        r"""The PNN :math:`\Phi` (:math:`\alpha`-averaged, :math:`\alpha = L/(L+1)`)."""
        for layer, log_lam in zip(self.layers, self.log_thresholds):
            x = layer.adjoint(soft_shrink(layer(x), log_lam.exp().to(x.dtype)))
        return x

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        r""":math:`D_\sigma(x)`; ``sigma=None`` applies :math:`D` unscaled.

        :param torch.Tensor x: ``[B, d]``.
        :param sigma: noise level (float or ``[B]`` tensor).
        """
        if isinstance(x, torch.Tensor) and x.dim() != 2:
            raise ValueError(
                f"x must have shape [B, d] = [B, {self.dim}], got shape {tuple(x.shape)}"
            )
        check_image(x, "x", ndim=2)
        if x.shape[1] != self.dim:
            raise ValueError(f"x must have {self.dim} features, got shape {tuple(x.shape)}")
        check_dtype_matches(self, x)
        t = self.relaxation.t.to(x.dtype)
        if sigma is None:
            return x - t * (x - self.phi(x))
        check_sigma(sigma)
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        check_batch_values(sigma, x.shape[0], "sigma")
        s = self.sigma0 / sigma.clamp_min(SIGMA_MIN).reshape(-1, 1)
        z = s * x
        return (z - t * (z - self.phi(z))) / s

    def orthogonality_error(self) -> float:
        """Largest orthogonality error of the layers' weights."""
        return max(float(orthogonality_error(layer.weight)) for layer in self.layers)

    def lipschitz_bound(self) -> float:
        r"""Bound of :math:`\mathrm{Lip}(D)` from the construction, :math:`1 + t(\prod_i\|W_i\|^2 - 1)`.

        See :meth:`ConvPNN.lipschitz_bound`; equals 1 up to rounding.
        """
        c = 1.0
        for layer in self.layers:
            c *= float(torch.linalg.matrix_norm(layer.weight.detach().double(), ord=2)) ** 2
        return 1.0 + float(self.relaxation.t.detach()) * max(c - 1.0, 0.0)

    def averaged_constant(self) -> float:
        r"""Averagedness constant :math:`tL/(L+1)` of :math:`D`."""
        return self.relaxation.averaged_constant()


class ConvPNN(dinv.models.Denoiser):
    r"""Convolutional PNN denoiser with exactly Parseval convolutions (circular boundary).

    .. math::
        D_\sigma(x) = c + s^{-1}\big((1-t)z + t\,E^\top\Phi(Ez)\big),\quad z = s(x-c),\ s=\sigma_0/\sigma,

    where :math:`E` embeds the ``channels`` image channels into ``state_channels`` (an
    isometry), :math:`\Phi = \phi_L\circ\cdots\circ\phi_1` with
    :math:`\phi_i(u) = T_i^\top S_{\lambda_i}(T_i u + b_i)` and :math:`T_i` a
    :class:`~deepinv_pnn.nn.orthogonal_conv.ParsevalConv2d` from ``state_channels`` to
    ``width`` channels (:math:`T_i^\top T_i = I`), one learnable threshold
    :math:`\lambda_i` shared by the channels of layer :math:`i` and a bias per channel.
    :math:`D_\sigma` is :math:`tL/(L+1)`-averaged for every :math:`\sigma`
    (Hertrich, Neumayer, Steidl, LAA 2021). A gray model (``channels=1``) also takes
    colour images: it denoises the three channels of an orthonormal opponent-colour
    transform, which keeps the certificate.

    Defaults (``width=64``, ``state_channels=16``, ``n_layers=8``, ``n_stages=2``): filters on
    the radius-2 diamond (inside 5x5), receptive field of radius 16, 10^5 parameters,
    about 1/3 of the multiply-adds of a 17-layer DnCNN, small enough for CPU tests.

    :param int channels: image channels the network was built for (1 or 3).
    :param int width: :math:`K`, channels of the frame coefficients.
    :param int state_channels: :math:`M`, channels carried between layers (``>= channels``).
    :param int n_layers: :math:`L`.
    :param int n_stages: shift stages of each convolution (filter radius).
    :param float sigma0: training noise level of the scaling trick.
    :param float t: initial relaxation in :math:`(0, t_{\max})`.
    :param float t_max: upper bound of :math:`t`; default :math:`(L+1)/L` (nonexpansive);
        :math:`(L+1)/(2L)` makes :math:`D` firmly nonexpansive.
    :param bool learn_t: learn :math:`t`.
    :param str parametrization: ``"manifold"`` (train with :mod:`deepinv_pnn.training.manifold`),
        ``"cayley"`` or ``"exp"`` (any optimiser keeps the constraint).
    :param pretrained: ``False``, ``True`` (shipped gray weights for ``sigma0`` = 25/255 or
        0.01, trained on denoising), ``"deblur"`` (gray, ``sigma0`` = 0.01, the small-sigma
        weights fine-tuned through the PnP-FBS fixed point of Gaussian deblurring, see
        :mod:`deepinv_pnn.training.pnp_objective`) or a path to a weights file.
    :param int seed: seed of the initialisation.
    :param device: device of the model.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.models.pnn import ConvPNN
    >>> model = ConvPNN(width=8, state_channels=2, n_layers=2)
    >>> model(torch.rand(1, 1, 17, 13), 0.1).shape
    torch.Size([1, 1, 17, 13])
    >>> model.lipschitz_bound() < 1 + 1e-5
    True
    """

    def __init__(
        self,
        channels: int = 1,
        width: int = 64,
        state_channels: int = 16,
        n_layers: int = 8,
        n_stages: int = 2,
        sigma0: float = 25 / 255,
        t: float = 1.0,
        t_max: float | None = None,
        learn_t: bool = True,
        parametrization: str = "manifold",
        pretrained: bool | str | os.PathLike = False,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ):
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        width = check_count(width, "width")
        state_channels = check_count(state_channels, "state_channels")
        n_layers = check_count(n_layers, "n_layers")
        n_stages = check_count(n_stages, "n_stages", minimum=0)
        sigma0 = check_positive(sigma0, "sigma0")
        if not channels <= state_channels <= width:
            raise ValueError(
                f"need channels <= state_channels <= width, got {channels}, {state_channels}, {width}"
            )
        generator = torch.Generator().manual_seed(seed)
        self.channels, self.state_channels, self.width = channels, state_channels, width
        self.convs = nn.ModuleList(
            ParsevalConv2d(state_channels, width, n_stages, parametrization, generator)
            for _ in range(n_layers)
        )
        self.biases = nn.Parameter(torch.zeros(n_layers, width))
        # the shrinkage of L layers adds up: start with a total of about sigma0 / 2
        init = 0.5 * sigma0 * math.sqrt(state_channels / width) / n_layers
        self.log_thresholds = nn.Parameter(torch.full((n_layers,), math.log(init)))
        self.relaxation = _Relaxation(n_layers, t, t_max, learn_t)
        self.register_buffer("sigma0", torch.tensor(sigma0))
        default_file = None
        for file, level in SHIPPED.values():
            if abs(level - sigma0) < 1e-9 and channels == 1:
                default_file = file
        if isinstance(pretrained, str) and pretrained in SHIPPED_FOR_PROBLEM:
            file, level = SHIPPED_FOR_PROBLEM[pretrained]
            if abs(level - sigma0) > 1e-9 or channels != 1:
                raise ValueError(
                    f'pretrained="{pretrained}" weights are gray with sigma0={level:g}, '
                    f"got channels={channels}, sigma0={sigma0:g}"
                )
            default_file, pretrained = file, True
        load_pretrained(self, pretrained, default_file)
        self.to(device)

    def phi(self, u: torch.Tensor) -> torch.Tensor:
        r"""The PNN :math:`\Phi` on ``state_channels`` channels."""
        for i, conv in enumerate(self.convs):
            coeff = conv(u) + self.biases[i].to(u.dtype)[None, :, None, None]
            u = conv.adjoint(soft_shrink(coeff, self.log_thresholds[i].exp().to(u.dtype)))
        return u

    def relaxed(self, z: torch.Tensor) -> torch.Tensor:
        r"""The unscaled denoiser :math:`D(z) = (1-t)z + tE^\top\Phi(Ez)` on ``[B, channels, H, W]``."""
        u = F.pad(z, (0, 0, 0, 0, 0, self.state_channels - z.shape[1]))
        phi = self.phi(u)[:, : z.shape[1]]
        t = self.relaxation.t.to(z.dtype)
        return z - t * (z - phi)

    def forward(
        self, x: torch.Tensor, sigma: float | torch.Tensor = 25 / 255, **kwargs
    ) -> torch.Tensor:
        r"""Denoise ``x`` at noise level ``sigma`` (float, 0-d or ``[B]`` tensor).

        :param torch.Tensor x: ``[B, C, H, W]`` with ``C = channels`` (or 3 for a gray model).
        :param sigma: noise standard deviation (for images in :math:`[0, 1]`).
        :return: the denoised image, same shape.
        """
        check_image(x, "x", channels=(1, 3) if self.channels == 1 else 3)
        check_sigma(sigma)
        sig = self._handle_sigma(sigma, reference_tensor=x)
        scale = self.sigma0.to(x.dtype) / sig.clamp_min(SIGMA_MIN)
        z = scale * (x - CENTER)
        if x.shape[1] != self.channels:  # gray model on a colour image
            basis = OPPONENT.to(device=x.device, dtype=x.dtype)
            w = torch.einsum("oc,bchw->bohw", basis, z)
            b, c, h, wd = w.shape
            w = self.relaxed(w.reshape(b * c, 1, h, wd)).reshape(b, c, h, wd)
            out = torch.einsum("co,bchw->bohw", basis, w)
        else:
            out = self.relaxed(z)
        return CENTER + out / scale

    @property
    def t(self) -> float:
        """The current relaxation :math:`t`."""
        return float(self.relaxation.t.detach())

    def orthogonality_error(self) -> float:
        """Largest orthogonality error over all convolutions' matrices."""
        return max(conv.orthogonality_error() for conv in self.convs)

    def lipschitz_bound(self) -> float:
        r"""Bound of :math:`\mathrm{Lip}(D_\sigma)` from the construction (any :math:`\sigma`).

        A layer with :math:`\|T_i\|^2 = c_i` (1 up to rounding) is :math:`c_i` times a firmly
        nonexpansive map, so :math:`\Phi = C\Phi'` with :math:`C = \prod_i c_i` and
        :math:`\Phi'` :math:`L/(L+1)`-averaged; then
        :math:`D = [(1-t)\mathrm{Id} + t\Phi'] + t(C-1)\Phi'` gives
        :math:`\mathrm{Lip}(D) \le 1 + t\,(C - 1)` for :math:`t < (L+1)/L`. The
        :math:`c_i` are bounded from the stored matrices' deviation from orthogonality.
        """
        c = 1.0
        for conv in self.convs:
            c *= conv.norm_bound() ** 2
        return 1.0 + self.t * max(c - 1.0, 0.0)

    def averaged_constant(self) -> float:
        r"""Averagedness constant :math:`tL/(L+1)` of :math:`D_\sigma` (< 1: nonexpansive; <= 1/2: firmly)."""
        return self.relaxation.averaged_constant()
