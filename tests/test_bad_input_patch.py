"""Bad input to the patch priors, the WPP models and the Adam reconstructor: clear errors, never silent."""

import deepinv as dinv
import pytest
import torch

from deepinv_pnn.models import WPPFlow, WPPNet
from deepinv_pnn.optim import AdamPatchReconstructor, PatchNR, WassersteinPatchPrior
from deepinv_pnn.optim.wpp import gaussian_pyramid
from deepinv_pnn.optim.wpp_loss import WassersteinPatchLoss
from deepinv_pnn.sr_physics import WPPSuperResolution

NAN = float("nan")
SR4 = WPPSuperResolution(4)
WRONG_SIZE = dinv.physics.Downsampling(img_size=(1, 64, 64), factor=4, filter="bicubic")
FLOW = dict(features=8, blocks=1, n_blocks=2, hidden=8, cond_features=4, n_samples=2)


def y8(batch=1, dtype=torch.float32):
    return torch.rand(batch, 1, 8, 8, generator=torch.Generator().manual_seed(0)).to(dtype)


@pytest.fixture(scope="module")
def wpp():
    reference = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    return WassersteinPatchPrior(reference, patch_size=2, n_scales=3, n_reference_patches=100, psi_iters=2)


@pytest.fixture(scope="module")
def patchnr():
    torch.manual_seed(0)
    return PatchNR(patch_size=3, n_blocks=1, hidden=8, n_patches=50)


# --- WPPNet / WPPFlow -------------------------------------------------------------------------


@pytest.mark.parametrize("model", [WPPNet(features=8, blocks=1), WPPFlow(**FLOW)], ids=["WPPNet", "WPPFlow"])
def test_wpp_models_refuse_bad_observations_and_physics(model):
    with pytest.raises(TypeError, match="y has dtype torch.float64"):
        model(y8(dtype=torch.float64), SR4)
    with pytest.raises(ValueError, match="does not fit the observation of shape"):
        model(y8(), WRONG_SIZE)
    with pytest.raises(ValueError, match="B >= 1"):
        model(torch.rand(0, 1, 8, 8), SR4)


def test_wpp_models_in_float64_need_float64_observations():
    net = WPPNet(features=8, blocks=1).double()
    assert net(y8(dtype=torch.float64), SR4).shape == (1, 1, 32, 32)
    with pytest.raises(TypeError, match="torch.float32 but WPPNet's parameters are torch.float64"):
        net(y8(), SR4)
    flow = WPPFlow(**FLOW).double()
    assert flow(y8(dtype=torch.float64), SR4).shape == (1, 1, 32, 32)


def test_wppflow_refuses_bad_latents():
    flow = WPPFlow(**FLOW)
    z = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    with pytest.raises(TypeError, match="z has dtype torch.float64"):
        flow.generate(z.double(), y8(), SR4)
    with pytest.raises(ValueError, match="z contains NaN"):
        flow.generate(torch.full_like(z, NAN), y8(), SR4)
    with pytest.raises(TypeError, match="z must have a floating-point dtype"):
        flow.generate(z.long(), y8(), SR4)
    with pytest.raises(ValueError, match="z contains NaN"):
        flow.generate_antithetic(torch.full_like(z, NAN), y8(), SR4)
    with pytest.raises(ValueError, match="n must be an integer"):
        flow.sample(y8(), SR4, n=2.5)
    with pytest.raises(TypeError, match="wppnet must be a WPPNet, got Linear"):
        flow.load_backbone(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("kwargs, match", [
    (dict(features=0), "features must be an integer >= 1"),
    (dict(features=-2), "features must be an integer >= 1"),
    (dict(channels=-1), "channels must be an integer >= 1"),
    (dict(blocks=-1), "blocks must be an integer >= 0"),
    (dict(factor=2.5), "factor must be an integer, got 2.5"),
])
def test_wppnet_refuses_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WPPNet(**{**dict(features=8, blocks=1), **kwargs})


@pytest.mark.parametrize("kwargs, match", [
    (dict(features=0), "features must be an integer >= 1"),
    (dict(channels=-1), "channels must be an integer >= 1"),
    (dict(blocks=-1), "blocks must be an integer >= 0"),
    (dict(n_blocks=0), "n_blocks must be an integer >= 1"),
    (dict(n_blocks=-1), "n_blocks must be an integer >= 1"),
    (dict(hidden=0), "hidden must be an integer >= 1"),
    (dict(cond_features=0), "cond_features must be an integer >= 1"),
    (dict(temperature=float("inf")), "temperature must be finite"),
    (dict(factor=2.5), "factor must be an integer, got 2.5"),
])
def test_wppflow_refuses_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WPPFlow(**{**FLOW, **kwargs})


# --- AdamPatchReconstructor -------------------------------------------------------------------


def test_adam_reconstructor_refuses_bad_arguments(patchnr):
    with pytest.raises(TypeError, match="prior must be a deepinv.optim.Prior"):
        AdamPatchReconstructor(None, 0.1)
    with pytest.raises(TypeError, match="got Linear"):
        AdamPatchReconstructor(torch.nn.Linear(2, 2), 0.1)
    for steps in (-1, 0, 2.5):
        with pytest.raises(ValueError, match="steps must be an integer"):
            AdamPatchReconstructor(patchnr, 0.1, steps=steps)
    model = AdamPatchReconstructor(patchnr, 0.1, steps=2)
    with pytest.raises(TypeError, match="physics must be a deepinv.physics.LinearPhysics, got NoneType"):
        model(y8(), None)
    with pytest.raises(TypeError, match="physics must be a deepinv.physics.Physics, got NoneType"):
        model(y8(), None, init=torch.rand(1, 1, 32, 32))
    with pytest.raises(TypeError, match="init must have a floating-point dtype"):
        model(y8(), SR4, init=torch.ones(1, 1, 32, 32, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"init does not fit the observation of shape \(1, 1, 8, 8\): A maps the image of shape \(1, 1, 16, 16\)"):
        model(y8(), SR4, init=torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="B >= 1"):
        model(torch.rand(0, 1, 8, 8), SR4)
    with pytest.raises(ValueError, match="does not fit the observation"):
        model(y8(), WRONG_SIZE)
    assert model(y8(), SR4, init=torch.rand(1, 1, 32, 32)).shape == (1, 1, 32, 32)


# --- PatchNR ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    (dict(patch_size=0), "patch_size must be an integer >= 1"),
    (dict(patch_size=-2), "patch_size must be an integer >= 1"),
    (dict(patch_size=2.5), "patch_size must be an integer, got 2.5"),
    (dict(channels=0), "channels must be an integer >= 1"),
    (dict(hidden=0), "hidden must be an integer >= 1"),
    (dict(n_blocks=0), "n_blocks must be an integer >= 1"),
    (dict(n_blocks=-1), "n_blocks must be an integer >= 1"),
    (dict(n_patches=2.5), "n_patches must be an integer, got 2.5"),
    (dict(n_patches=0), "n_patches must be an integer >= 1"),
])
def test_patchnr_refuses_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PatchNR(**{**dict(patch_size=3, n_blocks=1, hidden=8), **kwargs})


def test_patchnr_refuses_bad_calls(patchnr):
    images = torch.rand(1, 1, 12, 12)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        patchnr.fit(images, steps=1, batch_size=0)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        patchnr.fit(images, steps=-1)
    with pytest.raises(ValueError, match="images must hold at least one image"):
        patchnr.fit([], steps=1)
    with pytest.raises(ValueError, match="last dimension C p\\^2 = 9"):
        patchnr.nll(torch.rand(10, 7))
    with pytest.raises(ValueError, match="patches contains NaN"):
        patchnr.nll(torch.full((10, 9), NAN))
    with pytest.raises(ValueError, match="B >= 1"):
        patchnr.fn(torch.rand(0, 1, 12, 12))
    with pytest.raises(ValueError, match="B >= 1"):
        patchnr.grad(torch.rand(0, 1, 12, 12))
    with pytest.raises(ValueError, match="max_iter must be an integer >= 1"):
        patchnr.prox(images, max_iter=-1)
    with pytest.raises(ValueError, match="tol must be finite"):
        patchnr.prox(images, tol=NAN)
    assert patchnr.nll(torch.rand(4, 9)).shape == (4,)


# --- WassersteinPatchPrior --------------------------------------------------------------------


def test_wpp_small_images_use_the_scales_they_can_blur(wpp):
    with pytest.raises(ValueError, match="x needs at least 2x2 pixels"):
        wpp.fn(torch.rand(1, 1, 1, 1))
    prior = WassersteinPatchPrior(torch.rand(1, 1, 32, 32), patch_size=4, n_reference_patches=100)
    with pytest.raises(ValueError, match=r"x of size \(3, 3\).*x needs at least 4x4 pixels"):
        prior.fn(torch.rand(1, 1, 3, 3))
    # 6 -> 2 pixels: the third scale cannot be blurred from a 2x2 level, so two scales are used
    value = wpp.fn(torch.rand(1, 1, 6, 6))
    assert value.shape == (1,) and torch.isfinite(value).all()
    reflect = WassersteinPatchPrior(torch.rand(1, 1, 32, 32), patch_size=3, n_scales=3, n_reference_patches=100,
                                    pad="reflect")
    assert torch.isfinite(reflect.fn(torch.rand(1, 1, 12, 12))).all()
    with pytest.raises(ValueError, match="too small for a pyramid of 3 scales"):
        gaussian_pyramid(torch.rand(1, 1, 3, 3), 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_scales=10), "n_scales=10 is too large for reference_images of size \\(32, 32\\)"),
    (dict(n_scales=1.5), "n_scales must be an integer, got 1.5"),
    (dict(patch_size=40), "reference_images of size \\(32, 32\\) are smaller than patch_size 40"),
    (dict(patch_size=2.5), "patch_size must be an integer, got 2.5"),
    (dict(n_reference_patches=0), "n_reference_patches must be an integer >= 1"),
    (dict(n_reference_patches=-5), "n_reference_patches must be an integer >= 1"),
    (dict(n_patches=0), "n_patches must be an integer >= 1"),
    (dict(psi_iters=-1), "psi_iters must be an integer >= 0"),
    (dict(scale_weights=[-1.0, 1.0]), "scale_weights\\[0\\] must be >= 0"),
    (dict(scale_weights=[1.0, NAN]), "scale_weights\\[1\\] must be finite"),
])
def test_wpp_refuses_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WassersteinPatchPrior(torch.rand(1, 1, 32, 32), **{**dict(n_scales=2, n_reference_patches=100), **kwargs})


def test_wpp_refuses_bad_references():
    with pytest.raises(ValueError, match="must share channels and size"):
        WassersteinPatchPrior([torch.rand(1, 1, 32, 32), torch.rand(1, 3, 32, 32)])
    with pytest.raises(ValueError, match="at least one image, got an empty list"):
        WassersteinPatchPrior([])
    with pytest.raises(ValueError, match="at least one image, got shape \\(0, 1, 32, 32\\)"):
        WassersteinPatchPrior(torch.rand(0, 1, 32, 32))
    with pytest.raises(TypeError, match="reference_images\\[0\\] must be"):
        WassersteinPatchPrior([None])


def test_wpp_refuses_bad_calls(wpp):
    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        wpp.update_dual(torch.rand(1, 16, 16))
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        wpp.lipschitz_bound(torch.rand(1, 16, 16))
    with pytest.raises(ValueError, match="iters must be an integer >= 0"):
        wpp.update_dual(x, iters=-1)
    with pytest.raises(ValueError, match="max_iter must be an integer >= 1"):
        wpp.prox(x, max_iter=-1)
    with pytest.raises(ValueError, match="B >= 1"):
        wpp.fn(torch.rand(0, 1, 16, 16))
    with pytest.raises(ValueError, match="B >= 1"):
        wpp.prox(torch.rand(0, 1, 16, 16))


def test_wpp_loss_refuses_bad_batches():
    loss = WassersteinPatchLoss(torch.rand(1, 1, 24, 24, generator=torch.Generator().manual_seed(2)),
                                patch_size=3, n_reference_patches=50, psi_iters=2)
    with pytest.raises(ValueError, match=r"B >= 1"):
        loss(torch.rand(0, 1, 16, 16))
    with pytest.raises(ValueError, match="NaN"):
        loss(torch.full((2, 1, 16, 16), NAN))
    with pytest.raises(ValueError, match="channel"):
        loss(torch.rand(2, 3, 16, 16))
    assert torch.isfinite(loss(torch.rand(2, 1, 16, 16)))


def test_wpp_loss_is_still_reachable_from_the_wpp_module():
    from deepinv_pnn.optim import wpp

    assert wpp.WassersteinPatchLoss is WassersteinPatchLoss
    with pytest.raises(AttributeError, match="no attribute 'WassersteinPatchLos'"):
        wpp.WassersteinPatchLos  # noqa: B018
