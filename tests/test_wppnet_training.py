"""The WPP network recipes' data conventions."""

import pytest
import skimage.data
import skimage.io

from deepinv_pnn.training import train_wppnet


def test_reference_follows_the_training_material(tmp_path):
    # two references in one folder (the material folder has ref_FS.png and ref_SiC.png):
    # the one named after the training file is taken, never the first in sort order
    for name in ("ref_FS.png", "ref_SiC.png"):
        skimage.io.imsave(tmp_path / name, skimage.data.camera()[:32, :32], check_contrast=False)
    train = tmp_path / "train_SiC_x4.h5"
    assert train_wppnet.find_reference(tmp_path, None, train) == tmp_path / "ref_SiC.png"
    assert train_wppnet.find_reference(tmp_path, "ref_FS.png", train) == tmp_path / "ref_FS.png"
    with pytest.raises(ValueError, match="several reference images.*pass --reference"):
        train_wppnet.find_reference(tmp_path, None, tmp_path / "train_grass_x4.h5")
    (tmp_path / "ref_FS.png").unlink()
    assert train_wppnet.find_reference(tmp_path, None, tmp_path / "train_grass_x4.h5") == tmp_path / "ref_SiC.png"
