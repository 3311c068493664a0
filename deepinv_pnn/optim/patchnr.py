r"""Image-level, trainable patch normalizing-flow regulariser (patchNR).

Altekrüger, Denker, Hagemann, Hertrich, Maass, Steidl, *PatchNR: learning from very few
images by patch normalizing flow regularization*, Inverse Problems 2023:

.. math::

    g(x) = \frac1N \sum_{i=1}^N -\log p_\theta(P_i x), \qquad
    -\log p_\theta(q) = \tfrac12 \|f_\theta(q)\|^2 - \log|\det J_{f_\theta}(q)| + \tfrac d2 \log 2\pi,

with :math:`f_\theta` a normalizing flow on :math:`d = C p^2`-dimensional patches trained by
maximum likelihood on the patches of one or a few images (:meth:`PatchNR.fit`). Unlike
:class:`deepinv.optim.PatchNR` this prior takes images ``[B, C, H, W]``, draws its patches
itself, uses a flow with ActNorm and learned invertible mixing, and can be trained.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import deepinv as dinv
import torch

from deepinv_pnn.nn.flows import patch_flow
from deepinv_pnn.nn.patches import (
    augment_dihedral,
    extract_patches,
    gather_patches,
    random_positions,
)
from deepinv_pnn.pretrained import load_pretrained, read_metadata, save_weights, weights_path
from deepinv_pnn.validation import check_count, check_image, check_positive

PRETRAINED = {"material": "patchnr_sic.safetensors", "natural": "patchnr_bsd.safetensors"}
#: the architecture arguments and their defaults, stored in the metadata of saved weights
ARCHITECTURE = {"patch_size": 6, "channels": 1, "n_blocks": 5, "hidden": 256, "mixing": "lu"}


def architecture(path: Path | None, **given) -> dict:
    """The flow's architecture: ``given`` values, else those in ``path``'s metadata, else the defaults.

    :raises ValueError: a given value contradicts the weights file.
    """
    stored = read_metadata(path) if path is not None else {}
    arch = {}
    for name, default in ARCHITECTURE.items():
        value = given.get(name)
        if name in stored:
            saved = type(default)(stored[name])
            if value is not None and value != saved:
                raise ValueError(f"{name}={value!r} contradicts the weights file {str(path)!r}, saved with {name}={saved!r}")
            value = saved
        arch[name] = default if value is None else value
    return arch


class PatchNR(dinv.optim.Prior):
    r"""Patch normalizing-flow regulariser on images, :math:`g(x) = \frac1N\sum_i -\log p_\theta(P_i x)`.

    The architecture arguments (``patch_size``, ``channels``, ``n_blocks``, ``hidden``,
    ``mixing``) default to ``None``: the values stored in the weights file named by
    ``pretrained`` (:meth:`save` writes them), else 6, 1, 5, 256 and ``"lu"``. A value given
    explicitly must agree with the file.

    :param int patch_size: side :math:`p` of the patches.
    :param int channels: image channels :math:`C`.
    :param int n_blocks: flow blocks (ActNorm, invertible mixing, GLOW coupling).
    :param int hidden: width of the coupling sub-networks.
    :param str mixing: ``"lu"``, ``"permutation"`` or ``"none"`` (see :func:`deepinv_pnn.nn.flows.patch_flow`).
    :param int n_patches: patches per image and call; ``None`` uses all patches.
    :param bool resample: draw new random patches at every call (stochastic ``fn``, as in the
        paper's reconstructions); ``False`` draws one fixed subset per image size (seeded),
        so ``fn`` is a deterministic function.
    :param bool | str pretrained: ``True`` loads the shipped weights of ``dataset``; a path loads a file.
    :param str dataset: ``"material"`` (SiC micro-CT, patch size 6) or ``"natural"`` (BSD400).
    :param int seed: seed of the patch subsets.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.optim import PatchNR
    >>> prior = PatchNR(patch_size=4, n_blocks=2, hidden=32)
    >>> history = prior.fit(torch.rand(1, 1, 24, 24), steps=5, batch_size=64)
    >>> prior.fn(torch.rand(2, 1, 16, 16)).shape
    torch.Size([2])
    """

    def __init__(
        self,
        patch_size: int | None = None,
        channels: int | None = None,
        n_blocks: int | None = None,
        hidden: int | None = None,
        mixing: str | None = None,
        n_patches: int | None = 10000,
        resample: bool = False,
        pretrained: bool | str | os.PathLike = False,
        dataset: str = "material",
        seed: int = 0,
    ):
        super().__init__()
        self.explicit_prior = True
        if pretrained is True and dataset not in PRETRAINED:
            raise ValueError(f"dataset must be one of {sorted(PRETRAINED)}, got {dataset!r}")
        path = weights_path(pretrained, PRETRAINED.get(dataset), owner="PatchNR")
        arch = architecture(
            path, patch_size=patch_size, channels=channels, n_blocks=n_blocks, hidden=hidden, mixing=mixing
        )
        self.patch_size = check_count(arch["patch_size"], "patch_size")
        self.channels = check_count(arch["channels"], "channels")
        self.n_blocks, self.hidden, self.mixing = arch["n_blocks"], arch["hidden"], arch["mixing"]
        self.dim = self.channels * self.patch_size**2
        self.n_patches = n_patches if n_patches is None else check_count(n_patches, "n_patches")
        self.resample = resample
        self.seed = int(seed)
        self.flow = patch_flow(self.dim, n_blocks=self.n_blocks, hidden=self.hidden, mixing=self.mixing, seed=seed)
        self._positions: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._generator = torch.Generator().manual_seed(self.seed)
        load_pretrained(self, path)
        self.eval()

    def nll(self, patches: torch.Tensor) -> torch.Tensor:
        r"""Negative log-likelihood :math:`-\log p_\theta(q)` of ``[..., d]`` patches, shape ``[...]``.

        :param torch.Tensor patches: finite ``[..., d]`` patches, :math:`d = C p^2`.
        """
        if not isinstance(patches, torch.Tensor) or not patches.is_floating_point():
            got = patches.dtype if isinstance(patches, torch.Tensor) else type(patches).__name__
            raise TypeError(f"patches must be a floating-point tensor, got {got}")
        if patches.dim() == 0 or patches.shape[-1] != self.dim:
            raise ValueError(
                f"patches must have last dimension C p^2 = {self.dim}, got shape {tuple(patches.shape)}"
            )
        if not torch.isfinite(patches).all():
            raise ValueError("patches contains NaN or Inf values")
        return self._nll(patches)

    def _nll(self, patches: torch.Tensor) -> torch.Tensor:
        dtype = next(self.flow.parameters()).dtype
        flat = patches.reshape(-1, self.dim).to(dtype)
        z, logdet = self.flow(flat)
        value = 0.5 * (z**2).sum(-1) - logdet + 0.5 * self.dim * math.log(2 * math.pi)
        return value.view(patches.shape[:-1]).to(patches.dtype)

    def _patches(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        total = (h - self.patch_size + 1) * (w - self.patch_size + 1)
        if self.n_patches is None or self.n_patches >= total:
            return extract_patches(x, self.patch_size)
        if self.resample:
            rows, cols = random_positions(x.shape[0], h, w, self.patch_size, self.n_patches, self._generator, x.device)
        else:
            key = (x.shape[0], h, w, str(x.device))
            if key not in self._positions:
                generator = torch.Generator().manual_seed(self.seed + 1)
                self._positions[key] = random_positions(x.shape[0], h, w, self.patch_size, self.n_patches, generator, x.device)
            rows, cols = self._positions[key]
        return gather_patches(x, rows, cols, self.patch_size)

    def fn(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        r"""Mean patch negative log-likelihood of each image, shape ``(B,)``.

        :param torch.Tensor x: image ``[B, C, H, W]``.
        """
        check_image(x, "x", channels=self.channels, nonempty=True)
        if min(x.shape[-2:]) < self.patch_size:
            raise ValueError(f"x of size {tuple(x.shape[-2:])} is smaller than patch_size {self.patch_size}")
        return self._nll(self._patches(x)).mean(-1)

    def grad(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """Gradient of :meth:`fn` by automatic differentiation."""
        check_image(x, "x", channels=self.channels)
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.fn(xx).sum(), xx)
        return g

    def prox(self, x: torch.Tensor, *args, gamma: float = 1.0, max_iter: int = 100, tol: float = 1e-9, **kwargs):
        r"""Local proximal point :math:`\operatorname{argmin}_z g(z) + \frac1{2\gamma}\|z-x\|^2`.

        Minimised by L-BFGS with a strong-Wolfe line search started at ``x`` (``g`` is smooth
        but nonconvex, so this is a stationary point near ``x``; the objective is separable
        over the batch, so the batch is solved jointly).

        :param torch.Tensor x: image ``[B, C, H, W]``.
        :param float gamma: :math:`\gamma > 0`.
        :param int max_iter: maximum L-BFGS iterations.
        """
        check_image(x, "x", channels=self.channels)
        gamma = check_positive(gamma, "gamma")
        max_iter = check_count(max_iter, "max_iter")
        tol = check_positive(tol, "tol", allow_zero=True)
        x = x.detach()
        z = x.clone().requires_grad_(True)
        optimizer = torch.optim.LBFGS(
            [z], lr=1, max_iter=max_iter, max_eval=4 * max_iter, tolerance_grad=tol, tolerance_change=0.0,
            history_size=20, line_search_fn="strong_wolfe",
        )

        def closure():
            optimizer.zero_grad()
            value = self.fn(z).sum() + ((z - x) ** 2).sum() / (2 * gamma)
            value.backward()
            return value

        with torch.enable_grad():
            optimizer.step(closure)
        return z.detach()

    def fit(
        self,
        images: torch.Tensor | list,
        steps: int = 1000,
        batch_size: int = 4096,
        lr: float = 1e-3,
        augment: bool = False,
        dequantize: float = 1.0 / 255,
        minutes: float | None = None,
        device: str | torch.device | None = None,
        seed: int = 0,
        progress: bool = False,
    ) -> list[float]:
        r"""Train the flow by maximum likelihood on the patches of ``images``.

        :param images: ``[R, C, H, W]`` tensor or list of ``[1, C, H, W]`` tensors.
        :param int steps: Adam steps (each on ``batch_size`` random patches).
        :param float lr: Adam learning rate (cosine-decayed to 1 % over ``steps`` or ``minutes``).
        :param bool augment: add the 8 flips/rotations of each image (zero-shot setting).
        :param float dequantize: width :math:`w` of the uniform noise added to every training
            patch. :math:`1/255` dequantises 8-bit data; a wider one fits the density of the
            patches plus noise of standard deviation :math:`w/\sqrt{12}`, a smoothed density whose
            score is tamer on the blurry patches a reconstruction starts from: the shipped SiC
            weights use :math:`w = 0.07` (+0.45 dB held out in ``bench_patch_sr.py``, see the
            patch guide).
        :param float minutes: stop after this wall-clock time.
        :param device: training device (default: the images' device).
        :return: the per-step mean negative log-likelihood (per patch).
        """
        if isinstance(images, torch.Tensor):
            images = [images[i : i + 1] for i in range(images.shape[0])] if images.dim() == 4 else [images[None]]
        if len(images) == 0:
            raise ValueError("images must hold at least one image, got none")
        for k, im in enumerate(images):
            check_image(im, f"images[{k}]", channels=self.channels)
        steps, batch_size = check_count(steps, "steps"), check_count(batch_size, "batch_size")
        device = torch.device(device) if device is not None else images[0].device
        views = [v for im in images for v in (augment_dihedral(im) if augment else [im])]
        patches = torch.cat([extract_patches(v.float().to(device), self.patch_size).reshape(-1, self.dim) for v in views])
        self.to(device=device, dtype=torch.float32)
        self.train()
        generator = torch.Generator(device=device).manual_seed(seed)
        optimizer = torch.optim.Adam(self.flow.parameters(), lr=lr)
        history: list[float] = []
        start = time.monotonic()
        iterator = range(steps)
        if progress:
            from tqdm import tqdm

            iterator = tqdm(iterator, desc="patchNR fit")
        for step in iterator:
            frac = step / max(steps, 1)
            if minutes is not None:  # the schedule follows whichever budget runs out first
                frac = max(frac, (time.monotonic() - start) / (60 * minutes))
            for group in optimizer.param_groups:
                group["lr"] = lr / 100 + (lr - lr / 100) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
            idx = torch.randint(0, patches.shape[0], (batch_size,), device=device, generator=generator)
            batch = patches[idx]
            if dequantize:
                batch = batch + dequantize * (torch.rand(batch.shape, device=device, generator=generator) - 0.5)
            loss = self._nll(batch).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.flow.parameters(), 10.0)
            optimizer.step()
            history.append(float(loss.detach()))
            if minutes is not None and time.monotonic() - start > 60 * minutes:
                break
        self.eval()
        return history

    def fit_zero_shot(self, y: torch.Tensor, steps: int = 500, **kwargs) -> list[float]:
        r"""Zero-shot training on the observation's own patches and their 8 flips/rotations.

        For superresolution of self-similar materials the low-resolution image's patches are
        a proxy of the high-resolution patch distribution (Altekrüger et al. 2023, Sec. 5).
        """
        check_image(y, "y", channels=self.channels)
        return self.fit(y, steps=steps, augment=True, **kwargs)

    def save(self, path: str | os.PathLike, dtype: torch.dtype | None = None, command: str | None = None) -> Path:
        """Write the weights (safetensors) with the architecture in the file's metadata.

        :param path: the ``.safetensors`` destination; ``PatchNR(pretrained=path)`` rebuilds this flow.
        :param torch.dtype dtype: storage dtype of the floating-point weights (``torch.float16``
            halves the file; they load back into float32); ``None`` keeps the current one.
        :param str command: the training command, kept in the metadata (``None``: none).
        """
        metadata = {"component": "patchnr", **{name: getattr(self, name) for name in ARCHITECTURE}}
        if command is not None:
            metadata["command"] = command
        return save_weights(self, path, metadata=metadata, dtype=dtype)
