"""Bad input to the PNN denoisers, orthogonal layers, PnP step rules and manifold optimisers
raises a ValueError or TypeError that names the argument."""

import deepinv as dinv
import pytest
import torch

from deepinv_pnn.models.pnn import ConvPNN, ParsevalPNN
from deepinv_pnn.nn.orthogonal_conv import ParsevalConv2d
from deepinv_pnn.nn.stiefel import StiefelLinear, constrain
from deepinv_pnn.optim.pnp_steps import pnp_parameters, pnp_solver
from deepinv_pnn.problems import make_physics
from deepinv_pnn.training.ispalm import ISPALM
from deepinv_pnn.training.manifold import CayleyAdam, CayleySGD

NAN = float("nan")


def tiny_convpnn(**kwargs):
    return ConvPNN(width=8, state_channels=2, n_layers=2, **kwargs)


@pytest.fixture
def blur16():
    return make_physics("deblur", (1, 16, 16))


# ParsevalPNN


def test_parsevalpnn_refuses_a_dtype_mismatch():
    torch.manual_seed(0)
    model = ParsevalPNN(8, 16, 2)
    with pytest.raises(TypeError, match="float64 but ParsevalPNN's parameters are torch.float32"):
        model(torch.randn(2, 8, dtype=torch.float64), 0.1)
    with pytest.raises(TypeError, match="parameters are torch.float64"):
        ParsevalPNN(8, 16, 2).double()(torch.randn(2, 8), 0.1)


def test_parsevalpnn_works_in_float64_once_converted():
    torch.manual_seed(0)
    out = ParsevalPNN(8, 16, 2).double()(torch.randn(2, 8, dtype=torch.float64), 0.1)
    assert out.dtype == torch.float64 and torch.isfinite(out).all()


def test_convpnn_still_accepts_float64():
    out = tiny_convpnn()(torch.rand(1, 1, 16, 16, dtype=torch.float64), 0.1)
    assert out.dtype == torch.float64 and torch.isfinite(out).all()


@pytest.mark.parametrize("sigma", [torch.full((3,), 0.1), torch.full((2, 2), 0.1), [0.1, 0.2, 0.3]])
def test_parsevalpnn_refuses_sigma_of_the_wrong_length(sigma):
    with pytest.raises(ValueError, match=r"sigma must be .* one value per sample"):
        ParsevalPNN(8, 16, 2)(torch.randn(2, 8), sigma)


def test_parsevalpnn_accepts_per_sample_sigma():
    out = ParsevalPNN(8, 16, 2)(torch.randn(2, 8), torch.tensor([0.1, 0.2]))
    assert out.shape == (2, 8)


def test_parsevalpnn_rank_error_names_the_dense_shape():
    with pytest.raises(ValueError, match=r"\[B, d\] = \[B, 8\]"):
        ParsevalPNN(8, 16, 2)(torch.randn(2, 8, 1), 0.1)


@pytest.mark.parametrize("sigma0", [0.0, -1.0, NAN])
def test_sigma0_must_be_positive(sigma0):
    with pytest.raises(ValueError, match="sigma0"):
        tiny_convpnn(sigma0=sigma0)
    with pytest.raises(ValueError, match="sigma0"):
        ParsevalPNN(4, 8, sigma0=sigma0)


@pytest.mark.parametrize("name", ["n_stages", "width", "n_layers"])
def test_convpnn_refuses_non_integer_sizes(name):
    kwargs = {"width": 8, "state_channels": 2, "n_layers": 2, "n_stages": 1}
    kwargs[name] = kwargs[name] + 0.5
    with pytest.raises(ValueError, match=f"{name} must be an integer"):
        ConvPNN(**kwargs)


def test_parsevalpnn_refuses_non_integer_sizes():
    with pytest.raises(ValueError, match="n_layers must be an integer"):
        ParsevalPNN(8, 16, 1.5)


# pnp_parameters / pnp_solver


@pytest.mark.parametrize("physics", [None, "denoiser", dinv.physics.Physics(A=lambda x: x**2)])
def test_pnp_parameters_needs_a_linear_physics(physics):
    denoiser = tiny_convpnn()
    physics = denoiser if physics == "denoiser" else physics
    with pytest.raises(TypeError, match="physics must be a deepinv.physics.LinearPhysics"):
        pnp_parameters(denoiser, physics, (1, 16, 16))


@pytest.mark.parametrize("img_shape", [(16, 16), (1, 1, 16, 16), "1x16x16", (1, 16.5, 16)])
def test_pnp_parameters_needs_img_shape_c_h_w(blur16, img_shape):
    with pytest.raises(ValueError, match="img_shape"):
        pnp_parameters(tiny_convpnn(), blur16, img_shape)


def test_pnp_parameters_refuses_physics_built_for_another_size(blur16):
    with pytest.raises(ValueError, match=r"physics does not fit images of shape img_shape=\(1, 32, 32\)"):
        pnp_parameters(tiny_convpnn(), blur16, (1, 32, 32))
    inpainting = dinv.physics.Inpainting(img_size=(1, 16, 16), mask=0.5)
    with pytest.raises(ValueError, match="physics does not fit"):
        pnp_parameters(tiny_convpnn(), inpainting, (1, 8, 8))


@pytest.mark.parametrize("max_iter", [-1, 0, 2.5])
def test_pnp_solver_refuses_bad_max_iter(blur16, max_iter):
    with pytest.raises(ValueError, match="max_iter must be an integer"):
        pnp_solver(tiny_convpnn(), blur16, (1, 16, 16), max_iter=max_iter)


@pytest.mark.parametrize("thres_conv", [NAN, -1.0])
def test_pnp_solver_refuses_bad_thres_conv(blur16, thres_conv):
    with pytest.raises(ValueError, match="thres_conv must be"):
        pnp_solver(tiny_convpnn(), blur16, (1, 16, 16), thres_conv=thres_conv)


# ParsevalConv2d, StiefelLinear, constrain


def test_parsevalconv2d_checks_its_input():
    conv = ParsevalConv2d(2, 4, 1)
    with pytest.raises(ValueError, match=r"x must have shape \[B, 2, H, W\], got \(2, 16, 16\)"):
        conv(torch.rand(2, 16, 16))
    with pytest.raises(ValueError, match=r"x must have shape \[B, 2, H, W\]"):
        conv(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"y must have shape \[B, 4, H, W\]"):
        conv.adjoint(torch.rand(1, 3, 16, 16))
    with pytest.raises(TypeError, match="floating-point"):
        conv(torch.ones(1, 2, 16, 16, dtype=torch.int64))


def test_stiefellinear_checks_its_input():
    layer = StiefelLinear(3, 6)
    with pytest.raises(ValueError, match=r"x must have shape \[\.\.\., 3\], got \(2, 4\)"):
        layer(torch.rand(2, 4))
    with pytest.raises(ValueError, match=r"y must have shape \[\.\.\., 6\]"):
        layer.adjoint(torch.rand(2, 5))
    with pytest.raises(TypeError, match="floating-point"):
        layer(torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="parameters are torch.float32"):
        layer(torch.rand(2, 3, dtype=torch.float64))


def test_stiefellinear_refuses_non_integer_sizes():
    with pytest.raises(ValueError, match="in_features must be an integer"):
        StiefelLinear(2.5, 6)


def test_constrain_refuses_nan_weights():
    lin = torch.nn.Linear(3, 6)
    with torch.no_grad():
        lin.weight.fill_(NAN)
    with pytest.raises(ValueError, match="weight contains NaN"):
        constrain(lin)


# ISPALM, CayleyAdam, CayleySGD


def test_ispalm_refuses_a_flat_list_of_tensors():
    lin = torch.nn.Linear(3, 6)
    with pytest.raises(TypeError, match=r"blocks\[0\] must be a list of tensors"):
        ISPALM([lin.weight, lin.bias])


def test_ispalm_refuses_stiefel_prox_on_a_vector():
    lin = torch.nn.Linear(3, 6)
    with pytest.raises(ValueError, match=r"prox\[0\]='stiefel' needs \[\.\.\., n, k\]"):
        ISPALM([[lin.bias]], prox=["stiefel"])


def test_ispalm_refuses_a_closure_without_loss():
    lin = torch.nn.Linear(3, 6)
    opt = ISPALM([[lin.weight]])
    with pytest.raises(TypeError, match="closure must return the loss tensor"):
        opt.step(lambda: None)


def test_ispalm_accepts_generator_blocks():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2)
    opt = ISPALM([lin.parameters()], lr=0.1)
    assert len(opt.params) == 2


@pytest.mark.parametrize("eps", [0.0, -1.0])
def test_cayleyadam_refuses_bad_eps(eps):
    with pytest.raises(ValueError, match="eps must be"):
        CayleyAdam(torch.nn.Linear(3, 6).parameters(), eps=eps)


def test_cayleyadam_refuses_betas_not_a_pair():
    with pytest.raises(TypeError, match="betas must be a pair"):
        CayleyAdam(torch.nn.Linear(3, 6).parameters(), betas=0.9)


@pytest.mark.parametrize("weight_decay", [-1.0, NAN])
def test_cayleysgd_refuses_bad_weight_decay(weight_decay):
    with pytest.raises(ValueError, match="weight_decay must be"):
        CayleySGD(torch.nn.Linear(3, 6).parameters(), weight_decay=weight_decay)
