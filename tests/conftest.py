"""Shared test set-up: seeded, single-threaded, CPU (or DEEPINV_TEST_DEVICE)."""

import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("DEEPINV_PNN_TEST_THREADS", "2")))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def device():
    return "cuda" if os.environ.get("DEEPINV_TEST_DEVICE") == "gpu" and torch.cuda.is_available() else "cpu"


@pytest.fixture
def small_image_folder(tmp_path):
    """Five small grayscale PNGs (shifted crops of the embedded camera image, 48-64 rows),
    a stand-in for a training folder: the recipes split off the last images as held out."""
    import numpy as np
    import skimage.io

    from deepinv_pnn.data import load_image

    camera = (load_image("camera", size=96)[0, 0].numpy() * 255).astype(np.uint8)
    for i in range(5):
        skimage.io.imsave(tmp_path / f"img_{i}.png", np.roll(camera, 7 * i, axis=1)[: 48 + 4 * i, :48])
    return tmp_path
