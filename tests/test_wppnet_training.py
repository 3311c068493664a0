"""The WPPNet and WPPFlow recipes: run end to end on a tiny data folder and keep their best validated weights."""

import json

import h5py
import numpy as np
import pytest
import skimage.data
import skimage.io
import torch

from deepinv_pnn.models import WPPFlow, WPPNet
from deepinv_pnn.pretrained import read_metadata
from deepinv_pnn.sr_physics import WPPSuperResolution
from deepinv_pnn.training import train_wppflow, train_wppnet


def make_data(folder):
    grass = skimage.data.grass()  # 512 x 512 uint8
    skimage.io.imsave(folder / "ref_grass.png", grass[:96, :96])
    skimage.io.imsave(folder / "val_grass.png", grass[256:320, 256:320])
    physics = WPPSuperResolution(factor=4)
    hr = torch.from_numpy(grass[128:224, 128:224].astype(np.float32) / 255)[None, None]
    lr = physics.A(hr)  # 24 x 24
    with h5py.File(folder / "train_grass_x4.h5", "w") as f:
        for i in range(4):
            f[str(i)] = lr[..., 6 * (i % 2) : 6 * (i % 2) + 12, 6 * (i // 2) : 6 * (i // 2) + 12].numpy()


def test_wppnet_recipe_trains_validates_and_keeps_the_best(tmp_path):
    make_data(tmp_path)
    out = tmp_path / "net.safetensors"
    metrics = train_wppnet.main([
        "--data-dir", str(tmp_path), "--out", str(out), "--minutes", "5", "--max-steps", "4", "--val-every", "2",
        "--features", "4", "--blocks", "1", "--batch-size", "2", "--n-reference-patches", "100", "--psi-iters", "2",
        "--lr", "1e-2", "--seed", "0",
    ])
    assert metrics["steps"] == 4
    assert [s for s, _ in metrics["val_curve"]] == [2, 4]
    # the kept weights are the best validated ones, and they are what the file holds
    best_step, best_value = max(metrics["val_curve"], key=lambda c: c[1])
    assert metrics["kept_step"] == best_step
    assert abs(metrics["val_psnr_mean"] - best_value) < 1e-6
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["kept_step"] == best_step
    net = WPPNet(features=4, blocks=1, pretrained=out).eval()
    command = read_metadata(out)["command"]
    assert command.startswith("python -m deepinv_pnn.training.train_wppnet ") and "--max-steps 4 " in command
    assert net(torch.rand(1, 1, 6, 6), WPPSuperResolution(factor=4)).shape == (1, 1, 24, 24)


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


def test_wppflow_recipe_starts_from_a_wppnet_and_keeps_the_best(tmp_path):
    make_data(tmp_path)
    net_file = tmp_path / "net.safetensors"
    torch.manual_seed(1)
    net = WPPNet(features=4, blocks=1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    from deepinv_pnn.pretrained import save_weights

    save_weights(net, net_file)
    out = tmp_path / "flow.safetensors"
    common = ["--data-dir", str(tmp_path), "--minutes", "5", "--features", "4", "--blocks", "1", "--n-blocks", "1",
              "--hidden", "4", "--cond-features", "2", "--batch-size", "2", "--n-reference-patches", "100",
              "--psi-iters", "2", "--val-samples", "2", "--seed", "0"]
    metrics = train_wppflow.main(common + ["--out", str(out), "--max-steps", "4", "--val-every", "2",
                                           "--backbone-init", str(net_file), "--lr", "1e-2",
                                           "--backbone-lr-scale", "0.1"])
    assert metrics["steps"] == 4 and [c[0] for c in metrics["val_curve"]] == [2, 4]
    # kept by the samples' CRPS (lower is better) by default
    best_step, _, best_crps, _ = min(metrics["val_curve"], key=lambda c: c[2])
    assert metrics["kept_step"] == best_step and abs(metrics["val_crps"] - best_crps) < 1e-9
    assert 0 < metrics["val_crps"] < 0.5
    flow = WPPFlow(features=4, blocks=1, n_blocks=1, hidden=4, cond_features=2, pretrained=out)
    assert "--backbone-lr-scale 0.1 " in read_metadata(out)["command"]
    # the base network started from the WPPNet and moved at a tenth of the learning rate
    moved = max(float((a - b).detach().abs().max()) for a, b in zip(flow.backbone.parameters(), net.net.parameters()))
    assert 0 < moved < 0.05
    with pytest.raises(ValueError, match="no shipped WPPNet"):
        train_wppflow.main(common + ["--out", str(out), "--max-steps", "1", "--backbone-init", "shipped"])
    with pytest.raises(ValueError, match="neither"):
        train_wppflow.main(common + ["--out", str(out), "--max-steps", "1", "--backbone-init", "missing.pt"])


def test_wppflow_recipe_selects_by_psnr_and_centres_antithetic_pairs(tmp_path, monkeypatch):
    make_data(tmp_path)
    common = ["--data-dir", str(tmp_path), "--minutes", "5", "--features", "4", "--blocks", "1", "--n-blocks", "1",
              "--hidden", "4", "--cond-features", "2", "--batch-size", "2", "--n-reference-patches", "100",
              "--psi-iters", "2", "--val-samples", "2", "--seed", "0", "--backbone-init", "none", "--lr", "1e-2",
              "--max-steps", "4", "--val-every", "2"]
    metrics = train_wppflow.main(common + ["--out", str(tmp_path / "a.safetensors"), "--select", "psnr",
                                           "--centre-weight", "0"])
    best_step, best_psnr, _, _ = max(metrics["val_curve"], key=lambda c: c[1])
    assert metrics["kept_step"] == best_step and abs(metrics["val_psnr_mean"] - best_psnr) < 1e-9
    assert metrics["final"]["centre"] == 0
    # by default: the centring penalty is on (finite, positive) and the base network stays fixed,
    # out of autograd: the gradient clipping sees the flow's own parameters only, all with gradients
    clipped = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(params, max_norm, *args, **kwargs):
        clipped.append(list(params))
        return clip(clipped[-1], max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    centred = train_wppflow.main(common + ["--out", str(tmp_path / "b.safetensors")])
    assert centred["steps"] == 4 and 0 < centred["final"]["centre"] < 100
    torch.manual_seed(0)  # as the recipe does before building the flow
    start = WPPFlow(features=4, blocks=1, n_blocks=1, hidden=4, cond_features=2, seed=0)
    n_flow = sum(1 for _ in start.parameters()) - sum(1 for _ in start.backbone.parameters())
    assert len(clipped) == 4 and all(len(params) == n_flow for params in clipped)
    assert all(p.requires_grad and p.grad is not None for p in clipped[-1])
    trained = WPPFlow(features=4, blocks=1, n_blocks=1, hidden=4, cond_features=2, pretrained=tmp_path / "b.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(start.backbone.parameters(), trained.backbone.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(start.flow.parameters(), trained.flow.parameters()))
    with pytest.raises(SystemExit):
        train_wppflow.main(common + ["--out", str(tmp_path / "c.safetensors"), "--centre-weight", "1",
                                     "--batch-size", "1"])
