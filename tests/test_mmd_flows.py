"""MMD particle flow, generative and conditional MMD flows, registration and recipe."""

import json

import pytest
import torch

from deepinv_pnn.pretrained import read_metadata
from deepinv_pnn.problems import make_physics
from deepinv_pnn.registry import build, get
from deepinv_pnn.sampling import (
    ConditionalMMDFlow,
    GenerativeMMDFlow,
    MMDParticleFlow,
    condition_features,
    mmd_riesz,
)
from deepinv_pnn.sampling.digits import evaluate_samples, gaussian_fit_sample, load_digits


def test_particle_flow_converges_to_target_in_2d():
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(300, 2, generator=gen) * 0.5 + torch.tensor([3.0, -1.0])
    x0 = torch.randn(300, 2, generator=gen)
    start = float(mmd_riesz(x0, y))
    flow = MMDParticleFlow(y, n_projections=64, step_size=1.0, momentum=0.5, seed=1)
    x = flow.run(x0, n_steps=100)
    assert float(mmd_riesz(x, y)) < 1e-3 * start
    assert torch.equal(x0, x0.clone())  # run does not modify its input


def test_momentum_speeds_up_the_flow():
    gen = torch.Generator().manual_seed(1)
    y = torch.randn(200, 3, generator=gen) + 2
    x0 = torch.randn(200, 3, generator=gen)
    plain = MMDParticleFlow(y, 64, step_size=0.5, momentum=0.0).run(x0, 30)
    heavy = MMDParticleFlow(y, 64, step_size=0.5, momentum=0.5).run(x0, 30)
    assert float(mmd_riesz(heavy, y)) < float(mmd_riesz(plain, y))


def test_flow_frames_callback_and_fixed_coordinates():
    gen = torch.Generator().manual_seed(2)
    y = torch.randn(100, 3, generator=gen)
    x0 = torch.randn(100, 3, generator=gen) + 1
    frames = []
    x = MMDParticleFlow(y, 16, movable_dims=2).run(x0, 5, callback=lambda k, xk: frames.append(xk))
    assert len(frames) == 5 and torch.equal(frames[-1], x)
    assert torch.equal(x[:, 2], x0[:, 2]) and not torch.equal(x[:, :2], x0[:, :2])


@pytest.mark.parametrize(
    "kwargs, match",
    [({"momentum": 1.0}, "momentum"), ({"step_size": -1.0}, "step_size"),
     ({"n_projections": 0}, "n_projections"), ({"movable_dims": 5}, "movable_dims")],
)
def test_particle_flow_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MMDParticleFlow(torch.zeros(10, 3), **kwargs)


def test_generative_flow_fits_a_toy_mixture():
    gen = torch.Generator().manual_seed(3)
    centres = torch.tensor([[2.0, 2, 0, 0], [-2.0, -2, 0, 0]])
    data = centres[torch.randint(0, 2, (600,), generator=gen)] + 0.3 * torch.randn(600, 4, generator=gen)
    model = GenerativeMMDFlow((1, 2, 2), n_stages=2, hidden=64)
    history = model.fit(data.reshape(-1, 1, 2, 2), n_particles=600, flow_steps=20, train_iters=150,
                        n_projections=64, seed=0)
    assert len(history) == 2 and history[-1]["mmd_after"] < history[0]["mmd_before"]
    samples = model.sample(600, seed=5).reshape(600, 4)
    gauss = gaussian_fit_sample(data, 600, seed=5)
    fresh = centres[torch.randint(0, 2, (600,), generator=gen)] + 0.3 * torch.randn(600, 4, generator=gen)
    assert float(mmd_riesz(samples, fresh, unbiased=True)) < 0.5 * float(mmd_riesz(gauss, fresh, unbiased=True))
    assert torch.equal(model.sample(3, seed=1), model.sample(3, seed=1))
    with pytest.raises(ValueError, match="data must have shape"):
        model.fit(torch.rand(10, 1, 3, 3))


def test_shipped_digits_sampler_beats_gaussian_fit_without_memorising():
    model = build("mmd-digits")
    train, held_out = load_digits("train"), load_digits("test")
    samples = model.sample(1500, seed=1)
    assert samples.shape == (1500, 1, 8, 8) and torch.isfinite(samples).all()
    metrics = evaluate_samples(samples, train, held_out, seed=0)
    assert metrics["energy_generated"] < 0.8 * metrics["energy_gaussian_fit"]
    # memorisation: generated digits are not closer to the training set than held-out digits
    assert metrics["nn_ratio"] > 0.9
    assert metrics["frac_closer_than_q05_held_out"] < 0.05


def test_conditional_flow_shapes_and_condition_features():
    physics = make_physics("inpaint", (1, 8, 8), noise_level=0.0)
    x = torch.rand(3, 1, 8, 8)
    cond = condition_features(physics(x), physics)
    mask = physics.mask.reshape(1, -1)
    assert torch.allclose(cond, mask * x.reshape(3, -1) - 0.5 * (1 - mask))
    model = ConditionalMMDFlow((1, 8, 8), n_stages=2, hidden=16)
    out = model.posterior(physics(x), physics, n_samples=4)
    assert out["samples"].shape == (4, 3, 1, 8, 8) and out["std"].shape == (3, 1, 8, 8)
    with pytest.raises(ValueError, match="y"):
        model.sample(torch.full((1, 1, 8, 8), float("nan")), physics)
    with pytest.raises(ValueError, match="y must have 1 channel"):
        model.sample(torch.rand(1, 3, 8, 8), physics)


def test_conditional_flow_learns_a_gaussian_posterior():
    """x ~ N(0, [[1, r], [r, 1]]) on two pixels, pixel 0 observed: the posterior of pixel 1 is
    N(r y, 1 - r^2); pixel 0 is copied."""
    gen = torch.Generator().manual_seed(4)
    r, n = 0.8, 1500
    a, b = torch.randn(n, generator=gen), torch.randn(n, generator=gen)
    x = torch.stack([a, r * a + (1 - r**2) ** 0.5 * b], 1).reshape(n, 1, 1, 2)
    mask = torch.tensor([1.0, 0.0]).expand(n, 2)
    cond = mask * x.reshape(n, 2) - 0.5 * (1 - mask)
    model = ConditionalMMDFlow((1, 1, 2), n_stages=2, hidden=64, latent_std=1.0)
    model.fit(x, cond, flow_steps=40, train_iters=200, n_projections=32, seed=0)
    import deepinv as dinv

    physics = dinv.physics.Inpainting(img_size=(1, 1, 2), mask=torch.tensor([[[[1.0, 0.0]]]]))
    y = torch.tensor([[[[1.0, 0.0]]], [[[-0.5, 0.0]]]])
    out = model.posterior(y, physics, n_samples=500)
    mean, std = out["mean"][:, 0, 0], out["std"][:, 0, 0]
    assert torch.allclose(mean[:, 0], torch.tensor([1.0, -0.5]), atol=0.15)
    assert torch.allclose(mean[:, 1], r * torch.tensor([1.0, -0.5]), atol=0.2)
    assert float(std[:, 0].max()) < 0.25
    assert 0.35 < float(std[:, 1].min()) and float(std[:, 1].max()) < 0.85  # true std 0.6


def test_consistent_latent_copies_the_observed_pixels():
    physics = make_physics("inpaint", (1, 8, 8), noise_level=0.01)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    y = physics(x)
    model = ConditionalMMDFlow((1, 8, 8), n_stages=1, hidden=8, consistent_latent=True)
    samples = model.sample(y, physics, n_samples=4)  # untrained: zero displacement
    mask = physics.mask.bool().expand(4, 3, 1, 8, 8)
    assert torch.allclose(samples[mask], y.expand(4, 3, 1, 8, 8)[mask], atol=1e-6)
    assert float(samples[~mask].std()) == pytest.approx(model.latent_std, rel=0.2)
    with pytest.raises(ValueError, match="observations y"):
        model.fit(x, condition_features(y, physics), flow_steps=1, train_iters=1)


def test_shipped_digits_posterior_uses_the_observation():
    """Held-out digits, the seed-0 inpainting mask (half of the pixels), noise 0.01."""
    model = build("mmd-digits-posterior")
    x = load_digits("test")[:300]
    physics = make_physics("inpaint", (1, 8, 8), noise_level=0.01)
    y = physics(x)
    with torch.no_grad():
        out = model.posterior(y, physics, n_samples=32, seed=0)
    assert out["samples"].shape == (32, 300, 1, 8, 8)
    psnr = lambda a: float(-10 * torch.log10((a - x).square().mean()))
    train_mean = load_digits("train").mean(0, keepdim=True).expand_as(x)
    completion = train_mean + physics.A_dagger(y - physics.A(train_mean))
    assert psnr(out["mean"]) > psnr(train_mean) + 7  # ignores the observation
    assert psnr(out["mean"]) > psnr(physics.A_dagger(y)) + 7
    assert psnr(out["mean"]) > psnr(completion) + 3.5  # the observed pixels and the mean
    # where the pixels are missing, the posterior std predicts the error of the mean
    missing = (physics.mask == 0).expand_as(x)
    err = (out["mean"] - x).abs()[missing]
    assert float(torch.corrcoef(torch.stack([out["std"][missing], err]))[0, 1]) > 0.35
    assert torch.allclose(model(y, physics), out["mean"])


def test_registered_components():
    assert get("mmd-digits").kind == "sampler"
    sampler = build("mmd-digits", pretrained=False, n_stages=1, hidden=8)
    assert torch.isfinite(sampler.sample(5)).all()
    assert get("mmd-digits-posterior").kind == "reconstructor"
    posterior = build("mmd-digits-posterior", pretrained=False, n_stages=1, hidden=8, n_samples=3)
    physics = make_physics("inpaint", (1, 8, 8))
    assert posterior(physics(torch.rand(2, 1, 8, 8)), physics).shape == (2, 1, 8, 8)


def test_training_recipe_writes_weights_and_metrics(tmp_path):
    from deepinv_pnn.training.train_mmd_flow import main

    out = tmp_path / "flow.safetensors"
    metrics = main(["--out", str(out), "--minutes", "0.2", "--stages", "1", "--hidden", "16",
                    "--particles", "300", "--train-iters", "5", "--flow-steps", "2", "--projections", "16"])
    assert out.is_file() and "energy_generated" in metrics
    assert json.loads(out.with_suffix(".json").read_text())["metrics"]["stages_trained"] == 1
    model = GenerativeMMDFlow((1, 8, 8), n_stages=1, hidden=16, pretrained=str(out))
    assert "--train-iters 5 " in read_metadata(out)["command"]
    assert model.sample(2).shape == (2, 1, 8, 8)
