"""Bad input to the ridge regularisers, their solvers, splines and multi-convolutions is refused
with a ValueError/TypeError that names the argument (session 22 audit, items 5, 6, 8, 11, 12, 13,
16, 19)."""

import deepinv as dinv
import pytest
import torch

from deepinv_pnn.models import RidgeDenoiser
from deepinv_pnn.nn.multiconv import MultiConv2d
from deepinv_pnn.nn.splines import LinearSpline
from deepinv_pnn.optim import ConvexRidgeRegularizer, WeaklyConvexRidgeRegularizer
from deepinv_pnn.optim.accelerated_gradient import accelerated_gradient
from deepinv_pnn.optim.ridge_solver import RidgeSolver

NAN = float("nan")


@pytest.fixture(params=["crr", "wcrr"])
def prior(request):
    torch.manual_seed(0)
    cls = ConvexRidgeRegularizer if request.param == "crr" else WeaklyConvexRidgeRegularizer
    return cls(channels=(1, 4, 8), kernel_size=3)


@pytest.fixture
def x():
    return torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))


# item 5: per-sample values of the wrong length or shape
def test_ridge_prox_refuses_gamma_of_the_wrong_length(prior, x):
    with pytest.raises(ValueError, match=r"gamma must be .* one value per sample"):
        prior.prox(x, 0.1, gamma=torch.full((3,), 0.5))
    with pytest.raises(ValueError, match=r"gamma must be .* one value per sample"):
        prior.prox(x, 0.1, gamma=torch.full((2, 2), 0.5))
    assert prior.prox(x, 0.1, gamma=torch.tensor([0.5, 1.0]), max_iter=20).shape == x.shape


def test_ridge_refuses_g_param_of_the_wrong_shape(prior):
    x4 = torch.rand(4, 1, 16, 16)
    with pytest.raises(ValueError, match="g_param"):
        prior.fn(x4, torch.full((2, 2), 0.1))
    with pytest.raises(ValueError, match="g_param"):
        prior.grad(x4, torch.full((3,), 0.1))


# item 6 and 19: iteration counts and tolerances
@pytest.mark.parametrize("max_iter", [0, -1, 2.5])
def test_ridge_prox_refuses_bad_max_iter(prior, x, max_iter):
    with pytest.raises(ValueError, match="max_iter"):
        prior.prox(x, 0.1, gamma=0.5, max_iter=max_iter)


@pytest.mark.parametrize("tol", [-1.0, NAN])
def test_ridge_prox_refuses_bad_tol(prior, x, tol):
    with pytest.raises(ValueError, match="tol"):
        prior.prox(x, 0.1, gamma=0.5, tol=tol)


def test_ridge_prox_accepts_integral_counts_and_zero_tol(prior, x):
    out = prior.prox(x, 0.1, gamma=0.5, max_iter=3.0, tol=0.0)
    assert prior.last_prox_iterations == 3 and torch.isfinite(out).all()


def test_accelerated_gradient_refuses_bad_arguments():
    x0 = torch.zeros(2, 2)

    def grad(z):
        return z - 1

    with pytest.raises(ValueError, match="max_iter"):
        accelerated_gradient(grad, x0, 1.0, max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        accelerated_gradient(grad, x0, 1.0, tol=NAN)
    with pytest.raises(ValueError, match="lipschitz"):
        accelerated_gradient(grad, x0, -1.0)


def test_ridge_denoiser_and_solver_refuse_bad_settings(prior):
    with pytest.raises(ValueError, match="max_iter"):
        RidgeDenoiser(prior, max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        RidgeDenoiser(prior, tol=-1e-5)
    with pytest.raises(ValueError, match="strength"):
        RidgeDenoiser(prior, strength=NAN)
    with pytest.raises(ValueError, match="max_iter"):
        RidgeSolver(prior, max_iter=-1)
    with pytest.raises(ValueError, match="max_iter"):
        RidgeSolver(prior, max_iter=2.5)
    with pytest.raises(ValueError, match="g_param"):
        RidgeSolver(prior, g_param=NAN)
    with pytest.raises(ValueError, match="a <= b"):
        RidgeSolver(prior, box=(1.0, 0.0))
    with pytest.raises(ValueError, match="box"):
        RidgeSolver(prior, box=(0.0, NAN))


# item 8: channels[0] != 1
@pytest.mark.parametrize("cls", [ConvexRidgeRegularizer, WeaklyConvexRidgeRegularizer])
def test_ridge_refuses_several_input_channels_in_the_constructor(cls):
    with pytest.raises(ValueError, match="first entry of channels must be 1"):
        cls(channels=(3, 4, 8), kernel_size=3)


def test_ridge_regularises_colour_images_channel_by_channel(prior):
    x = torch.rand(1, 3, 16, 16)
    assert prior.prox(x, 0.1, gamma=0.5, max_iter=20).shape == x.shape


# item 11: empty batch and empty images
@pytest.mark.parametrize("shape", [(0, 1, 16, 16), (1, 1, 0, 16)])
def test_ridge_refuses_empty_input(prior, shape):
    x = torch.rand(shape)
    for call in (lambda: prior.fn(x, 0.1), lambda: prior.grad(x, 0.1), lambda: prior.prox(x, 0.1),
                 lambda: RidgeDenoiser(prior)(x, 0.1)):
        with pytest.raises(ValueError, match="B >= 1"):
            call()


# item 12 and 13: constructor values
def test_wcrr_refuses_bad_sigma_default():
    for value in (-0.1, NAN):
        with pytest.raises(ValueError, match="sigma_default"):
            WeaklyConvexRidgeRegularizer(channels=(1, 4, 8), kernel_size=3, sigma_default=value)


@pytest.mark.parametrize("x_range", [NAN, float("inf"), 0.0])
def test_ridge_and_spline_refuse_bad_x_range(x_range):
    with pytest.raises(ValueError, match="x_range"):
        ConvexRidgeRegularizer(channels=(1, 4, 8), kernel_size=3, x_range=x_range)
    with pytest.raises(ValueError, match="x_range"):
        LinearSpline(4, 11, x_range)


def test_spline_refuses_bad_slope_bounds_and_counts():
    with pytest.raises(ValueError, match="slope_min must be <= slope_max"):
        LinearSpline(4, 11, 1.0, slope_min=1.0, slope_max=0.0)
    with pytest.raises(ValueError, match="slope_min"):
        LinearSpline(4, 11, 1.0, slope_min=NAN)
    with pytest.raises(ValueError, match="num_activations"):
        LinearSpline(2.5, 11, 1.0)


def test_spline_refuses_non_finite_and_integer_input():
    spline = LinearSpline(4, 11, 1.0)
    for bad in (torch.full((1, 4, 8, 8), NAN), torch.full((1, 4, 8, 8), float("inf"))):
        with pytest.raises(ValueError, match="NaN or Inf"):
            spline(bad)
        with pytest.raises(ValueError, match="NaN or Inf"):
            spline.potential(bad)
    with pytest.raises(TypeError, match="floating-point"):
        spline(torch.ones(1, 4, 8, 8, dtype=torch.int64))


# item 16 and 19: multi-convolution
def test_multiconv_refuses_bad_input():
    conv = MultiConv2d((1, 4, 8), 3)
    with pytest.raises(ValueError, match=r"x must have shape \[B, 1, H, W\]"):
        conv(torch.rand(1, 2, 16, 16))
    with pytest.raises(ValueError, match=r"y must have shape \[B, 8, H, W\]"):
        conv.adjoint(torch.rand(1, 4, 16, 16))
    with pytest.raises(TypeError, match="floating-point"):
        conv(torch.ones(1, 1, 16, 16, dtype=torch.int64))
    with pytest.raises(ValueError, match="NaN or Inf"):
        conv(torch.full((1, 1, 16, 16), NAN))


def test_multiconv_refuses_bad_constructor_arguments():
    with pytest.raises(ValueError, match="fft_size"):
        MultiConv2d((1, 4, 8), 3, fft_size=0)
    with pytest.raises(ValueError, match="fft_size 8 is too small"):
        MultiConv2d((1, 4, 8), 3, fft_size=8)
    with pytest.raises(TypeError, match="channels must be a sequence"):
        MultiConv2d(8, 3)
    with pytest.raises(TypeError, match="channels must be a sequence"):
        ConvexRidgeRegularizer(channels=8, kernel_size=3)
    with pytest.raises(ValueError, match=r"channels\[1\] must be an integer"):
        ConvexRidgeRegularizer(channels=(1, 4.5, 8), kernel_size=3)
    assert ConvexRidgeRegularizer(channels=(1, 4, 8), kernel_size=3.0).conv.kernel_size == 3
    with pytest.raises(ValueError, match="kernel_size"):
        MultiConv2d((1, 4, 8), 2.5)


def test_multiconv_spectral_norm_and_pruning_refuse_bad_arguments():
    conv = MultiConv2d((1, 4, 8), 3)
    with pytest.raises(ValueError, match="n_iter"):
        conv.spectral_norm(n_iter=-1)
    with pytest.raises(ValueError, match="size"):
        conv.spectral_norm(size=0)
    with pytest.raises(ValueError, match="fft_size"):
        conv.norm_bound(fft_size=0)
    with pytest.raises(ValueError, match=r"lie in \[0, 8\)"):
        conv.keep_output_channels(torch.tensor([20]))
    with pytest.raises(TypeError, match="integer"):
        conv.keep_output_channels(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="at least one"):
        conv.keep_output_channels(torch.tensor([], dtype=torch.long))
    conv.keep_output_channels(torch.tensor([0, 2]))
    assert conv.channels[-1] == 2


def test_ridge_solver_still_solves(prior):
    physics = dinv.physics.BlurFFT((1, 16, 16), filter=dinv.physics.functional.gaussian_blur(sigma=1.0))
    y = physics(torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(1)))
    out = RidgeSolver(prior, lambda_reg=0.1, max_iter=5.0, box=(0.0, None))(y, physics)
    assert out.shape == (1, 1, 16, 16) and torch.isfinite(out).all()


def test_ridge_solver_refuses_a_start_or_physics_that_does_not_fit_y(prior):
    y = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    solver = RidgeSolver(prior, lambda_reg=0.1, max_iter=3)
    denoising = dinv.physics.Denoising()
    for x_init in (torch.rand(1, 1, 16, 16), torch.rand(2, 1, 1, 16), torch.rand(2, 1, 8, 8)):  # the first two broadcast
        with pytest.raises(ValueError, match=r"RidgeSolver: x_init does not fit the observation of shape \(2, 1, 16, 16\)"):
            solver(y, denoising, x_init=x_init)
    with pytest.raises(ValueError, match="RidgeSolver: physics does not fit the observation"):
        solver(y, dinv.physics.Inpainting(img_size=(1, 8, 8), mask=0.5))
    assert solver(y, denoising, x_init=y.clone()).shape == y.shape
