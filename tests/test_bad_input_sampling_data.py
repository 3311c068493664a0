"""Bad input to the MMD samplers, the datasets and the weights loader raises a clear error."""

import pytest
import torch

from deepinv_pnn.data import ImageFolderDataset, PatchDataset, load_image
from deepinv_pnn.pretrained import load_pretrained, save_weights
from deepinv_pnn.problems import make_physics
from deepinv_pnn.sampling import (
    ConditionalMMDFlow,
    DisplacementMLP,
    GenerativeMMDFlow,
    MMDParticleFlow,
    MMDPosteriorMean,
    condition_features,
    local_projections,
    random_directions,
    sliced_mmd_riesz,
    sliced_mmd_riesz_1d,
    train_flow_chain,
)

NAN = float("nan")
FIT = {"flow_steps": 1, "train_iters": 1, "n_projections": 4}


@pytest.fixture
def clouds():
    g = torch.Generator().manual_seed(0)
    return torch.randn(50, 3, generator=g), torch.randn(40, 3, generator=g)


@pytest.fixture
def inpainting():
    torch.manual_seed(0)
    physics = make_physics("inpaint", (1, 4, 4))
    x = torch.rand(10, 1, 4, 4)
    return physics, x, physics(x)


# sliced MMD


def test_sliced_mmd_computes_half_precision_in_float32(clouds):
    x, y = clouds
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    value = sliced_mmd_riesz(x.half(), y.half(), n_projections=8, generator=gen())
    ref = sliced_mmd_riesz(x.half().float(), y.half().float(), n_projections=8, generator=gen())
    assert value.dtype == torch.float16 and torch.isfinite(value)
    assert torch.equal(value, ref.half())
    value, grad = sliced_mmd_riesz(x.half(), y.half(), n_projections=8, return_grad=True)
    assert grad.dtype == torch.float16 and grad.shape == x.shape


@pytest.mark.parametrize("kwargs, match", [({"scale": NAN}, "scale must be finite"),
                                           ({"scale": -1.0}, "scale must be >= 0"),
                                           ({"memory_budget": NAN}, "memory_budget")])
def test_sliced_mmd_rejects_bad_scale(clouds, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sliced_mmd_riesz(*clouds, n_projections=4, **kwargs)


@pytest.mark.parametrize(
    "zx, zy, error, match",
    [
        (torch.randn(5), torch.randn(4), ValueError, "zx must have shape"),
        (torch.randn(2, 0), torch.randn(2, 4), ValueError, "N >= 1"),
        (torch.randn(2, 5), torch.randn(3, 4), ValueError, "same number P"),
        (torch.full((2, 5), NAN), torch.randn(2, 4), ValueError, "finite"),
        (torch.ones(2, 5, dtype=torch.int64), torch.ones(2, 4), TypeError, "zx must be a floating-point"),
        (torch.randn(2, 5), torch.randn(2, 4, dtype=torch.float64), ValueError, "dtype"),
    ],
)
def test_sliced_1d_validates_its_inputs(zx, zy, error, match):
    with pytest.raises(error, match=match):
        sliced_mmd_riesz_1d(zx, zy)


def test_random_directions_and_local_projections_reject_bad_sizes():
    with pytest.raises(ValueError, match="d must be an integer >= 1"):
        random_directions(-1, 5)
    with pytest.raises(ValueError, match="d must be an integer >= 1"):
        random_directions(0, 5)
    with pytest.raises(TypeError, match="dtype must be a floating-point"):
        random_directions(3, 5, dtype=torch.int64)
    with pytest.raises(ValueError, match="img_shape entries"):
        local_projections((-1, 8, 8), 3, 5)
    with pytest.raises(ValueError, match="img_shape must be"):
        local_projections((8, 8), 3, 5)


def test_particle_flow_rejects_negative_steps_and_vectors(clouds):
    x, y = clouds
    flow = MMDParticleFlow(y, n_projections=4)
    with pytest.raises(ValueError, match="n_steps must be an integer >= 0"):
        flow.run(x, -1)
    assert torch.equal(flow.run(x, 0), x)
    with pytest.raises(ValueError, match=r"x must be a tensor of shape \[N, d\]"):
        flow.step(torch.randn(10))


# generative flow


@pytest.mark.parametrize("kwargs, match", [({"n_stages": 0}, "n_stages"), ({"n_stages": -1}, "n_stages"),
                                           ({"latent_std": 0.0}, "latent_std"), ({"latent_std": -1.0}, "latent_std"),
                                           ({"latent_std": NAN}, "latent_std"), ({"img_shape": (-1, 4, 4)}, "img_shape"),
                                           ({"img_shape": (4, 4)}, "img_shape"), ({"hidden": 0}, "hidden")])
def test_generative_flow_rejects_bad_constructor_arguments(kwargs, match):
    args = {"img_shape": (1, 4, 4), "n_stages": 1, "hidden": 8} | kwargs
    with pytest.raises(ValueError, match=match):
        GenerativeMMDFlow(**args)


@pytest.mark.parametrize(
    "data, match",
    [
        (torch.rand(1, 1, 4, 4), "at least 2 images"),
        (torch.rand(0, 1, 4, 4), "at least 2 images"),
        (torch.full((20, 1, 4, 4), NAN), "data contains NaN"),
    ],
)
def test_generative_flow_fit_rejects_bad_data_before_the_cholesky(data, match):
    model = GenerativeMMDFlow(img_shape=(1, 4, 4), n_stages=1, hidden=8)
    with pytest.raises(ValueError, match=match):
        model.fit(data, n_particles=10, **FIT)
    assert torch.equal(model.latent_factor, torch.eye(16))


def test_generative_flow_and_mlp_check_dimension_and_dtype():
    model = GenerativeMMDFlow(img_shape=(1, 4, 4), n_stages=1, hidden=8)
    with pytest.raises(ValueError, match=r"z must be a tensor of shape \[n, 16\]"):
        model(torch.randn(2, 5))
    with pytest.raises(TypeError, match="float64 but GenerativeMMDFlow's parameters are torch.float32"):
        model(torch.randn(2, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="z contains NaN"):
        model(torch.full((2, 16), NAN))
    assert model.double()(torch.randn(2, 16, dtype=torch.float64)).dtype == torch.float64
    mlp = DisplacementMLP(3, hidden=4)
    with pytest.raises(ValueError, match=r"x must be a tensor of shape \[n, 3\]"):
        mlp(torch.randn(2, 4))
    with pytest.raises(TypeError, match="DisplacementMLP's parameters"):
        mlp(torch.randn(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"cond must be a tensor of shape \[2, 2\]"):
        DisplacementMLP(3, hidden=4, cond_dim=2)(torch.randn(2, 3), torch.randn(2, 5))
    with pytest.raises(ValueError, match="dim must be an integer >= 1"):
        DisplacementMLP(-1)


def test_train_flow_chain_needs_both_conditions(clouds):
    x, y = clouds
    nets = torch.nn.ModuleList([DisplacementMLP(3, 4, 2)])
    with pytest.raises(ValueError, match="both particle_cond and target_cond"):
        train_flow_chain(nets, x, y, particle_cond=torch.randn(50, 2), **FIT)
    with pytest.raises(ValueError, match=r"target_cond must be a tensor of shape \[40, 2\]"):
        train_flow_chain(nets, x, y, particle_cond=torch.randn(50, 2), target_cond=torch.randn(40, 3), **FIT)
    with pytest.raises(ValueError, match="cond_weight must be finite"):
        train_flow_chain(nets, x, y, torch.randn(50, 2), torch.randn(40, 2), cond_weight=NAN, **FIT)


def test_sliced_mmd_rejects_a_zero_direction(clouds):
    xi = random_directions(3, 4, torch.Generator().manual_seed(0))
    xi[:, 2] = 0.0
    with pytest.raises(ValueError, match="all-zero column"):
        sliced_mmd_riesz(*clouds, projections=xi)
    xi[0, 2] = 1.0  # any non-zero direction is accepted (the slice is 1-homogeneous in it)
    assert torch.isfinite(sliced_mmd_riesz(*clouds, projections=xi))


# conditional flow


@pytest.mark.parametrize("kwargs, match", [({"cond_weight": -1.0}, "cond_weight"), ({"cond_weight": NAN}, "cond_weight"),
                                           ({"latent_std": NAN}, "latent_std"), ({"n_stages": -1}, "n_stages"),
                                           ({"n_stages": 0}, "n_stages")])
def test_conditional_flow_rejects_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConditionalMMDFlow(**({"img_shape": (1, 4, 4), "n_stages": 1, "hidden": 8} | kwargs))


def test_conditional_flow_sample_with_physics_of_another_size(inpainting):
    physics, _, y = inpainting
    flow = ConditionalMMDFlow((1, 4, 4), n_stages=1, hidden=8)
    with pytest.raises(ValueError, match="physics does not fit the observation of shape"):
        flow.sample(y[:2], make_physics("inpaint", (1, 8, 8)))
    with pytest.raises(ValueError, match=r"B >= 1"):
        flow.sample(y[:0], physics)
    with pytest.raises(TypeError, match="physics must be a deepinv.physics.LinearPhysics"):
        condition_features(y, None)
    with pytest.raises(ValueError, match="y contains NaN"):
        condition_features(torch.full_like(y, NAN), physics)
    assert flow.sample(y[:2], physics, n_samples=3).shape == (3, 2, 1, 4, 4)


@pytest.mark.parametrize(
    "x, cond, match",
    [
        (None, torch.randn(7, 16), r"cond must have shape \[N, C H W\] = \[10, 16\]"),
        (None, torch.randn(10, 9), r"cond must have shape"),
        (torch.rand(10, 1, 5, 5), torch.randn(10, 16), r"x must have shape \[N, \(1, 4, 4\)\]"),
        (torch.full((10, 1, 4, 4), NAN), None, "x contains NaN"),
    ],
)
def test_conditional_flow_fit_checks_shapes(inpainting, x, cond, match):
    physics, x0, y = inpainting
    flow = ConditionalMMDFlow((1, 4, 4), n_stages=1, hidden=8)
    x = x0 if x is None else x
    cond = condition_features(y, physics) if cond is None else cond
    with pytest.raises(ValueError, match=match):
        flow.fit(x, cond, **FIT)


def test_posterior_mean_rejects_zero_samples(inpainting):
    physics, _, y = inpainting
    model = MMDPosteriorMean(ConditionalMMDFlow((1, 4, 4), n_stages=1, hidden=8), n_samples=3)
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1, got 0"):
        model.posterior(y[:2], physics, n_samples=0)
    assert model.posterior(y[:2], physics)["samples"].shape == (3, 2, 1, 4, 4)
    with pytest.raises(TypeError, match="flow must be a ConditionalMMDFlow"):
        MMDPosteriorMean(None)


# data and weights


@pytest.fixture
def folder(tmp_path):
    import skimage.data
    import skimage.io

    skimage.io.imsave(tmp_path / "a.png", skimage.data.camera()[:32, :32], check_contrast=False)
    return tmp_path


@pytest.mark.parametrize("crop_size, error, match", [(0, ValueError, ">= 1, got 0"), (-4, ValueError, ">= 1"),
                                                     (2.5, ValueError, "crop_size must be an integer")])
def test_image_folder_rejects_bad_crop_size(folder, crop_size, error, match):
    with pytest.raises(error, match=match):
        ImageFolderDataset(folder, crop_size=crop_size)


@pytest.mark.parametrize(
    "images, kwargs, error, match",
    [
        (torch.rand(1, 1, 8, 8), {"n_patches": 0}, ValueError, "n_patches must be an integer >= 1"),
        (torch.rand(1, 1, 8, 8), {"n_patches": -1}, ValueError, "n_patches"),
        ([torch.rand(1, 1, 8, 8), torch.rand(1, 3, 8, 8)], {}, ValueError, "one channel count"),
        ([], {}, ValueError, "images is empty"),
        (torch.rand(1, 1, 8, 8).numpy(), {}, TypeError, "images must be a torch.Tensor"),
        (torch.full((1, 1, 8, 8), NAN), {}, ValueError, "NaN"),
    ],
)
def test_patch_dataset_rejects_bad_images(images, kwargs, error, match):
    with pytest.raises(error, match=match):
        PatchDataset(images, 2, **kwargs)


def test_load_image_rejects_bad_size_and_dtype():
    with pytest.raises(ValueError, match="size must be an integer, got 2.5"):
        load_image("camera", size=2.5)
    with pytest.raises(TypeError, match="dtype must be a floating-point"):
        load_image("camera", size=8, dtype=torch.int64)


def test_load_image_rejects_a_file_that_is_not_an_image(tmp_path):
    bad = tmp_path / "scan.png"
    bad.write_bytes(b"this is text, not a PNG")
    with pytest.raises(ValueError, match="could not read image file .*scan.png"):
        load_image(bad)


def test_load_pretrained_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        load_pretrained(torch.nn.Linear(2, 2), tmp_path)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a weights file")
    with pytest.raises(ValueError, match="bad.pt' is not a readable weights file"):
        load_pretrained(torch.nn.Linear(2, 2), bad)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="broken.safetensors' is not a readable weights file"):
        load_pretrained(torch.nn.Linear(2, 2), broken)
    save_weights(torch.nn.Linear(2, 2), tmp_path / "lin.safetensors")
    with pytest.raises(TypeError, match="module must be a torch.nn.Module, got NoneType"):
        load_pretrained(None, tmp_path / "lin.safetensors")


def test_digits_helpers_reject_bad_sizes():
    from deepinv_pnn.sampling.digits import gaussian_fit_sample, load_digits

    with pytest.raises(ValueError, match="held_out must be an integer >= 0"):
        load_digits(held_out=-1)
    with pytest.raises(ValueError, match="at least 2 images"):
        gaussian_fit_sample(torch.rand(1, 1, 8, 8), 3)
