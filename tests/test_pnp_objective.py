"""Problem-aware training of the ConvPNN through the PnP-FBS fixed point."""

import pytest
import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.models.pnn import ConvPNN
from deepinv_pnn.problems import make_physics
from deepinv_pnn.training.pnn_optimizers import make_optimizer
from deepinv_pnn.training.pnp_objective import fixed_point_loss, pnp_deblur_psnr, pnp_fbs
from deepinv_pnn.training.train_convpnn import train_convpnn

SMALL = {"width": 8, "state_channels": 2, "n_layers": 2, "n_stages": 1}


def _problem(seed=0, size=24, batch=2):
    g = torch.Generator().manual_seed(seed)
    camera = load_image("camera", size=96)[0]
    x = torch.stack([camera[:, 24 * i : 24 * i + size, 30 : 30 + size] for i in range(batch)])
    physics = make_physics("deblur", (1, size, size), noise_level=0.0)
    return x, physics.A(x) + 0.01 * torch.randn(x.shape, generator=g), physics


def test_pnp_fbs_iterates_the_forward_backward_map():
    model = ConvPNN(sigma0=0.01, seed=1, **SMALL)
    x, y, physics = _problem()
    z = y.clone()
    for _ in range(3):
        z = model(z - 1.5 * physics.A_adjoint(physics.A(z) - y), 0.008)
    torch.testing.assert_close(pnp_fbs(model, y, physics, 0.008, 1.5, 3), z)
    assert torch.equal(pnp_fbs(model, y, physics, 0.008, 1.5, 0), y)
    with pytest.raises(ValueError, match="n_iter"):
        pnp_fbs(model, y, physics, 0.008, 1.5, -1)


def test_fixed_point_loss_differentiates_only_the_last_step():
    torch.manual_seed(0)
    model = ConvPNN(sigma0=0.01, seed=1, **SMALL)
    x, y, physics = _problem()
    loss = fixed_point_loss(model, x, y, physics, sigma=0.008, stepsize=1.98, n_iter=4)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # the value is the error of the fifth iterate
    z5 = pnp_fbs(model, y, physics, 0.008, 1.98, 5)
    assert float(loss.detach()) == pytest.approx(float(((z5 - x) ** 2).mean()), rel=1e-5)
    with pytest.raises(ValueError, match="sigma"):
        fixed_point_loss(model, x, y, physics, sigma=-0.1, stepsize=1.98, n_iter=1)


def test_fixed_point_training_lowers_the_pnp_error_and_keeps_the_certificate():
    torch.manual_seed(0)
    model = ConvPNN(sigma0=0.01, seed=1, **SMALL)
    x, y, physics = _problem(size=24, batch=4)

    def error():
        return float(((pnp_fbs(model, y, physics, 0.008, 1.98, 10) - x) ** 2).mean())

    before = error()
    opt = make_optimizer(model, "cayley-adam", 1e-2, 5e-2)
    for _ in range(15):
        opt.zero_grad()
        fixed_point_loss(model, x, y, physics, 0.008, 1.98, 9).backward()
        opt.step()
    assert error() < 0.97 * before  # about 0.94 after these 15 steps
    assert model.orthogonality_error() < 1e-5
    assert model.lipschitz_bound() < 1 + 1e-4 and model.averaged_constant() < 1


def test_recipe_pnp_objective_writes_pnp_validation(small_image_folder, tmp_path):
    out = tmp_path / "pnp.safetensors"
    kw = {"batch_size": 2, "patch_size": 16, "val_count": 1, "model_kwargs": SMALL, "progress": False}
    metrics = train_convpnn(
        small_image_folder, out, sigma=0.01, max_steps=2, objective="pnp-deblur", pnp_iter=2, pnp_val_iter=3, **kw
    )
    assert metrics["objective"] == "pnp-deblur" and len(metrics["losses"]) == 2
    model = ConvPNN(sigma0=0.01, pretrained=out, **SMALL)
    from deepinv_pnn.data import split_files

    held_out = [load_image(f)[0] for f in split_files(small_image_folder, 1)[1]]
    assert metrics["val_psnr"] == pytest.approx(pnp_deblur_psnr(model, held_out, 0.008, 1.98, 3), abs=1e-4)
    with pytest.raises(ValueError, match="objective"):
        train_convpnn(small_image_folder, None, max_steps=1, objective="deblur", **kw)
    with pytest.raises(ValueError, match="stepsize"):
        train_convpnn(small_image_folder, None, max_steps=1, objective="pnp-deblur", pnp_stepsize=2.5, **kw)


def test_shipped_deblur_weights_are_averaged_and_tied_to_their_configuration():
    tuned = ConvPNN(sigma0=0.01, pretrained="deblur").eval()
    plain = ConvPNN(sigma0=0.01, pretrained=True).eval()
    assert any(not torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), plain.state_dict().values()))
    assert tuned.orthogonality_error() < 1e-5
    assert tuned.lipschitz_bound() < 1 + 1e-5 and tuned.averaged_constant() < 1
    with pytest.raises(ValueError, match="sigma0"):
        ConvPNN(sigma0=25 / 255, pretrained="deblur")
    with pytest.raises(ValueError, match="channels"):
        ConvPNN(sigma0=0.01, channels=3, pretrained="deblur")


@pytest.mark.slow
def test_shipped_deblur_weights_beat_the_denoising_weights_inside_pnp():
    # camera at 64x64, the package's deblur problem, 60 PnP-FBS iterations from y
    x = load_image("camera", size=64)
    physics = make_physics("deblur", (1, 64, 64), noise_level=0.0)
    g = torch.Generator().manual_seed(0)
    y = physics.A(x) + 0.01 * torch.randn(x.shape, generator=g)

    def psnr(model):
        z = pnp_fbs(model.eval(), y, physics, 0.008, 1.98, 60)
        return float(-10 * torch.log10(((z - x) ** 2).mean()))

    gain = psnr(ConvPNN(sigma0=0.01, pretrained="deblur")) - psnr(ConvPNN(sigma0=0.01, pretrained=True))
    assert gain > 0.5  # measured +0.82 dB (30.37 vs 29.55)
