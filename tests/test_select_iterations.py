"""The default T of a trained TV-map network, chosen on training images: the grid, the tie rule,
the recipe's ``--select-n-iter`` and the command line that rewrites existing weights."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from deepinv_pnn.models.param_map import TVParameterMapNet, weights_config
from deepinv_pnn.training.select_iterations import (
    choose_n_iter,
    iteration_grid,
    main,
    select_on_training_images,
)
from deepinv_pnn.training.train_param_map import evaluate, parse_args, train


def test_iteration_grid_covers_the_training_range():
    assert iteration_grid(32, 96, 16) == [32, 48, 64, 80, 96]
    assert iteration_grid(32, 90, 16) == [32, 48, 64, 80, 90]  # the maximum is always a candidate
    assert iteration_grid(5, 5, 16) == [5]
    for bad in [(0, 10, 1), (10, 5, 1), (1, 10, 0)]:
        with pytest.raises(ValueError, match="n_min <= n_max"):
            iteration_grid(*bad)
    with pytest.raises(TypeError, match="ints"):
        iteration_grid(1.5, 10, 1)


def test_ties_within_the_tolerance_go_to_the_smaller_T():
    assert choose_n_iter({32: 30.0, 64: 30.104, 96: 30.107}) == 64  # 64 is 0.003 dB below the best
    assert choose_n_iter({32: 30.0, 64: 30.100, 96: 30.107}) == 96  # 0.007 dB: not a tie
    assert choose_n_iter({32: 30.2, 64: 30.1}) == 32
    assert choose_n_iter({32: 30.0, 64: 30.5}, tie_db=1.0) == 32
    with pytest.raises(ValueError, match="empty"):
        choose_n_iter({})
    with pytest.raises(ValueError, match="finite"):
        choose_n_iter({32: 30.0, 64: float("nan")})
    with pytest.raises(ValueError, match="n_images must be >= 1"):
        select_on_training_images(None, ["a.png"], 0, "deblur", "cpu", (2, 4))


def _tiny_args(small_image_folder, out, *extra):
    return parse_args([
        "--data-dir", str(small_image_folder), "--out", str(out), "--problem", "deblur", "--max-steps", "2",
        "--n-iter", "2", "--n-iter-max", "34", "--crop", "32", "--batch", "2", "--widths", "4", "8",
        "--val-count", "2", *extra,
    ])


def test_recipe_stores_the_T_chosen_on_training_images(small_image_folder, tmp_path):
    out = tmp_path / "sel.safetensors"
    metrics = train(_tiny_args(small_image_folder, out, "--select-n-iter", "2"))
    config = weights_config(str(out), "deblur")
    selection = config["n_iter_selection"]
    assert selection["images"] == ["img_1.png", "img_2.png"]  # training images, not the held-out 3, 4
    assert selection["rule"] == "smallest T within 0.005 dB of the best mean PSNR"
    means = {int(t): v for t, v in selection["mean_psnr"].items()}
    assert sorted(means) == [2, 18, 34]
    assert max(means.values()) - min(means.values()) > 0.01  # T matters on these images
    assert config["n_iter"] == choose_n_iter(means) == TVParameterMapNet(pretrained=str(out)).n_iter
    assert metrics["config"]["n_iter"] == config["n_iter"]  # validated at the chosen T
    # the stored means are the PSNR of the saved network at each T
    model = TVParameterMapNet(pretrained=str(out), problem="deblur")
    files = sorted(small_image_folder.glob("img_*.png"))[1:3]
    for n_iter, value in means.items():
        results = evaluate(model, files, "deblur", "cpu", n_iter=n_iter, seed=0)
        assert np.mean([r["psnr"] for r in results]) == pytest.approx(value, abs=1e-4)


def test_command_line_rewrites_only_the_default_T(small_image_folder, tmp_path, capsys):
    plain = tmp_path / "plain.safetensors"
    train(_tiny_args(small_image_folder, plain))
    assert weights_config(str(plain), "deblur")["n_iter"] == 34  # without selection: the maximum
    out = tmp_path / "selected.safetensors"
    result = main([str(plain), "--data-dir", str(small_image_folder), "--problem", "deblur", "--out", str(out),
                   "--n-images", "2", "--val-count", "2"])
    assert result["n_iter"] == choose_n_iter(result["mean_psnr"])
    assert "<- chosen" in capsys.readouterr().out
    config, before = weights_config(str(out), "deblur"), weights_config(str(plain), "deblur")
    assert config["n_iter"] == result["n_iter"]
    assert {k: v for k, v in config.items() if k not in ("n_iter", "n_iter_selection")} == {
        k: v for k, v in before.items() if k != "n_iter"
    }
    new, old = load_file(str(out)), load_file(str(plain))
    assert new.keys() == old.keys() and all(torch.equal(new[k], old[k]) for k in old)
    assert json.loads(json.dumps(config["n_iter_selection"]))["images"] == ["img_1.png", "img_2.png"]
