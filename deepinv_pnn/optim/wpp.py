r"""The Wasserstein patch prior (WPP) of Hertrich, Houdard and Redenbach (IEEE TCI 2022).

.. math::

    g(x) = \sum_{s=0}^{S-1} w_s\, W_2^2\Big(\frac1{N_s}\sum_{i} \delta_{P_i D^s x},\
    \frac1M \sum_j \delta_{q_j^{(s)}}\Big),

where :math:`D` is a Gaussian downsampling by 2 (the papers' pyramid: 4x4 kernel, std 1,
stride 2), :math:`P_i` extracts the :math:`i`-th :math:`p \times p` patch and
:math:`q^{(s)}_j` are :math:`M` random patches of the downsampled reference image(s).
Each :math:`W_2^2` is evaluated in semi-dual form (:mod:`deepinv_pnn.nn.semidual`) with a
potential :math:`\psi` kept between calls (warm start) and improved by averaged
stochastic ascent whenever a *new* input arrives; :meth:`grad` is
:math:`\frac2{N}(P_i x - q_{\sigma(i)})` pushed back through :math:`P_i` and :math:`D`.
"""

from __future__ import annotations

import contextlib

import deepinv as dinv
import torch

from deepinv_pnn.nn import semidual
from deepinv_pnn.nn.patches import (
    center_patches,
    concatenate_images,
    extract_patches,
    gather_patches,
    gaussian_pyramid,
    min_padded_side,
    pad_image,
    pyramid_sizes,
    random_positions,
)
from deepinv_pnn.validation import check_count, check_image, check_positive


def denoise_reference(images: torch.Tensor, gamma: float, n_iter: int = 200) -> torch.Tensor:
    r"""Edge-preserving (TV) denoising of reference images, :math:`\operatorname{prox}_{\gamma TV}`.

    The reference's pixel-level grain (measurement noise, sub-resolution texture) cannot be
    recovered from a low-resolution observation, and the empirical :math:`W_2` between patch
    clouds in :math:`p^2 = 36` dimensions rates an image that copies *some* reference grain
    lower than the true image, whose grain is independent of every reference patch (the
    expected squared distance of two independent grains is twice that of a smooth patch to
    one). Taking the patch distribution of the denoised reference keeps the edges and phases
    that the prior should impose and drops the grain it cannot place.

    :param torch.Tensor images: ``[R, C, H, W]``.
    :param float gamma: TV weight (about the grain's standard deviation or a few times it).
    :param int n_iter: iterations of deepinv's TV proximal solver.
    """
    return dinv.optim.TVPrior(n_it_max=int(n_iter)).prox(images, gamma=check_positive(gamma, "gamma"))


def _check_reference_size(images: torch.Tensor, patch_size: int, n_scales: int) -> None:
    """Every one of the ``n_scales`` levels of the reference pyramid must hold a patch."""
    sizes = pyramid_sizes(min(images.shape[-2:]), n_scales)
    usable = sum(1 for size in sizes if size >= patch_size)
    if usable == 0:
        raise ValueError(f"reference_images of size {tuple(images.shape[-2:])} are smaller than patch_size {patch_size}")
    if usable < n_scales:
        raise ValueError(
            f"n_scales={n_scales} is too large for reference_images of size {tuple(images.shape[-2:])} "
            f"and patch_size {patch_size}: at most {usable} scale(s) hold a patch"
        )


class WassersteinPatchPrior(dinv.optim.Prior):
    r"""Multiscale Wasserstein patch prior :math:`g(x) = \sum_s w_s W_2^2(\mu_{D^s x}, \nu_s)`.

    :param torch.Tensor reference_images: ``[R, C, H, W]`` reference image(s) (or a list of
        ``[1, C, H, W]``).
    :param int patch_size: side :math:`p` of the patches.
    :param int n_scales: number of scales :math:`S` of the Gaussian pyramid.
    :param int n_reference_patches: :math:`M`, random reference patches per scale.
    :param int n_patches: patches of ``x`` used per scale; ``None`` uses all. A subset is
        drawn once per image size (seeded), so ``fn`` stays a deterministic function.
    :param bool resample: with ``n_patches``, draw a new random subset at every refresh of the
        potentials (seeded sequence; ``fn`` is fixed between refreshes). This is how the
        papers handle large images: every pixel is regularised over the iterations, at the
        cost of ``n_patches`` (not all) patches per step.
    :param int psi_iters: ascent steps on :math:`\psi` per new input.
    :param float psi_lr: ascent step size.
    :param list scale_weights: :math:`w_s` (default :math:`1/S` each).
    :param bool center: subtract each patch's mean (texture-only statistics).
    :param str pad: padding of ``x`` before patch extraction (``None``, ``"reflect"``, ...).
    :param float memory_budget_mb: MiB of patch-cost matrix allowed at once.
    :param bool | str use_keops: ``"auto"`` uses KeOps when installed.
    :param int seed: seed of the reference-patch and patch-subset draws.
    :param float reference_denoise: if positive, the reference images are first denoised by
        :func:`denoise_reference` with this TV weight.
    :param float dual_tol: the potentials are refreshed (``psi_iters`` ascent steps) when the
        input differs from the one of the last refresh by more than ``dual_tol`` in relative
        norm; closer inputs reuse them.

    So ``fn`` is a fixed function near each refresh point (``fn(x)``, ``grad(x)`` and
    ``prox(x)`` agree, repeated calls are deterministic) and follows the iterates of a
    solver, warm-started, as they move; :meth:`frozen` disables refreshes altogether.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.data import load_image
    >>> from deepinv_pnn.optim import WassersteinPatchPrior
    >>> ref = load_image("grass", size=64)
    >>> prior = WassersteinPatchPrior(ref, n_reference_patches=500)
    >>> prior.fn(torch.rand(2, 1, 32, 32)).shape
    torch.Size([2])
    """

    def __init__(
        self,
        reference_images: torch.Tensor | list,
        patch_size: int = 6,
        n_scales: int = 2,
        n_reference_patches: int = 10000,
        n_patches: int | None = None,
        psi_iters: int = 10,
        psi_lr: float = 1.0,
        scale_weights: list | None = None,
        center: bool = False,
        pad: str | None = None,
        memory_budget_mb: float = 64.0,
        use_keops: bool | str = "auto",
        seed: int = 0,
        dual_tol: float = 1e-3,
        resample: bool = False,
        reference_denoise: float = 0.0,
    ):
        super().__init__()
        if isinstance(reference_images, (list, tuple)):
            reference_images = concatenate_images(reference_images, "reference_images")
        check_image(reference_images, "reference_images")
        if reference_images.shape[0] == 0:
            raise ValueError(f"reference_images must hold at least one image, got shape {tuple(reference_images.shape)}")
        if check_positive(reference_denoise, "reference_denoise", allow_zero=True) > 0:
            reference_images = denoise_reference(reference_images.detach().float().cpu(), reference_denoise)
        self.explicit_prior = True
        self.patch_size = check_count(patch_size, "patch_size")
        self.n_scales = check_count(n_scales, "n_scales")
        _check_reference_size(reference_images, self.patch_size, self.n_scales)
        self.n_patches = n_patches if n_patches is None else check_count(n_patches, "n_patches")
        if n_reference_patches is not None:
            n_reference_patches = check_count(n_reference_patches, "n_reference_patches")
        self.psi_iters = check_count(psi_iters, "psi_iters", minimum=0)
        self.psi_lr = check_positive(psi_lr, "psi_lr")
        self.center = bool(center)
        self.pad = pad
        self.memory_budget = int(check_positive(memory_budget_mb, "memory_budget_mb") * 2**20)
        self.use_keops = semidual.HAS_KEOPS if use_keops == "auto" else bool(use_keops)
        self.seed = int(seed)
        self.dual_tol = check_positive(dual_tol, "dual_tol", allow_zero=True)
        self.resample = bool(resample)
        self._draws = 0
        self.channels = reference_images.shape[1]
        n_scales = self.n_scales
        weights = [1.0 / n_scales] * n_scales if scale_weights is None else list(scale_weights)
        for k, weight in enumerate(weights):
            check_positive(weight, f"scale_weights[{k}]", allow_zero=True)
        if len(weights) != n_scales:
            raise ValueError(f"scale_weights must have n_scales={n_scales} entries, got {len(weights)}")
        self.scale_weights = weights
        generator = torch.Generator().manual_seed(self.seed)
        pyramid = gaussian_pyramid(reference_images.detach().float().cpu(), n_scales)
        for s, ref in enumerate(pyramid):
            patches = extract_patches(ref, self.patch_size, center=self.center)
            patches = patches.reshape(-1, patches.shape[-1])
            if n_reference_patches is not None and n_reference_patches < len(patches):
                keep = torch.randperm(len(patches), generator=generator)[:n_reference_patches]
                patches = patches[keep]
            self.register_buffer(f"reference_{s}", patches.contiguous())
        self._psi: dict[int, torch.Tensor] = {}
        self._positions: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._last_input: torch.Tensor | None = None
        self._frozen = False

    def reference(self, scale: int) -> torch.Tensor:
        """The ``[M, C p^2]`` reference patches of ``scale``."""
        return getattr(self, f"reference_{scale}")

    @contextlib.contextmanager
    def frozen(self):
        """Context in which the dual potentials are not updated (``fn`` is then a fixed function)."""
        previous, self._frozen = self._frozen, True
        try:
            yield self
        finally:
            self._frozen = previous

    def reset(self) -> None:
        """Forget the dual potentials (next call starts from :math:`\\psi = 0`)."""
        self._psi.clear()
        self._last_input = None
        self._draws = 0
        self._positions.clear()

    def _patches(self, image: torch.Tensor, scale: int) -> torch.Tensor:
        image = pad_image(image, self.patch_size, self.pad)
        h, w = image.shape[-2:]
        total = (h - self.patch_size + 1) * (w - self.patch_size + 1)
        if self.n_patches is None or self.n_patches >= total:
            patches = extract_patches(image, self.patch_size)
        else:
            key = (scale, image.shape[0], h, w, str(image.device))
            if key not in self._positions:
                generator = torch.Generator().manual_seed(self.seed + 1 + scale + 7919 * self._draws)
                self._positions[key] = random_positions(
                    image.shape[0], h, w, self.patch_size, self.n_patches, generator, image.device
                )
            rows, cols = self._positions[key]
            patches = gather_patches(image, rows, cols, self.patch_size)
        return center_patches(patches) if self.center else patches

    def _scales(self, x: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """(scale, patches [B, N, D]) for the scales large enough to hold a patch."""
        sizes = pyramid_sizes(min(x.shape[-2:]), self.n_scales)
        m = min_padded_side(self.patch_size, self.pad)
        usable = sum(1 for size in sizes if size >= m)
        if usable == 0:
            raise ValueError(
                f"x of size {tuple(x.shape[-2:])} is smaller than patch_size {self.patch_size} allows "
                f"(pad={self.pad!r}): x needs at least {m}x{m} pixels"
            )
        return [(s, self._patches(image, s)) for s, image in enumerate(gaussian_pyramid(x, usable))]

    def _check_x(self, x: torch.Tensor) -> None:
        check_image(x, "x", channels=self.channels, nonempty=True)

    def _is_new(self, x: torch.Tensor) -> bool:
        last = self._last_input
        if last is None or last.shape != x.shape or last.device != x.device:
            return True
        x = x.detach().to(last.dtype)
        return float((x - last).norm()) > self.dual_tol * float(last.norm())

    def update_dual(self, x: torch.Tensor, iters: int | None = None) -> None:
        r"""Run ``iters`` (default ``psi_iters``) averaged ascent steps on each :math:`\psi_s` at ``x``."""
        self._check_x(x)
        self._update_dual(x, self.psi_iters if iters is None else check_count(iters, "iters", minimum=0))

    def _update_dual(self, x: torch.Tensor, iters: int) -> None:
        if self.resample and self.n_patches is not None:
            self._draws += 1
            self._positions.clear()
        with torch.no_grad():
            for s, patches in self._scales(x.detach()):
                ref = self.reference(s).to(x.dtype)
                psi = self._psi.get(s)
                if psi is None or psi.shape != (x.shape[0], ref.shape[0]) or psi.device != x.device:
                    psi = torch.zeros(x.shape[0], ref.shape[0], dtype=x.dtype, device=x.device)
                psi = psi.to(x.dtype)
                self._psi[s] = torch.stack([
                    semidual.ascend_dual(patches[b], ref, psi[b], iters, self.psi_lr, self.memory_budget, self.use_keops)
                    for b in range(x.shape[0])
                ])
        self._last_input = x.detach().clone()

    def fn(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        r"""The multiscale semi-dual :math:`\sum_s w_s F_s(\psi_s)`, shape ``(B,)``.

        :param torch.Tensor x: image ``[B, C, H, W]``.
        :return: ``(B,)`` values (lower bounds of :math:`\sum_s w_s W_2^2`, tight when
            :math:`\psi` has converged).
        """
        self._check_x(x)
        return self._fn_unchecked(x)

    def _fn_unchecked(self, x: torch.Tensor) -> torch.Tensor:  # fn without the input check
        if not self._frozen and self._is_new(x):
            self._update_dual(x, self.psi_iters)
        values = []
        for s, patches in self._scales(x):
            ref = self.reference(s).to(device=x.device, dtype=x.dtype)
            psi = self._psi.get(s)
            if psi is None or psi.shape[0] != x.shape[0]:
                psi = torch.zeros(x.shape[0], ref.shape[0], dtype=x.dtype, device=x.device)
            psi = psi.to(x.dtype)
            per_image = torch.stack([
                semidual.semidual_value(patches[b], ref, psi[b], self.memory_budget, self.use_keops)
                for b in range(x.shape[0])
            ])
            values.append(self.scale_weights[s] * per_image)
        return torch.stack(values).sum(0)

    def grad(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        r"""Gradient of :meth:`fn` from the optimal assignments, ``[B, C, H, W]``."""
        self._check_x(x)
        return self._grad_unchecked(x)

    def _grad_unchecked(self, x: torch.Tensor) -> torch.Tensor:  # grad without the input check
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self._fn_unchecked(xx).sum(), xx)
        return g

    def lipschitz_bound(self, x: torch.Tensor) -> float:
        r"""Bound :math:`\sum_s w_s 2 p^2 / N_s` on the curvature of each quadratic piece of ``fn``."""
        self._check_x(x)
        return self._lipschitz_bound(x)

    def _lipschitz_bound(self, x: torch.Tensor) -> float:
        bound = 0.0
        for s, patches in self._scales(x.detach()):
            bound += self.scale_weights[s] * 2 * self.patch_size**2 / patches.shape[1]
        return bound

    def prox(self, x: torch.Tensor, *args, gamma: float = 1.0, max_iter: int = 200, tol: float = 1e-7, **kwargs):
        r"""Proximal point :math:`\operatorname{argmin}_z g(z) + \frac1{2\gamma}\|z - x\|^2` (local).

        :math:`\psi` is first updated at ``x``, then frozen, and the objective is minimised
        by gradient descent with step :math:`1/(1/\gamma + L)`, :math:`L` from
        :meth:`lipschitz_bound` (``g`` is a minimum of quadratics, so this returns a
        stationary point of the piece that contains it).

        :param torch.Tensor x: image ``[B, C, H, W]``.
        :param float gamma: step :math:`\gamma > 0`.
        """
        self._check_x(x)
        gamma = check_positive(gamma, "gamma")
        max_iter = check_count(max_iter, "max_iter")
        tol = check_positive(tol, "tol", allow_zero=True)
        if not self._frozen and self._is_new(x):
            self._update_dual(x, self.psi_iters)
        step = 1.0 / (1.0 / gamma + self._lipschitz_bound(x))
        z = x.detach().clone()
        with self.frozen():
            for _ in range(max_iter):
                direction = self._grad_unchecked(z) + (z - x) / gamma  # z stays finite: x was checked
                z = z - step * direction
                if direction.norm() * step <= tol * max(float(z.norm()), 1e-12):
                    break
        return z


def __getattr__(name: str):
    # the training loss lives in wpp_loss (one idea per file); this path keeps working
    if name == "WassersteinPatchLoss":
        from deepinv_pnn.optim.wpp_loss import WassersteinPatchLoss

        return WassersteinPatchLoss
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
