r"""Patch extraction and random patch sampling on ``[B, C, H, W]`` tensors.

A patch of side :math:`p` at position :math:`(r, c)` of an image :math:`x` is the vector
:math:`P_{r,c}\,x = (x_{k, r+a, c+b})_{k, a, b} \in \mathbb{R}^{C p^2}` (channel-major,
then rows, then columns: the order of :func:`torch.nn.functional.unfold`). Patches are
returned as ``[B, N, C p^2]`` tensors; every function is differentiable in ``x``.

Random subsets are drawn by index arithmetic, so sampling ``n`` patches costs
:math:`O(n C p^2)` memory whatever the image size. :func:`gaussian_pyramid` gives the
coarser scales of multiscale patch priors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PAD_MODES = ("reflect", "circular", "replicate", "constant")


def pad_image(x: torch.Tensor, patch_size: int, mode: str | None) -> torch.Tensor:
    r"""Pad ``x`` by ``patch_size - 1`` pixels on each side so that every pixel is covered
    by as many patches as an interior one.

    :param torch.Tensor x: image ``[B, C, H, W]``.
    :param int patch_size: side :math:`p` of the patches.
    :param str mode: ``None`` (no padding) or a mode of :func:`torch.nn.functional.pad`
        (``"reflect"``, ``"circular"``, ``"replicate"``, ``"constant"``).
    :return: the padded image.
    """
    if mode is None:
        return x
    if mode not in PAD_MODES:
        raise ValueError(f"pad must be None or one of {PAD_MODES}, got {mode!r}")
    q = patch_size - 1
    if q == 0:
        return x
    if mode == "reflect" and min(x.shape[-2:]) <= q:
        raise ValueError(
            f"reflect padding by {q} needs an image larger than {q} pixels, got {tuple(x.shape[-2:])}"
        )
    return F.pad(x, (q, q, q, q), mode=mode)


def min_padded_side(patch_size: int, mode: str | None) -> int:
    r"""The smallest image side that :func:`pad_image` accepts with ``mode`` and that, once
    padded, still holds a whole :math:`p \times p` patch.

    :param int patch_size: side :math:`p` of the patches.
    :param str mode: ``None`` or a padding mode of :func:`pad_image`.
    :return: :math:`p` without padding or with ``"reflect"`` (which needs a side :math:`> p - 1`),
        :math:`\max(p - 1, 1)` with ``"circular"`` (which wraps at most once), 1 otherwise.

    :Examples:

    >>> from deepinv_pnn.nn.patches import min_padded_side
    >>> min_padded_side(6, None), min_padded_side(6, "circular"), min_padded_side(6, "constant")
    (6, 5, 1)
    """
    if mode is None or mode == "reflect":
        return patch_size
    if mode == "circular":
        return max(patch_size - 1, 1)
    return 1


def _check(x: torch.Tensor, patch_size: int) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a [B, C, H, W] tensor, got {got}")
    if not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
    if patch_size > min(x.shape[-2:]):
        raise ValueError(f"patch_size {patch_size} exceeds the image size {tuple(x.shape[-2:])}")


def center_patches(patches: torch.Tensor) -> torch.Tensor:
    r"""Subtract from each patch its mean value: :math:`q \mapsto q - \bar q\,\mathbf 1`.

    :param torch.Tensor patches: ``[..., D]`` patches.
    :return: centred patches of the same shape.
    """
    return patches - patches.mean(dim=-1, keepdim=True)


def num_patches(height: int, width: int, patch_size: int, stride: int = 1) -> int:
    """Number of patch positions of an ``height x width`` image."""
    return ((height - patch_size) // stride + 1) * ((width - patch_size) // stride + 1)


def extract_patches(
    x: torch.Tensor,
    patch_size: int,
    stride: int = 1,
    pad: str | None = None,
    center: bool = False,
) -> torch.Tensor:
    r"""All patches of ``x`` on a grid of step ``stride``.

    :param torch.Tensor x: image ``[B, C, H, W]``.
    :param int patch_size: side :math:`p` of the patches.
    :param int stride: step between patch positions.
    :param str pad: padding mode applied first (see :func:`pad_image`), ``None`` for none.
    :param bool center: subtract each patch's mean.
    :return: ``[B, N, C p^2]`` patches.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.nn.patches import extract_patches
    >>> extract_patches(torch.rand(2, 1, 10, 10), 4).shape
    torch.Size([2, 49, 16])
    """
    x = pad_image(x, patch_size, pad)
    _check(x, patch_size)
    patches = F.unfold(x, patch_size, stride=stride).transpose(1, 2)
    return center_patches(patches) if center else patches


def random_positions(
    batch: int,
    height: int,
    width: int,
    patch_size: int,
    n: int,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
    replacement: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Random top-left corners of ``n`` patches per image.

    :return: ``(rows, cols)``, each ``[B, n]`` (long). Without replacement when
        ``replacement`` is ``False`` and ``n`` does not exceed the number of positions.
    """
    n_rows, n_cols = height - patch_size + 1, width - patch_size + 1
    total = n_rows * n_cols
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    gen_device = generator.device if generator is not None else "cpu"
    if replacement or n > total:
        flat = torch.randint(0, total, (batch, n), generator=generator, device=gen_device)
    else:
        flat = torch.stack(
            [torch.randperm(total, generator=generator, device=gen_device)[:n] for _ in range(batch)]
        )
    flat = flat.to(device)
    return flat // n_cols, flat % n_cols


def gather_patches(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, patch_size: int) -> torch.Tensor:
    r"""Patches of ``x`` whose top-left corners are ``(rows[b, i], cols[b, i])``.

    :param torch.Tensor x: image ``[B, C, H, W]``.
    :param torch.Tensor rows: ``[B, n]`` row indices.
    :param torch.Tensor cols: ``[B, n]`` column indices.
    :param int patch_size: side :math:`p` of the patches.
    :return: ``[B, n, C p^2]`` patches, in the order of :func:`extract_patches`.
    """
    b, c = x.shape[:2]
    offsets = torch.arange(patch_size, device=x.device)
    r = rows[:, :, None, None] + offsets[None, None, :, None]  # [B, n, p, 1]
    s = cols[:, :, None, None] + offsets[None, None, None, :]  # [B, n, 1, p]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    patches = x.permute(0, 2, 3, 1)[batch, r, s]  # [B, n, p, p, C]
    return patches.permute(0, 1, 4, 2, 3).reshape(b, rows.shape[1], c * patch_size**2)


def sample_patches(
    x: torch.Tensor,
    patch_size: int,
    n: int | None,
    generator: torch.Generator | None = None,
    pad: str | None = None,
    center: bool = False,
) -> torch.Tensor:
    r"""``n`` random patches of each image of ``x`` (all patches when ``n`` is ``None``).

    :param torch.Tensor x: image ``[B, C, H, W]``.
    :param int patch_size: side :math:`p` of the patches.
    :param int n: number of patches per image; ``None`` or a number at least the number of
        positions returns all patches (as :func:`extract_patches`).
    :param torch.Generator generator: source of randomness (seed it for reproducibility).
    :param str pad: padding mode applied first, ``None`` for none.
    :param bool center: subtract each patch's mean.
    :return: ``[B, n, C p^2]`` patches.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.nn.patches import sample_patches
    >>> g = torch.Generator().manual_seed(0)
    >>> sample_patches(torch.rand(1, 3, 32, 32), 6, 100, generator=g).shape
    torch.Size([1, 100, 108])
    """
    x = pad_image(x, patch_size, pad)
    _check(x, patch_size)
    h, w = x.shape[-2:]
    if n is None or n >= num_patches(h, w, patch_size):
        return extract_patches(x, patch_size, center=center)
    rows, cols = random_positions(x.shape[0], h, w, patch_size, n, generator, x.device)
    patches = gather_patches(x, rows, cols, patch_size)
    return center_patches(patches) if center else patches


def augment_dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    r"""The 8 flips/rotations of a batch of images.

    Used to enlarge a patch training set drawn from a single image (zero-shot patchNR).

    :param torch.Tensor x: ``[B, C, H, W]`` images.
    :return: a list of 8 tensors (``H`` and ``W`` swap in the odd rotations).
    """
    views = []
    for flip in (False, True):
        y = x.flip(-1) if flip else x
        for k in range(4):
            views.append(torch.rot90(y, k, dims=(-2, -1)))
    return views


def pyramid_sizes(size: int, n_scales: int) -> list[int]:
    """The sides of the (at most ``n_scales``) pyramid levels of an image of side ``size`` (the 4x4
    filter needs a level of at least 4 pixels to compute the next one)."""
    sizes = [size]
    while len(sizes) < n_scales and sizes[-1] >= 4:
        sizes.append((sizes[-1] - 4) // 2 + 1)
    return sizes


def gaussian_pyramid(x: torch.Tensor, n_scales: int) -> list[torch.Tensor]:
    r"""``[x, Dx, D^2 x, ...]`` with :math:`D` the 4x4 Gaussian (std 1) filter with stride 2.

    :raises ValueError: if a level to be filtered is smaller than 4 pixels.
    """
    if len(pyramid_sizes(min(x.shape[-2:]), n_scales)) < n_scales:
        raise ValueError(
            f"an image of size {tuple(x.shape[-2:])} is too small for a pyramid of {n_scales} scales "
            f"(the 4x4 filter needs at least 4 pixels at every scale but the last)"
        )
    grid = torch.arange(4, dtype=x.dtype, device=x.device) - 1.5
    k = torch.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / 2)
    k = (k / k.sum()).expand(x.shape[1], 1, 4, 4)
    out = [x]
    for _ in range(n_scales - 1):
        out.append(F.conv2d(out[-1], k, stride=2, groups=x.shape[1]))
    return out


def concatenate_images(images: list | tuple, name: str = "images") -> torch.Tensor:
    """One ``[R, C, H, W]`` tensor from a non-empty list of ``[1, C, H, W]`` (or ``[C, H, W]``) images of one shape."""
    if len(images) == 0:
        raise ValueError(f"{name} must hold at least one image, got an empty list")
    batch = []
    for k, image in enumerate(images):
        if not isinstance(image, torch.Tensor):
            raise TypeError(f"{name}[{k}] must be a [1, C, H, W] or [C, H, W] tensor, got {type(image).__name__}")
        if image.dim() not in (3, 4):
            raise ValueError(f"{name}[{k}] must be a [1, C, H, W] or [C, H, W] tensor, got shape {tuple(image.shape)}")
        batch.append(image if image.dim() == 4 else image[None])
        if batch[-1].shape[1:] != batch[0].shape[1:]:
            raise ValueError(
                f"{name} must share channels and size: {name}[{k}] has shape "
                f"{tuple(batch[-1].shape[1:])}, {name}[0] {tuple(batch[0].shape[1:])}"
            )
    return torch.cat(batch)
