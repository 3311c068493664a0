"""The patchNR recipe: trains on the chosen reference image(s) only, reports the held-out NLL, writes loadable weights."""

import json

import pytest
import skimage.data
import skimage.io
import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.optim import PatchNR
from deepinv_pnn.pretrained import read_metadata
from deepinv_pnn.training import train_patchnr


def make_data(folder):
    grass = skimage.data.grass()  # 512 x 512 uint8
    skimage.io.imsave(folder / "ref_grass.png", grass[:48, :48])
    skimage.io.imsave(folder / "ref_other.png", grass[400:448, 400:448])  # not matched by --images
    skimage.io.imsave(folder / "val_grass.png", grass[256:304, 256:304])


def run(folder, out, monkeypatch, extra=()):
    seen = {}
    fit = PatchNR.fit

    def recording_fit(self, images, **kwargs):
        seen["images"], seen["kwargs"] = [im.clone() for im in images], kwargs
        return fit(self, images, **kwargs)

    monkeypatch.setattr(PatchNR, "fit", recording_fit)
    metrics = train_patchnr.main([
        "--data-dir", str(folder), "--out", str(out), "--images", "ref_grass.png", "--val", "val_grass.png",
        "--patch-size", "4", "--n-blocks", "2", "--hidden", "16", "--batch-size", "64", "--steps", "6",
        "--seed", "0", *extra,
    ])
    return metrics, seen["images"], seen["kwargs"]


def test_recipe_trains_on_the_chosen_reference_and_writes_loadable_weights(tmp_path, monkeypatch):
    make_data(tmp_path)
    out = tmp_path / "nr.safetensors"
    metrics, images, kwargs = run(tmp_path, out, monkeypatch)
    assert kwargs["dequantize"] == 1 / 255  # 8-bit dequantisation only, unless asked
    assert metrics["train_images"] == ["ref_grass.png"] and metrics["val_images"] == ["val_grass.png"]
    assert metrics["steps"] == 6
    assert len(images) == 1 and torch.equal(images[0], load_image(tmp_path / "ref_grass.png"))  # raw, alone
    assert json.loads(out.with_suffix(".json").read_text())["val_nll_per_patch"] == metrics["val_nll_per_patch"]
    prior = PatchNR(pretrained=out)  # the architecture comes from the file
    command = read_metadata(out)["command"]  # and the command that made it
    assert command.startswith("python -m deepinv_pnn.training.train_patchnr ") and "--steps 6 " in command
    assert (prior.patch_size, prior.n_blocks, prior.hidden) == (4, 2, 16)
    val = load_image(tmp_path / "val_grass.png")
    assert torch.isfinite(prior.fn(val)).all()


def test_half_precision_storage(tmp_path, monkeypatch):
    make_data(tmp_path)
    run(tmp_path, tmp_path / "full.safetensors", monkeypatch)
    run(tmp_path, tmp_path / "half.safetensors", monkeypatch, ["--save-dtype", "float16"])
    full, half = PatchNR(pretrained=tmp_path / "full.safetensors"), PatchNR(pretrained=tmp_path / "half.safetensors")
    assert (tmp_path / "half.safetensors").stat().st_size < 0.6 * (tmp_path / "full.safetensors").stat().st_size
    val = load_image(tmp_path / "val_grass.png")
    assert torch.allclose(half.fn(val), full.fn(val), rtol=1e-3)

def test_dequantize_smooths_the_fitted_density(tmp_path, monkeypatch):
    make_data(tmp_path)
    metrics, _, kwargs = run(tmp_path, tmp_path / "nr.safetensors", monkeypatch, ["--dequantize", "0.07"])
    assert kwargs["dequantize"] == 0.07 and metrics["args"]["dequantize"] == "0.07"


def test_a_training_glob_that_takes_the_held_out_image_is_refused(tmp_path, monkeypatch):
    """``--images '*grass*.png'`` would also train on val_grass.png, the held-out image."""
    make_data(tmp_path)
    with pytest.raises(ValueError, match="also matches the held-out val_grass.png"):
        run(tmp_path, tmp_path / "nr.safetensors", monkeypatch, ["--images", "*grass*.png"])
