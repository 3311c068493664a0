r"""Learned regularisation-parameter maps for total variation, by algorithm unrolling.

:footcite:t:`kofler2023parametermaps`: a CNN predicts a pixel-wise map
:math:`\Lambda_\Theta(y) \ge 0` and the reconstruction is the (approximate, :math:`T`
unrolled primal-dual iterations) solution of

.. math::

    \hat x = \operatorname*{argmin}_x \tfrac12\|Ax - y\|_2^2 + \|\Lambda_\Theta(y) \odot \nabla x\|_1,

trained end to end. The map is scale-equivariant by construction: the network sees
:math:`x_0 / s` with :math:`x_0 = A^\top y / \|A\|^2` and :math:`s` the root mean square
of :math:`x_0`, and its output is multiplied by :math:`s\,\|A\|^2`. Scaling :math:`y`
by :math:`c > 0` scales :math:`\Lambda` and, since the unrolled iterations are
positively homogeneous, the reconstruction by :math:`c`; scaling :math:`A` and
:math:`y` by :math:`a` leaves the variational problem's minimiser unchanged.
"""

from __future__ import annotations

import json
import os

import deepinv as dinv
import torch
import torch.nn.functional as F
from torch import nn

from deepinv_pnn.models.unrolled_pdhg import DATA_TERMS, UnrolledPDHG
from deepinv_pnn.pretrained import load_pretrained, read_metadata, weights_path
from deepinv_pnn.validation import (
    check_count,
    check_dtype_matches,
    check_image,
    check_positive,
    physics_must_fit,
)

WEIGHTS = {"denoise": "tvmap_denoise.safetensors", "deblur": "tvmap_deblur.safetensors"}
DEFAULT_N_ITER = 64
DEFAULT_WIDTHS = (16, 32, 64)
MAP_INPUTS = ("adjoint", "adjoint+tikhonov")
DEFAULT_TIKHONOV = 0.01
#: initial step ratio :math:`t` (:math:`\tau/\sigma = e^{2t}`) of the PDHG per data term
LOG_RATIO_INIT = {"dual": 1.0, "prox": 3.0}


def weights_config(pretrained: bool | str | os.PathLike | None, problem: str) -> dict:
    """The training configuration stored in a safetensors file's metadata (``{}`` if none)."""
    path = weights_path(pretrained, WEIGHTS[problem], owner="TVParameterMapNet")
    return {} if path is None else json.loads(read_metadata(path).get("config", "{}"))


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="replicate"),
        nn.LeakyReLU(0.1),
        nn.Conv2d(c_out, c_out, 3, padding=1, padding_mode="replicate"),
        nn.LeakyReLU(0.1),
    )


class MapUNet(nn.Module):
    r"""A small U-Net for parameter maps: any image size (replicate padding to a multiple
    of :math:`2^{\text{levels}-1}`, then cropped back).

    :param int in_channels: input channels.
    :param int out_channels: output channels (raw, before the positivity map).
    :param tuple widths: feature maps per level, shallow to deep.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, widths: tuple = (16, 32, 64)):
        super().__init__()
        if not isinstance(widths, (tuple, list)):
            raise TypeError(f"widths must be a tuple of positive ints, got {type(widths).__name__}")
        if len(widths) < 1:
            raise ValueError("widths must be a non-empty tuple of positive ints, got ()")
        widths = tuple(check_count(w, f"widths[{i}]") for i, w in enumerate(widths))
        self.widths = widths
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.down.append(_block(c, w))
            c = w
        self.up = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for w_skip, w_deep in zip(widths[-2::-1], widths[:0:-1]):
            self.up.append(nn.Conv2d(w_deep, w_skip, 1))
            self.fuse.append(_block(2 * w_skip, w_skip))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        multiple = 2 ** (len(self.widths) - 1)
        pad_h, pad_w = (-h) % multiple, (-w) % multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        skips = []
        for level, block in enumerate(self.down):
            if level > 0:
                x = F.avg_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for up, fuse, skip in zip(self.up, self.fuse, skips[-2::-1]):
            x = F.interpolate(up(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = fuse(torch.cat([x, skip], dim=1))
        return self.head(x)[..., :h, :w]


class TVParameterMapNet(dinv.models.Reconstructor):
    r"""Weighted-TV reconstruction with a CNN-predicted map :math:`\Lambda_\Theta(y)` :footcite:p:`kofler2023parametermaps`.

    For any :class:`deepinv.physics.LinearPhysics` :math:`A` (denoising, blur,
    inpainting, super-resolution, MRI, tomography): :math:`x_0 = A^\top y / \|A\|^2`,
    :math:`\Lambda = s\|A\|^2\, \phi(\mathrm{UNet}(x_0/s))` with
    :math:`s = \mathrm{rms}(x_0)` and :math:`\phi` a softplus (or
    :math:`\lambda_{\max}\,\mathrm{sigmoid}`); with ``map_input="adjoint+tikhonov"`` the
    U-Net sees :math:`[x_0, x_\alpha]/s`, where :math:`x_\alpha` is a Tikhonov estimate (for a
    blur, :math:`x_0` is blurred twice and hides the edges the map should follow), then
    :math:`T` iterations of
    :class:`~deepinv_pnn.models.unrolled_pdhg.UnrolledPDHG` from :math:`x_0`.
    Colour channels are processed one by one by the same network, so any channel
    count works and each channel gets its own map.

    :param int n_iter: unrolled iterations :math:`T` (can be changed per call); ``None``: the
        value the weights were trained with (from the file's metadata), else 64.
    :param bool isotropic: isotropic (default) or anisotropic TV.
    :param bool per_direction: one map per gradient direction (anisotropic TV only).
    :param tuple widths: feature maps per U-Net level; ``None``: from the weights' metadata,
        else ``(16, 32, 64)``.
    :param str output: ``"softplus"`` (unbounded) or ``"sigmoid"`` (bounded by ``lambda_max``).
    :param float lambda_max: bound of the normalised map for ``output="sigmoid"``.
    :param float map_init: initial value of the normalised map (a constant map at start).
    :param bool checkpointing: gradient checkpointing of the unrolled iterations.
    :param str map_input: what the U-Net sees: ``"adjoint"`` (:math:`x_0` only) or
        ``"adjoint+tikhonov"`` (also the Tikhonov estimate
        :math:`x_\alpha = (A^\top A + \alpha\|A\|^2 I)^{-1} A^\top y`, a sharper input when
        :math:`A` blurs; from ``physics.prox_l2``: closed form for
        :class:`deepinv.physics.BlurFFT` and denoising, conjugate gradient otherwise).
        ``None``: from the weights' metadata, else ``"adjoint"``.
    :param float tikhonov: the relative weight :math:`\alpha` of the Tikhonov estimate;
        ``None``: from the weights' metadata, else 0.01.
    :param str data_term: how the unrolled PDHG treats :math:`\tfrac12\|Ax - y\|^2`:
        ``"dual"`` (dualised, :math:`K = [A; \nabla]`, only :math:`A` and :math:`A^\top`
        needed) or ``"prox"`` (:meth:`deepinv.physics.LinearPhysics.prox_l2` in the primal
        step, :math:`K = \nabla`; far fewer iterations where that prox is cheap, e.g.
        :class:`deepinv.physics.BlurFFT`, inpainting, single-coil MRI). ``None``: from the
        weights' metadata, else ``"dual"``.
    :param pretrained: ``True`` loads the shipped weights of ``problem`` (``"denoise"`` or
        ``"deblur"``), a path loads a user's file, ``None``/``False`` keeps the initialisation.
    :param str problem: which shipped weights ``pretrained=True`` loads.
    :param device: the device of the model.

    :Examples:

    >>> import torch, deepinv as dinv
    >>> from deepinv_pnn.models.param_map import TVParameterMapNet
    >>> model = TVParameterMapNet(n_iter=10, widths=(4, 8))
    >>> physics = dinv.physics.Denoising(dinv.physics.GaussianNoise(0.1))
    >>> y = physics(torch.rand(1, 1, 20, 20))
    >>> model(y, physics).shape
    torch.Size([1, 1, 20, 20])
    >>> model.lambda_map(y, physics).shape
    torch.Size([1, 1, 20, 20])
    """

    def __init__(
        self,
        n_iter: int | None = None,
        isotropic: bool = True,
        per_direction: bool = False,
        widths: tuple | None = None,
        output: str = "softplus",
        lambda_max: float = 2.0,
        map_init: float = 0.1,
        checkpointing: bool = False,
        map_input: str | None = None,
        tikhonov: float | None = None,
        data_term: str | None = None,
        pretrained: bool | str | None = None,
        problem: str = "denoise",
        device: str | torch.device = "cpu",
    ):
        super().__init__()
        if problem not in WEIGHTS:
            raise ValueError(f"problem must be one of {tuple(WEIGHTS)}, got {problem!r}")
        config = weights_config(pretrained, problem)
        n_iter = int(config.get("n_iter", DEFAULT_N_ITER)) if n_iter is None else n_iter
        widths = tuple(config.get("widths", DEFAULT_WIDTHS)) if widths is None else widths
        map_input = config.get("map_input", MAP_INPUTS[0]) if map_input is None else map_input
        tikhonov = config.get("tikhonov", DEFAULT_TIKHONOV) if tikhonov is None else tikhonov
        data_term = config.get("data_term", DATA_TERMS[0]) if data_term is None else data_term
        if map_input not in MAP_INPUTS:
            raise ValueError(f"map_input must be one of {MAP_INPUTS}, got {map_input!r}")
        self.map_input = map_input
        self.tikhonov = check_positive(tikhonov, "tikhonov")
        if per_direction and isotropic:
            raise ValueError("per_direction=True needs anisotropic TV: pass isotropic=False")
        if output not in ("softplus", "sigmoid"):
            raise ValueError(f"output must be 'softplus' or 'sigmoid', got {output!r}")
        self.lambda_max = check_positive(lambda_max, "lambda_max")
        map_init = check_positive(map_init, "map_init")
        if output == "sigmoid" and map_init >= self.lambda_max:
            raise ValueError(f"map_init must be < lambda_max={lambda_max}, got {map_init}")
        self.output = output
        self.n_maps = 2 if per_direction else 1
        self.unet = MapUNet(len(map_input.split("+")), self.n_maps, widths)
        with torch.no_grad():  # start from a nearly constant map of value map_init
            self.unet.head.weight.mul_(0.01)
            if output == "softplus":
                bias = torch.log(torch.expm1(torch.tensor(map_init)))
            else:
                bias = torch.logit(torch.tensor(map_init / self.lambda_max))
            self.unet.head.bias.fill_(float(bias))
        self.pdhg = UnrolledPDHG(
            n_iter=n_iter, isotropic=isotropic, checkpointing=checkpointing, rho_init=1.5,
            log_ratio_init=LOG_RATIO_INIT.get(data_term, LOG_RATIO_INIT["dual"]), data_term=data_term,
        )
        load_pretrained(self, pretrained, WEIGHTS.get(problem))
        self.to(device)

    @property
    def n_iter(self) -> int:
        """The default number of unrolled iterations :math:`T`."""
        return self.pdhg.n_iter

    def _check(self, y: torch.Tensor, physics) -> None:
        if not isinstance(physics, dinv.physics.LinearPhysics):
            raise TypeError(f"physics must be a deepinv.physics.LinearPhysics, got {type(physics).__name__}")
        check_image(y, "y", nonempty=True)
        check_dtype_matches(self, y, "y")

    def _initial(self, y: torch.Tensor, physics) -> tuple[torch.Tensor, float]:
        with physics_must_fit(y, "TVParameterMapNet"):
            x_adj = physics.A_adjoint(y)
        sqnorm = self.pdhg.operator_sqnorm(physics, x_adj)
        return x_adj / sqnorm, sqnorm

    def _tikhonov_input(self, y: torch.Tensor, physics, x0: torch.Tensor, sqnorm: float) -> torch.Tensor | None:
        return self.tikhonov_estimate(y, physics, sqnorm, like=x0) if self.map_input == "adjoint+tikhonov" else None

    def tikhonov_estimate(
        self, y: torch.Tensor, physics, sqnorm: float, like: torch.Tensor | None = None
    ) -> torch.Tensor:
        r""":math:`x_\alpha = (A^\top A + \alpha\|A\|^2 I)^{-1} A^\top y`, the second input of
        ``map_input="adjoint+tikhonov"`` (linear in :math:`y`, so the map stays scale-equivariant).

        :param torch.Tensor y: the measurements.
        :param deepinv.physics.LinearPhysics physics: the forward operator.
        :param float sqnorm: :math:`\|A\|^2`.
        :param torch.Tensor like: a tensor of the image's shape (e.g. :math:`x_0`); default: from
            an adjoint :math:`A^\top y`.
        """
        like = physics.A_adjoint(y) if like is None else like
        return physics.prox_l2(torch.zeros_like(like), y, 1.0 / (self.tikhonov * float(sqnorm)))

    def map_from_initial(self, x0: torch.Tensor, sqnorm: float, x_tik: torch.Tensor | None = None) -> torch.Tensor:
        r"""The map :math:`\Lambda` from the normalised initial image :math:`x_0`.

        :param torch.Tensor x0: :math:`A^\top y / \|A\|^2`, shape ``[B, C, H, W]``.
        :param float sqnorm: :math:`\|A\|^2`.
        :param torch.Tensor x_tik: the Tikhonov estimate (:meth:`tikhonov_estimate`), needed
            when ``map_input="adjoint+tikhonov"``.
        :return: ``[B, C, H, W]`` (or ``[B, C, H, W, 2]`` with one map per direction).
        """
        b, c, h, w = x0.shape
        scale = x0.reshape(b, -1).square().mean(-1).sqrt()
        scale = scale.clamp_min(torch.finfo(x0.dtype).tiny).view(b, 1, 1, 1)
        inputs = x0 / scale
        if self.map_input == "adjoint+tikhonov":
            if x_tik is None or x_tik.shape != x0.shape:
                raise ValueError(f"map_input={self.map_input!r} needs x_tik of shape {tuple(x0.shape)}")
            inputs = torch.stack([inputs, x_tik / scale], dim=2)
        raw = self.unet(inputs.reshape(b * c, -1, h, w))
        if self.output == "softplus":
            normalised = F.softplus(raw)
        else:
            normalised = self.lambda_max * torch.sigmoid(raw)
        normalised = normalised.reshape(b, c, self.n_maps, h, w)
        if self.n_maps == 1:
            return normalised[:, :, 0] * (scale * sqnorm)
        return normalised.permute(0, 1, 3, 4, 2) * (scale * sqnorm).unsqueeze(-1)

    def lambda_map(self, y: torch.Tensor, physics: dinv.physics.LinearPhysics) -> torch.Tensor:
        r"""The predicted map :math:`\Lambda_\Theta(y)` (in the units of the variational problem).

        :param torch.Tensor y: the measurements.
        :param deepinv.physics.LinearPhysics physics: the forward operator.
        """
        self._check(y, physics)
        x0, sqnorm = self._initial(y, physics)
        return self.map_from_initial(x0, sqnorm, self._tikhonov_input(y, physics, x0, sqnorm))

    def forward(
        self,
        y: torch.Tensor,
        physics: dinv.physics.LinearPhysics,
        n_iter: int | None = None,
        return_map: bool = False,
        **kwargs,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        r"""Reconstruct :math:`x` from :math:`y`.

        :param torch.Tensor y: the measurements.
        :param deepinv.physics.LinearPhysics physics: the forward operator.
        :param int n_iter: unrolled iterations (default: the training value ``self.n_iter``).
        :param bool return_map: also return :math:`\Lambda`.
        :return: the reconstruction (and the map).
        """
        self._check(y, physics)
        x0, sqnorm = self._initial(y, physics)
        lam = self.map_from_initial(x0, sqnorm, self._tikhonov_input(y, physics, x0, sqnorm))
        x = self.pdhg(y, physics, lam, x_init=x0, n_iter=n_iter, op_sqnorm=sqnorm)
        return (x, lam) if return_map else x
