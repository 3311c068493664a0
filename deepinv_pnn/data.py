"""Images and datasets: embedded default images, image folders, patch sets.

The embedded default images are scikit-image's bundled images, so the package
needs no download and no training data at run time. Datasets return
``{"x": tensor}`` dictionaries, deepinv's convention for :class:`deepinv.Trainer`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from deepinv_pnn.validation import check_count

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm")

# scikit-image images bundled in its wheel (no pooch download needed).
EMBEDDED_IMAGES = (
    "astronaut",
    "brick",
    "camera",
    "cat",
    "cell",
    "checkerboard",
    "clock",
    "coffee",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "microaneurysms",
    "moon",
    "page",
    "retina",
    "rocket",
    "shepp_logan_phantom",
    "text",
)


def _to_tensor(array: np.ndarray, grayscale: bool) -> torch.Tensor:
    """Convert an image array (H, W) or (H, W, C) of any dtype to ``[1, C, H, W]`` in [0, 1]."""
    from skimage.util import img_as_float

    image = img_as_float(array)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    if grayscale and image.ndim == 3:
        from skimage.color import rgb2gray

        image = rgb2gray(image)
    if image.ndim == 2:
        tensor = torch.from_numpy(np.ascontiguousarray(image))[None, None]
    else:
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    return tensor.float().clamp_(0, 1)


def _resize(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Centre-crop to the target aspect ratio, then resize with antialiasing."""
    if isinstance(size, (tuple, list, torch.Size)):
        if len(size) != 2:
            raise ValueError(f"size must be a positive int or (H, W), got {size}")
        target = tuple(size)
    else:
        target = (size, size)
    target = tuple(check_count(v, "size") for v in target)
    h, w = x.shape[-2:]
    aspect = target[1] / target[0]
    if w / h > aspect:
        new_w = max(1, round(h * aspect))
        left = (w - new_w) // 2
        x = x[..., :, left : left + new_w]
    else:
        new_h = max(1, round(w / aspect))
        top = (h - new_h) // 2
        x = x[..., top : top + new_h, :]
    if tuple(x.shape[-2:]) == target:
        return x
    return F.interpolate(x, size=target, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def load_image(
    name_or_path: str | os.PathLike,
    size: int | tuple[int, int] | None = None,
    grayscale: bool = True,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""Load an embedded image by name, or an image file by path.

    :param name_or_path: a scikit-image image name (see :data:`EMBEDDED_IMAGES`, e.g.
        ``"camera"``, ``"shepp_logan_phantom"``) or the path of an image file.
    :param int | tuple size: output size ``H`` (square) or ``(H, W)``; the image is
        centre-cropped to that aspect ratio and resized. ``None`` keeps the size.
    :param bool grayscale: convert colour images to one channel.
    :param device: the output device.
    :param dtype: the output floating-point dtype.
    :return: a ``[1, C, H, W]`` tensor with values in :math:`[0, 1]`.
    :raises ValueError: for an unknown name (the valid names are listed).
    :raises FileNotFoundError: for a path that does not exist.
    :raises ValueError: for a file that is not a readable image.

    :Examples:

    >>> from deepinv_pnn.data import load_image
    >>> load_image("camera", size=64).shape
    torch.Size([1, 1, 64, 64])
    >>> load_image("astronaut", size=(32, 48), grayscale=False).shape
    torch.Size([1, 3, 32, 48])
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype (values lie in [0, 1]), got {dtype}")
    name = str(name_or_path)
    if name in EMBEDDED_IMAGES:
        import skimage.data

        loader = getattr(skimage.data, "chelsea" if name == "cat" else name)
        array = loader()
    elif os.path.sep in name or Path(name).suffix.lower() in IMAGE_SUFFIXES or Path(name).exists():
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"image file {str(path)!r} does not exist")
        import skimage.io

        try:
            array = skimage.io.imread(path)
        except (OSError, ValueError, SyntaxError) as err:  # PIL/imageio report a bad file in several ways
            raise ValueError(f"could not read image file {str(path)!r} (not an image in a known format?): {err}") from err
    else:
        raise ValueError(
            f"unknown image {name!r}: give a file path or one of the embedded images "
            f"{', '.join(EMBEDDED_IMAGES)}"
        )
    x = _to_tensor(array, grayscale)
    if size is not None:
        x = _resize(x, size)
    return x.to(device=device, dtype=dtype)


def list_images(root: str | os.PathLike) -> list[Path]:
    """The image files of a folder (recursively), sorted.

    :raises FileNotFoundError: if ``root`` is not a folder or holds no image.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"image folder {str(root)!r} holds no image ({IMAGE_SUFFIXES})")
    return files


def split_files(root: str | os.PathLike, held_out: int) -> tuple[list[Path], list[Path]]:
    """Sorted image files of ``root``: all but the last ``held_out`` for training, those held out.

    :raises ValueError: unless ``0 <= held_out < number of images``.
    """
    files = list_images(root)
    if not 0 <= held_out < len(files):
        raise ValueError(f"held-out count must lie in [0, {len(files)}), got {held_out}")
    return files[: len(files) - held_out], files[len(files) - held_out :]


def random_crop_flip(
    x: torch.Tensor, crop_size: int | None, flips: bool, generator: torch.Generator
) -> torch.Tensor:
    """Random crop of ``[C, H, W]`` to ``crop_size`` and random flips/90-degree rotations."""
    if crop_size is not None:
        crop_size = check_count(crop_size, "crop_size")
        h, w = x.shape[-2:]
        if crop_size > min(h, w):
            raise ValueError(f"crop_size {crop_size} exceeds the image size {(h, w)}")
        top = int(torch.randint(0, h - crop_size + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - crop_size + 1, (1,), generator=generator))
        x = x[..., top : top + crop_size, left : left + crop_size]
    if flips:
        if torch.rand(1, generator=generator) < 0.5:
            x = x.flip(-1)
        x = torch.rot90(x, int(torch.randint(0, 4, (1,), generator=generator)), dims=(-2, -1))
    return x.contiguous()


def step_batch(
    images: list[torch.Tensor], step: int, seed: int, batch: int, crop_size: int
) -> tuple[torch.Tensor, torch.Generator]:
    """The random crops (with flips and rotations) of one training step, ``[batch, C, p, p]``.

    The batch depends only on ``(seed, step)``, so a recipe gives the same global batch in one
    process or split across DDP ranks, and resumes exactly. The generator is returned so that
    the caller can draw the step's noise from the same stream.

    :param list images: ``[C, H, W]`` tensors to crop from.
    :param int step: the training step.
    :param int seed: the run's seed.
    :param int batch: the global batch size.
    :param int crop_size: the side ``p`` of the square crops.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    index = torch.randint(0, len(images), (batch,), generator=generator).tolist()
    crops = [random_crop_flip(images[i], crop_size, True, generator) for i in index]
    return torch.stack(crops), generator


class ImageFolderDataset(Dataset):
    r"""Images of a folder with optional random crops and flips, as ``{"x": tensor}``.

    :param root: the folder (searched recursively for image files).
    :param int crop_size: side of the random square crop; ``None`` returns whole images.
    :param bool flips: random horizontal flips and 90-degree rotations.
    :param bool grayscale: convert colour images to one channel.
    :param files: an explicit list of files (e.g. a split), instead of the whole folder.
    :param int seed: seed of the augmentation; item ``i`` of epoch ``e`` depends only on
        ``(seed, e, i)``, so runs and processes are reproducible. Call
        :meth:`set_epoch` between epochs.
    :param bool cache: keep decoded images in memory.

    :Examples:

    >>> import tempfile, skimage.io, skimage.data
    >>> from deepinv_pnn.data import ImageFolderDataset
    >>> folder = tempfile.mkdtemp()
    >>> skimage.io.imsave(f"{folder}/a.png", skimage.data.camera())
    >>> ds = ImageFolderDataset(folder, crop_size=40)
    >>> ds[0]["x"].shape
    torch.Size([1, 40, 40])
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        crop_size: int | None = None,
        flips: bool = True,
        grayscale: bool = True,
        files: list | None = None,
        seed: int = 0,
        cache: bool = True,
    ):
        if files is None:
            if root is None:
                raise ValueError("give root (a folder) or files (a list of image paths)")
            files = list_images(root)
        if len(files) == 0:
            raise ValueError("files is empty")
        self.files = [Path(f) for f in files]
        self.crop_size = None if crop_size is None else check_count(crop_size, "crop_size")
        self.flips = flips
        self.grayscale = grayscale
        self.seed = seed
        self.epoch = 0
        self.cache = cache
        self._images: dict[int, torch.Tensor] = {}

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream (call once per epoch)."""
        self.epoch = int(epoch)

    def image(self, index: int) -> torch.Tensor:
        """The whole decoded image ``index`` as ``[C, H, W]``."""
        if index in self._images:
            return self._images[index]
        x = load_image(self.files[index], grayscale=self.grayscale)[0]
        if self.cache:
            self._images[index] = x
        return x

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        generator = torch.Generator().manual_seed(
            (self.seed * 1_000_003 + self.epoch) * 1_000_003 + int(index)
        )
        return {"x": random_crop_flip(self.image(index), self.crop_size, self.flips, generator)}


class PatchDataset(Dataset):
    r"""All (or a random subset of) ``p x p`` patches of a set of images, as ``{"x": tensor}``.

    :param images: a ``[N, C, H, W]`` tensor or a list of ``[1, C, H, W]`` / ``[C, H, W]`` tensors.
    :param int patch_size: side ``p`` of the square patches.
    :param int stride: distance between neighbouring patches.
    :param int n_patches: keep a random subset of this many patches (``None``: all).
    :param bool flatten: return patches as vectors of length ``C p^2`` instead of ``[C, p, p]``.
    :param int seed: seed of the random subset.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.data import PatchDataset
    >>> ds = PatchDataset(torch.rand(1, 1, 10, 10), patch_size=4, stride=2)
    >>> len(ds), ds[0]["x"].shape
    (16, torch.Size([1, 4, 4]))
    """

    def __init__(
        self,
        images: torch.Tensor | list,
        patch_size: int,
        stride: int = 1,
        n_patches: int | None = None,
        flatten: bool = False,
        seed: int = 0,
    ):
        if isinstance(images, torch.Tensor):
            images = [images] if images.dim() == 4 else [images[None]]
        if not isinstance(images, (list, tuple)) or not all(isinstance(im, torch.Tensor) for im in images):
            raise TypeError(f"images must be a torch.Tensor or a list of tensors, got {type(images).__name__}")
        if len(images) == 0:
            raise ValueError("images is empty: give at least one image")
        if any(im.dim() not in (3, 4) for im in images):
            raise ValueError(f"images must be [C, H, W] or [B, C, H, W], got {[tuple(im.shape) for im in images]}")
        tensors = [im if im.dim() == 4 else im[None] for im in images]
        if len({im.shape[1] for im in tensors}) > 1:
            raise ValueError(f"images must share one channel count, got {[im.shape[1] for im in tensors]}")
        if any(im.is_floating_point() and not torch.isfinite(im).all() for im in tensors):
            raise ValueError("images contain NaN or Inf values")
        patch_size, stride = check_count(patch_size, "patch_size"), check_count(stride, "stride")
        if n_patches is not None:
            n_patches = check_count(n_patches, "n_patches")
        patches = []
        for im in tensors:
            if min(im.shape[-2:]) < patch_size:
                raise ValueError(f"patch_size {patch_size} exceeds an image of shape {tuple(im.shape)}")
            unfolded = F.unfold(im.float(), patch_size, stride=stride)  # [B, C p^2, L]
            patches.append(unfolded.permute(0, 2, 1).reshape(-1, unfolded.shape[1]))
        self.channels = tensors[0].shape[1]
        self.patch_size = patch_size
        self.patches = torch.cat(patches)
        if n_patches is not None and n_patches < len(self.patches):
            generator = torch.Generator().manual_seed(seed)
            keep = torch.randperm(len(self.patches), generator=generator)[:n_patches]
            self.patches = self.patches[keep]
        self.flatten = flatten

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, index: int) -> dict:
        patch = self.patches[index]
        if not self.flatten:
            patch = patch.view(self.channels, self.patch_size, self.patch_size)
        return {"x": patch}
