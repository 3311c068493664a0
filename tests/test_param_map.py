"""TVParameterMapNet: scale-invariant maps, any linear physics, trainable end to end."""

import itertools
import json

import deepinv as dinv
import pytest
import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.models.param_map import TVParameterMapNet
from deepinv_pnn.optim.weighted_tv import nabla
from deepinv_pnn.pretrained import save_weights
from deepinv_pnn.problems import make_physics
from deepinv_pnn.registry import build
from deepinv_pnn.training.scalar_tv_oracle import oracle_scalar_tv
from deepinv_pnn.training.train_param_map import (
    DEBLUR_NOISE,
    VAL_SIGMA,
    make_problem_physics,
    widen_input,
)


def small_model(**kwargs):
    torch.manual_seed(0)
    return TVParameterMapNet(n_iter=kwargs.pop("n_iter", 24), widths=(4, 8), **kwargs).eval()


@pytest.fixture
def noisy():
    x = load_image("camera", size=(32, 28))
    physics = make_physics("denoise", (1, 32, 28), noise_level=0.1)
    return x, physics, physics(x)


def test_input_scaled_by_10_scales_map_and_output_by_10(noisy):
    x, physics, y = noisy
    model = build("tv-param-map").eval()  # shipped weights when present
    psnr = dinv.metric.PSNR()
    with torch.no_grad():
        out, lam = model(y, physics, return_map=True)
        out10, lam10 = model(10 * y, physics, return_map=True)
    assert torch.allclose(lam10, 10 * lam, rtol=1e-4, atol=1e-7)
    assert torch.allclose(out10, 10 * out, rtol=1e-4, atol=1e-5)
    assert abs(float(psnr(out10 / 10, x) - psnr(out, x))) < 0.1
    assert abs(float(psnr(out10 / 10, x) - psnr(out, x))) < 1e-3  # in fact exact up to rounding


def test_map_follows_the_operator_scale(noisy):
    """Scaling A and y by a leaves the minimiser unchanged: the map scales by a^2."""
    x, _, _ = noisy
    blur = make_physics("deblur", (1, 32, 28), noise_level=0.01)
    y = blur(x)
    scaled = dinv.physics.LinearPhysics(A=lambda u: 2 * blur.A(u), A_adjoint=lambda v: 2 * blur.A_adjoint(v))
    model = small_model()
    with torch.no_grad():
        lam = model.lambda_map(y, blur)
        lam2 = model.lambda_map(2 * y, scaled)
    assert torch.allclose(lam2, 4 * lam, rtol=2e-2)


def test_gradients_reach_the_unet_and_the_steps(noisy):
    x, physics, y = noisy
    model = small_model().train()
    ((model(y, physics) - x) ** 2).mean().backward()
    named = dict(model.named_parameters())
    for name in ("unet.head.weight", "unet.down.0.0.weight", "pdhg.step_logit", "pdhg.log_ratio", "pdhg.relax_logit"):
        assert named[name].grad is not None and named[name].grad.abs().sum() > 0, name


def test_a_few_training_steps_improve_the_psnr(noisy):
    x, physics, y = noisy
    model = small_model(n_iter=16).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = ((model(y, physics) - x) ** 2).mean()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.95 * losses[0]


def test_more_iterations_at_test_time_than_in_training(noisy):
    _, physics, y = noisy
    model = small_model(n_iter=8)
    with torch.no_grad():
        outs = [model(y, physics, n_iter=n) for n in (8, 64, 256, 512)]
    changes = [float((b - a).norm()) for a, b in itertools.pairwise(outs[1:])]
    assert all(torch.isfinite(o).all() for o in outs)
    assert changes[1] < changes[0]  # the iterates settle


@pytest.mark.parametrize("problem", ["deblur", "sr", "inpaint"])
def test_any_linear_physics_and_colour(problem):
    x = load_image("astronaut", size=(24, 24), grayscale=False)
    physics = make_physics(problem, (3, 24, 24), noise_level=0.01)
    y = physics(x)
    with torch.no_grad():
        out, lam = small_model()(y, physics, return_map=True)
        assert out.shape == x.shape and lam.shape == x.shape
        assert (lam >= 0).all() and torch.isfinite(out).all()
        # the data-prox iteration solves the same problem with the same map (same objective
        # value: with inpainting the minimiser is not unique)
        def objective(v):
            return float(0.5 * (physics.A(v) - y).square().sum() + (lam * nabla(v).norm(dim=-1)).sum())

        dual = objective(small_model()(y, physics, n_iter=3000))
        prox = objective(small_model(data_term="prox")(y, physics, n_iter=1000))
    assert abs(prox - dual) < 2e-4 * dual


def test_tomography():
    x = load_image("shepp_logan_phantom", size=(24, 24))
    physics = dinv.physics.Tomography(angles=12, img_width=24, circle=False, normalize=True)
    with torch.no_grad():
        out = small_model()(physics(x), physics)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_anisotropic_per_direction_and_bounded_maps(noisy):
    _, physics, y = noisy
    model = small_model(isotropic=False, per_direction=True, output="sigmoid", lambda_max=0.5)
    with torch.no_grad():
        _, lam = model(y, physics, return_map=True)
    assert lam.shape == y.shape + (2,)
    scale = y.square().mean().sqrt()
    assert float(lam.max()) <= 0.5 * float(scale) + 1e-6
    with pytest.raises(ValueError, match="per_direction"):
        TVParameterMapNet(per_direction=True)


def test_weights_round_trip_with_config(tmp_path, noisy):
    _, physics, y = noisy
    model = small_model(n_iter=13)
    path = save_weights(model, tmp_path / "m.safetensors", metadata={"config": json.dumps({"n_iter": 13, "widths": [4, 8]})})
    loaded = TVParameterMapNet(pretrained=str(path)).eval()
    assert loaded.n_iter == 13 and loaded.pdhg.data_term == "dual"  # files without it: dual
    with torch.no_grad():
        assert torch.equal(loaded(y, physics), model(y, physics))
    prox = small_model(n_iter=13, data_term="prox")
    config = {"n_iter": 13, "widths": [4, 8], "data_term": "prox"}
    path = save_weights(prox, tmp_path / "p.safetensors", metadata={"config": json.dumps(config)})
    loaded = TVParameterMapNet(pretrained=str(path)).eval()
    assert loaded.pdhg.data_term == "prox"
    with torch.no_grad():
        assert torch.equal(loaded(y, physics), prox(y, physics))
    with pytest.raises(ValueError, match="data_term"):
        TVParameterMapNet(data_term="admm")


def test_bad_inputs_name_the_argument(noisy):
    _, physics, y = noisy
    model = small_model()
    with pytest.raises(TypeError, match="physics"):
        model(y, "denoise")
    bad = y.clone()
    bad[..., 0, 0] = float("nan")
    with pytest.raises(ValueError, match="y"):
        model(bad, physics)
    with pytest.raises(ValueError, match="output"):
        TVParameterMapNet(output="relu")


@pytest.mark.parametrize("problem", ["deblur", "inpaint"])
def test_tikhonov_estimate_solves_the_normal_equations(problem):
    """x_a = (A^T A + a ||A||^2 I)^{-1} A^T y: closed form for BlurFFT, conjugate gradient else."""
    x = load_image("camera", size=(32, 28))
    physics = make_physics(problem, (1, 32, 28), noise_level=0.01)
    y = physics(x)
    model = small_model(map_input="adjoint+tikhonov", tikhonov=0.05)
    sqnorm = float(physics.compute_sqnorm(torch.rand_like(x), verbose=False))
    x_tik = model.tikhonov_estimate(y, physics, sqnorm)
    residual = physics.A_adjoint(physics.A(x_tik)) + 0.05 * sqnorm * x_tik - physics.A_adjoint(y)
    assert float(residual.norm() / physics.A_adjoint(y).norm()) < 1e-3


def test_tikhonov_input_starts_from_the_adjoint_model_and_keeps_the_scale(noisy):
    """Widening trained "adjoint" weights gives the same map; the map stays scale-equivariant."""
    x, _, _ = noisy
    blur = make_problem_physics("deblur", (1, 32, 28), DEBLUR_NOISE, "cpu", 0)
    y = blur(x)
    plain = small_model()
    with torch.no_grad():  # a map that depends on the input, not the near-constant start
        plain.unet.head.weight.normal_(0, 0.5)
    widened = small_model(map_input="adjoint+tikhonov")
    widened.load_state_dict(widen_input(plain.state_dict(), widened))
    assert widened.unet.down[0][0].weight.shape[1] == 2
    with torch.no_grad():
        assert torch.allclose(widened.lambda_map(y, blur), plain.lambda_map(y, blur), rtol=1e-5, atol=1e-7)
        widened.unet.down[0][0].weight[:, 1].normal_(0, 0.3)  # now it uses the Tikhonov input
        lam, lam10 = widened.lambda_map(y, blur), widened.lambda_map(10 * y, blur)
        assert not torch.allclose(lam, plain.lambda_map(y, blur), rtol=1e-3)
    assert torch.allclose(lam10, 10 * lam, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="map_input"):
        TVParameterMapNet(map_input="wiener")
    with pytest.raises(ValueError, match="x_tik"):
        widened.map_from_initial(y, 1.0)


def _k_sqnorm(physics, x_like, n_iter=60):
    """||K||^2 for K = [A; nabla] by power iteration on A^T A + nabla^T nabla."""
    from deepinv_pnn.optim.weighted_tv import nabla, nabla_adjoint

    u = torch.randn(x_like.shape, generator=torch.Generator().manual_seed(0))
    for _ in range(n_iter):
        v = physics.A_adjoint(physics.A(u)) + nabla_adjoint(nabla(u))
        value = float((u * v).sum() / (u * u).sum())
        u = v / v.norm()
    return value


def test_mri_complex_data_runs_with_the_step_condition():
    """deepinv's MRI (complex data as 2 real channels, undersampling mask): shapes, dtype,
    one map per real/imaginary channel, and sigma*tau*||K||^2 < 1 before and after training steps
    with a huge learning rate."""
    x = load_image("shepp_logan_phantom", size=(24, 24))
    x = torch.cat([x, 0.5 * x.flip(-1)], dim=1)  # real and imaginary parts
    mask = torch.zeros(24, 24)
    mask[:, ::3] = 1
    mask[:, 9:15] = 1
    physics = dinv.physics.MRI(mask=mask, img_size=(1, 2, 24, 24))
    physics.noise_model = dinv.physics.GaussianNoise(0.01, rng=torch.Generator().manual_seed(0))
    y = physics(x)
    model = small_model(n_iter=10).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.5)
    k_sqnorm = _k_sqnorm(physics, x)
    assert 8.5 < k_sqnorm < 9.02  # ||A||^2 = 1, ||nabla||^2 close to 8
    for _ in range(3):
        with torch.no_grad():
            tau, sigma, rho = model.pdhg.parameters_pdhg(model.pdhg.operator_sqnorm(physics, x))
        assert float(tau * sigma) * k_sqnorm < 1 and 0 < float(rho) < 2
        optimizer.zero_grad()
        ((model(y, physics) - x) ** 2).mean().backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        out, lam = model(y, physics, return_map=True)
    assert out.shape == x.shape == lam.shape and out.dtype == x.dtype == lam.dtype == torch.float32
    assert torch.isfinite(out).all() and (lam >= 0).all()
    assert not torch.equal(lam[:, 0], lam[:, 1])  # one map per channel


@pytest.mark.parametrize(
    "problem, images, min_gain",
    # measured with the shipped weights: gains +0.97, +1.11, +1.22 dB (denoising), +1.17, +1.47, +2.04 dB (deblurring)
    [("denoise", ("camera", "coins", "text"), 0.8), ("deblur", ("camera", "moon", "brick"), 0.8)],
)
def test_shipped_maps_beat_the_oracle_scalar_tv_on_embedded_images(problem, images, min_gain):
    model = TVParameterMapNet(pretrained=True, problem=problem).eval()
    psnr = dinv.metric.PSNR()
    gains = []
    for seed, name in enumerate(images):
        x = load_image(name, size=96)
        noise = VAL_SIGMA if problem == "denoise" else DEBLUR_NOISE
        physics = make_problem_physics(problem, tuple(x.shape[1:]), noise, "cpu", seed=seed)
        y = physics(x)
        with torch.no_grad():
            map_tv = float(psnr(model(y, physics), x))
        oracle, _ = oracle_scalar_tv(y, physics, x, n_iter=600 if problem == "denoise" else 300)
        gains.append(map_tv - oracle)
    print(problem, [round(g, 3) for g in gains])
    assert sum(gains) / len(gains) >= min_gain
    assert min(gains) > 0
