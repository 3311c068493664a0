"""Embedded images, image folders and patch datasets."""

import numpy as np
import pytest
import skimage.io
import torch

from deepinv_pnn.data import (
    EMBEDDED_IMAGES,
    ImageFolderDataset,
    PatchDataset,
    load_image,
    split_files,
)


def test_load_image_camera_is_grayscale_in_unit_range():
    x = load_image("camera")
    assert x.shape == (1, 1, 512, 512) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    import skimage.data

    assert torch.allclose(x[0, 0], torch.from_numpy(skimage.data.camera() / 255.0).float())


def test_load_image_resizes_and_keeps_colour():
    x = load_image("astronaut", size=(32, 48), grayscale=False, dtype=torch.float64)
    assert x.shape == (1, 3, 32, 48) and x.dtype == torch.float64


@pytest.mark.parametrize("name", ["brick", "grass", "gravel", "moon", "coins", "shepp_logan_phantom", "horse"])
def test_every_listed_embedded_image_loads_offline(name):
    assert name in EMBEDDED_IMAGES
    x = load_image(name, size=16)
    assert x.shape == (1, 1, 16, 16) and torch.isfinite(x).all()


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="camera"):
        load_image("not-an-image")


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image(tmp_path / "missing.png")


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        skimage.io.imsave(tmp_path / f"im{i}.png", (rng.random((50, 60)) * 255).astype(np.uint8))
    return tmp_path


def test_image_folder_dataset_crops_and_is_reproducible(folder):
    ds = ImageFolderDataset(folder, crop_size=20, seed=3)
    first = ds[1]["x"]
    assert len(ds) == 3 and first.shape == (1, 20, 20)
    assert torch.equal(first, ImageFolderDataset(folder, crop_size=20, seed=3)[1]["x"])
    ds.set_epoch(1)
    assert not torch.equal(first, ds[1]["x"])


def test_image_folder_dataset_rejects_empty_and_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no image"):
        ImageFolderDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nope")


def test_patch_dataset_counts_and_values():
    image = torch.arange(100.0).view(1, 1, 10, 10)
    ds = PatchDataset(image, patch_size=4, stride=2)
    assert len(ds) == 16
    assert torch.equal(ds[0]["x"][0], image[0, 0, :4, :4])
    flat = PatchDataset(image, patch_size=4, stride=3, flatten=True, n_patches=5, seed=1)
    assert len(flat) == 5 and flat[0]["x"].shape == (16,)
    with pytest.raises(ValueError, match="patch_size"):
        PatchDataset(image, patch_size=11)


def test_step_batch_depends_only_on_seed_and_step():
    from deepinv_pnn.data import step_batch

    images = [torch.rand(1, 30, 40, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    first, _ = step_batch(images, step=7, seed=1, batch=5, crop_size=12)
    again, _ = step_batch(images, step=7, seed=1, batch=5, crop_size=12)
    other, _ = step_batch(images, step=8, seed=1, batch=5, crop_size=12)
    assert first.shape == (5, 1, 12, 12)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_split_files_holds_out_the_last_sorted_images(folder):
    train, held = split_files(folder, 1)
    assert [p.name for p in held] == [sorted(p.name for p in folder.glob("*.png"))[-1]]
    assert not set(train) & set(held) and len(train) + len(held) == len(list(folder.glob("*.png")))
    assert split_files(folder, 0)[1] == []
    for bad in (-1, len(train) + len(held)):
        with pytest.raises(ValueError, match="held-out count"):
            split_files(folder, bad)
