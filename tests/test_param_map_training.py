"""The training recipe of TVParameterMapNet: a tiny run writes loadable weights and metrics."""

import json

import pytest

from deepinv_pnn.models.param_map import TVParameterMapNet
from deepinv_pnn.training.train_param_map import pack, parse_args, train, unpack


@pytest.mark.parametrize("problem", ["denoise", "deblur"])
def test_tiny_training_run_writes_weights_and_metrics(small_image_folder, tmp_path, problem):
    out = tmp_path / f"tvmap_{problem}.safetensors"
    args = parse_args([
        "--data-dir", str(small_image_folder), "--out", str(out), "--problem", problem, "--minutes", "0.01",
        "--n-iter", "4", "--crop", "32", "--batch", "2", "--widths", "4", "8", "--val-count", "2",
    ])
    metrics = train(args)
    assert out.is_file() and metrics["val_images"] == 2
    assert json.loads((tmp_path / f"tvmap_{problem}.safetensors.json").read_text())["problem"] == problem
    model = TVParameterMapNet(pretrained=str(out))  # the config (T, widths) comes from the file
    assert model.n_iter == 4 and model.unet.widths == (4, 8)
    packed = tmp_path / "both.safetensors"
    pack({problem: str(out)}, str(packed))
    (split,) = unpack(str(packed), str(tmp_path / "split"))
    assert TVParameterMapNet(pretrained=str(split)).n_iter == 4


def test_psnr_loss_and_step_limit(small_image_folder, tmp_path):
    import deepinv as dinv
    import torch

    from deepinv_pnn.training.train_param_map import NegPSNRLoss

    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x_net = x + 0.1 * torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(NegPSNRLoss()(x_net, x), -dinv.metric.PSNR()(x_net, x), atol=1e-4)
    out = tmp_path / "t.safetensors"
    metrics = train(parse_args([
        "--data-dir", str(small_image_folder), "--out", str(out), "--minutes", "5", "--max-steps", "3", "--loss", "psnr",
        "--n-iter", "4", "--crop", "32", "--batch", "2", "--widths", "4", "8", "--val-count", "2",
    ]))
    assert metrics["train_steps"] == 3 and len(metrics["train_losses"]) == 3
    assert all(-60 < v < 0 for v in metrics["train_losses"])  # minus a PSNR in dB


def test_init_from_the_other_data_term_keeps_the_map_network_and_resets_the_steps(small_image_folder, tmp_path):
    """``--data-term prox --init dual_weights``: the U-Net carries over, the PDHG steps of the
    other iteration do not (they start from the prox iteration's initialisation)."""
    import torch

    common = ["--data-dir", str(small_image_folder), "--problem", "deblur", "--minutes", "5", "--n-iter", "4", "--crop", "32",
              "--batch", "2", "--widths", "4", "8", "--val-count", "2", "--lr", "0"]
    dual = tmp_path / "dual.safetensors"
    train(parse_args(common + ["--out", str(dual), "--max-steps", "1"]))
    prox = tmp_path / "prox.safetensors"
    train(parse_args(common + ["--out", str(prox), "--max-steps", "1", "--data-term", "prox", "--init", str(dual)]))
    a, b = TVParameterMapNet(pretrained=str(dual)), TVParameterMapNet(pretrained=str(prox))
    assert (a.pdhg.data_term, b.pdhg.data_term) == ("dual", "prox")
    for key, value in a.unet.state_dict().items():
        assert torch.equal(value, b.unet.state_dict()[key]), key
    fresh = TVParameterMapNet(data_term="prox", widths=(4, 8))
    assert torch.equal(b.pdhg.log_ratio, fresh.pdhg.log_ratio)
    assert not torch.equal(a.pdhg.log_ratio, b.pdhg.log_ratio)
