"""The ConvPNN training recipe: reproducible, resumable, data parallel."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import skimage.data
import skimage.io

from deepinv_pnn.models.pnn import ConvPNN
from deepinv_pnn.pretrained import read_metadata
from deepinv_pnn.training.train_convpnn import main, train_convpnn

SMALL = {"width": 8, "state_channels": 2, "n_layers": 2, "n_stages": 1}
KW = {
    "batch_size": 4,
    "patch_size": 16,
    "val_count": 2,
    "model_kwargs": SMALL,
    "progress": False,
    "warmup": 1,
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    camera = skimage.data.camera()
    for i in range(6):
        skimage.io.imsave(root / f"im{i}.png", camera[40 * i : 40 * i + 48, 50 * i : 50 * i + 48])
    return root


def test_recipe_command_is_kept_in_the_weights(folder, tmp_path):
    out = tmp_path / "w.safetensors"
    main(["--data-dir", str(folder), "--out", str(out), "--max-steps", "1", "--batch-size", "2", "--patch-size", "16",
          "--val-count", "1", "--width", "16", "--n-layers", "1", "--warmup", "1", "--sigma", "0.1"])
    command = read_metadata(out)["command"]
    assert command.startswith("python -m deepinv_pnn.training.train_convpnn ")
    assert "--max-steps 1 " in command and "--width 16 " in command and "--resume" not in command


def test_recipe_writes_weights_and_metrics(folder, tmp_path):
    out = tmp_path / "w.safetensors"
    metrics = train_convpnn(folder, out, max_steps=3, **KW)
    assert len(metrics["losses"]) == 3 and metrics["val_images"] == 2
    saved = json.loads(Path(str(out) + ".json").read_text())
    assert saved["val_psnr"] == pytest.approx(metrics["val_psnr"])
    assert metrics["orthogonality_error"] < 1e-6
    model = ConvPNN(pretrained=out, **SMALL)  # loads back
    assert model.lipschitz_bound() < 1 + 1e-5


def test_resumed_run_matches_an_uninterrupted_one(folder, tmp_path):
    straight = train_convpnn(folder, None, max_steps=5, **KW)["losses"]
    ckpt = tmp_path / "ckpt.pt"
    first = train_convpnn(folder, None, max_steps=5, stop_at=2, checkpoint=ckpt, **KW)["losses"]
    assert len(first) == 2 and ckpt.is_file() and not Path(str(ckpt) + ".tmp").exists()
    resumed = train_convpnn(folder, None, max_steps=5, checkpoint=ckpt, resume=True, **KW)["losses"]
    assert resumed == pytest.approx(straight, rel=1e-6)


@pytest.mark.parametrize(
    "optimizer", [pytest.param("ispalm", marks=pytest.mark.slow), "cayley-sgd", "adam"]
)
def test_other_optimisers_train(folder, optimizer):
    metrics = train_convpnn(folder, None, max_steps=3, optimizer=optimizer, **KW)
    assert (
        all(math.isfinite(v) for v in metrics["losses"]) and metrics["orthogonality_error"] < 1e-5
    )


@pytest.mark.slow
def test_ddp_two_processes_follow_the_single_process_loss_curve(folder, tmp_path):
    args = [
        "--data-dir",
        str(folder),
        "--max-steps",
        "20",
        "--batch-size",
        "8",
        "--patch-size",
        "16",
        "--val-count",
        "2",
        "--width",
        "16",
        "--n-layers",
        "3",
        "--warmup",
        "1",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    module = ["-m", "deepinv_pnn.training.train_convpnn"]
    subprocess.run(
        [sys.executable, *module, *args, "--losses-out", str(tmp_path / "a.json")],
        check=True,
        env=env,
    )
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    subprocess.run(
        [*torchrun, *module, *args, "--losses-out", str(tmp_path / "b.json")], check=True, env=env
    )
    a = json.loads((tmp_path / "a.json").read_text())
    b = json.loads((tmp_path / "b.json").read_text())
    assert len(a) == len(b) == 20
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5
