"""The WCRR-NN recipe's reference start (--reference-init), its per-group rates and schedules,
and a run split over calls that follows one schedule (--schedule-steps, --resume)."""

import json
import math

import pytest
import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.optim import WeaklyConvexRidgeRegularizer
from deepinv_pnn.training.train_crr import lr_factor, make_optimizer
from deepinv_pnn.training.train_wcrr import REFERENCE_LOG_MU, main, reference_init


def _reference_model(**grid):
    return reference_init(WeaklyConvexRidgeRegularizer(**grid).double())


@pytest.mark.parametrize("grid", [{"num_knots": 101, "x_range": 0.1}, {}])
def test_reference_start_has_no_convex_part_and_a_clipped_identity_concave_part(grid):
    prior = _reference_model(**grid)
    r, k = prior.phi_minus.x_range, prior.phi_minus.x_range / 0.1
    t = torch.linspace(-3 * r, 3 * r, 61, dtype=torch.float64).view(1, 1, -1)
    assert prior.phi_plus(t).abs().max() == 0
    edge = r - 2 * r / (prior.phi_minus.num_knots - 1)  # the outer segments are flat, as the reference's clamp
    assert torch.allclose(prior.phi_minus(t), t.clamp(-edge, edge), atol=1e-12)
    assert float(prior.mu.detach()) == pytest.approx(math.exp(REFERENCE_LOG_MU))
    for level in (6.4, 15, 25, 50):  # e^5 / sigma (/255 units) times the range factor
        sigma = torch.tensor([level / 255], dtype=torch.float64)
        s = prior.channel_scaling(sigma, sigma).detach()
        assert torch.allclose(s, torch.full_like(s, k * math.exp(5.0) / level), rtol=1e-3)


def test_reference_start_is_the_same_regulariser_on_the_reference_grid_and_ours():
    small, ours = _reference_model(num_knots=101, x_range=0.1), _reference_model()
    ours.conv.load_state_dict(small.conv.state_dict())
    x = load_image("camera", size=24).double() * 0.01 + 0.002 * torch.randn(1, 1, 24, 24, dtype=torch.float64)
    for level in (10, 25):
        assert torch.allclose(ours.grad(x, level / 255), small.grad(x, level / 255), rtol=1e-9, atol=1e-12)
        assert torch.allclose(ours.fn(x, level / 255), small.fn(x, level / 255), rtol=1e-9)


def test_reference_start_is_concave_within_its_range_and_still_1_weakly_convex():
    prior = _reference_model()
    g = torch.Generator().manual_seed(0)
    # small filter responses fall inside the splines' range, where R is concave
    x = 0.002 * load_image("camera", size=24).double()
    hessian = prior.hessian_operator(x, 25 / 255)
    curvatures = []
    for _ in range(20):
        v = torch.randn(x.shape, generator=g, dtype=torch.float64)
        curvatures.append(float((v * hessian(v)).sum() / v.pow(2).sum()))
    assert max(curvatures) <= 1e-12  # no convex part at the start
    assert min(curvatures) < -0.01  # a genuine concave part
    assert min(curvatures) >= -1 - 1e-9  # R + |.|^2 / 2 convex: 1-weak convexity holds by construction


def test_lr_factor_cosine_and_reference_staircase():
    assert lr_factor(0.0) == pytest.approx(1.0) and lr_factor(1.0) == pytest.approx(0.1)
    assert lr_factor(0.5) == pytest.approx(0.55)
    assert lr_factor(0.0, "step") == 1.0 and lr_factor(0.99 / 12, "step") == 1.0
    assert lr_factor(1 / 12, "step") == pytest.approx(0.75)
    assert lr_factor(5.5 / 12, "step") == pytest.approx(0.75**5)
    assert lr_factor(10 / 12, "step") == lr_factor(1.0, "step") == pytest.approx(0.75**10)
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0.5, "linear")


def test_noise_conditioning_gets_its_own_rate_only_when_asked():
    prior = WeaklyConvexRidgeRegularizer(channels=(1, 4, 8), kernel_size=3)
    opt = make_optimizer(prior, 5e-3, 5e-5, 0.05, lr_scaling=1e-2)
    rates = {id(p): group["lr"] for group in opt.param_groups for p in group["params"]}
    assert rates[id(prior.scaling.coefficients)] == 1e-2
    assert rates[id(prior.phi_plus.coefficients)] == rates[id(prior.phi_minus.coefficients)] == 5e-5
    assert rates[id(prior.log_mu)] == 0.05
    assert all(rates[id(p)] == 5e-3 for p in prior.conv.parameters())
    plain = make_optimizer(prior, 5e-3, 5e-5, 0.05)
    rates = {id(p): group["lr"] for group in plain.param_groups for p in group["params"]}
    assert rates[id(prior.scaling.coefficients)] == 5e-5
    assert len(plain.param_groups) == 3


def _args(folder, out, *extra):
    return ["--data-dir", str(folder), "--out", str(out), "--device", "cpu", "--minutes", "5", "--batch", "2",
            "--patch", "16", "--val-count", "1", "--holdout", "1", "--val-images", "1", "--val-tol", "1e-2",
            "--inner-iter", "20", "--cg-iter", "5", "--threads", "1", "--loss", "l1", *extra]


def test_split_run_follows_one_schedule_and_resumes_from_its_checkpoint(small_image_folder, tmp_path):
    ckpt = tmp_path / "run.ckpt"
    common = ["--reference-init", "--schedule", "step", "--lr", "5e-3", "--lr-scaling", "5e-3", "--checkpoint", str(ckpt),
              "--ckpt-every", "100"]
    main(_args(small_image_folder, tmp_path / "a.safetensors", *common, "--schedule-steps", "3"))
    first = torch.load(ckpt, weights_only=True)
    assert first["step"] == 3  # the schedule's end stops the call; the last steps are checkpointed
    assert json.loads((tmp_path / "a.json").read_text())["steps"] == 3
    # the last step (index 2 of 3) ran at the staircase's factor at 2/3 of the schedule: 0.75^8
    assert first["optimizer"]["param_groups"][0]["lr"] == pytest.approx(5e-3 * 0.75**8)
    main(_args(small_image_folder, tmp_path / "b.safetensors", *common, "--schedule-steps", "5", "--resume"))
    second = torch.load(ckpt, weights_only=True)
    assert second["step"] == 5
    assert not torch.equal(second["model"]["conv.weights.0"], first["model"]["conv.weights.0"])


def test_reference_start_refuses_a_weights_file(small_image_folder, tmp_path):
    with pytest.raises(ValueError, match="reference-init"):
        main(_args(small_image_folder, tmp_path / "a.safetensors", "--reference-init", "--init", "x.safetensors"))
