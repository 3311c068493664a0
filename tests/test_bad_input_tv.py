"""Bad input to the TV components raises a ValueError or TypeError that names the argument."""

import deepinv as dinv
import pytest
import torch

from deepinv_pnn.baselines import TVDenoiser, TVPrior
from deepinv_pnn.models.param_map import TVParameterMapNet
from deepinv_pnn.models.unrolled_pdhg import UnrolledPDHG
from deepinv_pnn.optim.weighted_tv import WeightedTVPrior

NAN = float("nan")


@pytest.fixture
def x():
    return torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def den():
    return dinv.physics.Denoising()


@pytest.fixture
def tvmap():
    torch.manual_seed(0)
    return TVParameterMapNet(n_iter=3, widths=(4, 8))


def wrong_size_inpainting():
    return dinv.physics.Inpainting(img_size=(1, 16, 16), mask=0.5)


# --- TVParameterMapNet ---------------------------------------------------------------


def test_tvmap_float64_input_is_a_type_error(tvmap, x, den):
    with pytest.raises(TypeError, match="dtype torch.float64 but TVParameterMapNet"):
        tvmap(x.double(), den)
    with pytest.raises(TypeError, match="dtype torch.float32 but TVParameterMapNet"):
        tvmap.double()(x, den)


def test_tvmap_double_model_takes_float64(tvmap, x, den):
    out = tvmap.double()(x.double(), den)
    assert out.dtype == torch.float64 and torch.isfinite(out).all()


def test_tvmap_physics_for_another_size(tvmap):
    with pytest.raises(ValueError, match="TVParameterMapNet: physics does not fit"):
        tvmap(torch.rand(1, 1, 8, 8), wrong_size_inpainting())


def test_tvmap_empty_batch(tvmap, x, den):
    with pytest.raises(ValueError, match="empty batch"):
        tvmap(x[:0], den)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n_iter": 2.5}, ValueError, "n_iter must be an integer"),
        ({"n_iter": 0}, ValueError, "n_iter must be an integer >= 1"),
        ({"widths": 8}, TypeError, "widths must be a tuple"),
        ({"widths": ()}, ValueError, "widths must be a non-empty"),
        ({"widths": (4.5, 8)}, ValueError, r"widths\[0\] must be an integer"),
        ({"widths": (4, -8)}, ValueError, r"widths\[1\] must be an integer >= 1"),
        ({"problem": "bad"}, ValueError, "problem must be one of"),
    ],
)
def test_tvmap_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        TVParameterMapNet(**{"n_iter": 3, "widths": (4, 8), **kwargs})


# --- UnrolledPDHG ---------------------------------------------------------------------


def test_pdhg_physics_for_another_size():
    with pytest.raises(ValueError, match="UnrolledPDHG: physics does not fit"):
        UnrolledPDHG(n_iter=3)(torch.rand(1, 1, 8, 8), wrong_size_inpainting(), 0.1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lambda_map": -0.1}, "lambda_map must be non-negative"),
        ({"lambda_map": NAN}, "lambda_map must be finite"),
        ({"lambda_map": torch.full((1, 1, 16, 16), NAN)}, "lambda_map must be finite and non-negative"),
        ({"lambda_map": -torch.ones(1, 1, 16, 16)}, "lambda_map must be finite and non-negative"),
        ({"x_init": torch.full((1, 1, 16, 16), NAN)}, "x_init contains NaN"),
        ({"x_init": torch.rand(1, 1, 8, 8)}, "x_init does not fit the observation"),
        ({"x_init": torch.rand(1, 1, 1, 16)}, "x_init does not fit the observation"),  # would broadcast
        ({"x_init": torch.rand(2, 1, 16, 16)}, "x_init must have the batch size of y"),
        ({"op_sqnorm": -1.0}, "op_sqnorm must be > 0"),
        ({"op_sqnorm": 0.0}, "op_sqnorm must be > 0"),
        ({"op_sqnorm": NAN}, "op_sqnorm must be finite"),
        ({"n_iter": 2.5}, "n_iter must be an integer"),
        ({"n_iter": -1}, "n_iter must be an integer >= 0"),
    ],
)
def test_pdhg_bad_forward_arguments(x, den, kwargs, match):
    with pytest.raises(ValueError, match=match):
        UnrolledPDHG(n_iter=3)(x, den, **{"lambda_map": 0.1, **kwargs})


def test_pdhg_nan_observation(den):
    with pytest.raises(ValueError, match="y contains NaN"):
        UnrolledPDHG(n_iter=3)(torch.full((1, 1, 16, 16), NAN), den, 0.1)


def test_pdhg_x_init_shape_checked_with_checkpointing(x):
    physics = dinv.physics.Denoising()
    model = UnrolledPDHG(n_iter=4, checkpointing=True)
    y = x.clone().requires_grad_()
    with pytest.raises(ValueError, match="x_init does not fit the observation"):
        model(y, physics, 0.1, x_init=torch.rand(1, 1, 8, 8))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"log_ratio_init": NAN}, "log_ratio_init must be finite"),
        ({"n_iter": 2.5}, "n_iter must be an integer"),
        ({"n_iter": 0}, "n_iter must be an integer >= 1"),
    ],
)
def test_pdhg_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UnrolledPDHG(**kwargs)


def test_pdhg_empty_batch_gives_empty_result(x, den):
    assert UnrolledPDHG(n_iter=3)(x[:0], den, 0.1).shape == (0, 1, 16, 16)


# --- WeightedTVPrior ------------------------------------------------------------------


def test_wtv_per_sample_gamma_of_wrong_length(x):
    with pytest.raises(ValueError, match=r"gamma must be .* one value per sample \(\[B\] = \[1\]\)"):
        WeightedTVPrior(0.1).prox(x, gamma=torch.tensor([0.1, 0.2, 0.3]))
    field = torch.rand(1, 1, 16, 16, 2)
    with pytest.raises(ValueError, match="gamma must be"):
        WeightedTVPrior(0.1).prox(field, gamma=torch.tensor([0.1, 0.2]))


@pytest.mark.parametrize("method", ["fn", "grad"])
def test_wtv_g_param_of_wrong_length(method):
    x2 = torch.rand(2, 1, 16, 16)
    with pytest.raises(ValueError, match=r"g_param must be .* \(\[B\] = \[2\]\)"):
        getattr(WeightedTVPrior(0.1), method)(x2, torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match=r"g_param must be .* \(\[B\] = \[1\]\)"):
        getattr(WeightedTVPrior(0.1), method)(x2[:1], torch.tensor([0.1, 0.2, 0.3]))


@pytest.mark.parametrize("method", ["fn", "prox"])
def test_wtv_map_for_another_batch(x, method):
    prior = WeightedTVPrior(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match="lambda_map of shape .* does not fit the gradient field"):
        getattr(prior, method)(x)


def test_wtv_per_sample_values_still_work():
    x3 = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    prior = WeightedTVPrior(0.1, max_iter=50)
    gamma = torch.tensor([0.1, 0.2, 0.3])
    assert prior.prox(x3, gamma=gamma).shape == x3.shape
    assert torch.equal(prior.fn(x3, gamma), prior.fn(x3, gamma.view(3, 1, 1, 1)))
    field = torch.randn(3, 1, 16, 16, 2, generator=torch.Generator().manual_seed(2))
    assert prior.prox(field, gamma=gamma).shape == field.shape


@pytest.mark.parametrize("method", ["fn", "prox", "prox_conjugate"])
def test_wtv_bad_gradient_field(method):
    prior = WeightedTVPrior(0.1)
    if method == "fn":  # the proxes of a field skip the finiteness pass: PDCP calls them every iteration
        with pytest.raises(ValueError, match="x contains NaN"):
            prior.fn(torch.full((1, 1, 16, 16, 2), NAN))
    with pytest.raises(ValueError, match=r"gradient field must be \[B, C, H, W, 2\]"):
        getattr(prior, method)(torch.rand(1, 1, 16, 16, 3))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_iter": -5}, "max_iter must be an integer >= 1"),
        ({"max_iter": 0}, "max_iter must be an integer >= 1"),
        ({"max_iter": 2.7}, "max_iter must be an integer"),
        ({"tol": NAN}, "tol must be finite"),
        ({"tol": -1.0}, "tol must be >= 0"),
    ],
)
def test_wtv_bad_solver_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WeightedTVPrior(0.1, **kwargs)


@pytest.mark.parametrize("method", ["fn", "grad", "prox"])
def test_wtv_empty_batch(x, method):
    with pytest.raises(ValueError, match="empty batch"):
        getattr(WeightedTVPrior(0.1), method)(x[:0])


# --- TVPrior, TVDenoiser --------------------------------------------------------------


@pytest.mark.parametrize("method", ["fn", "grad", "prox"])
def test_tvprior_empty_batch(x, method):
    with pytest.raises(ValueError, match="empty batch"):
        getattr(TVPrior(), method)(x[:0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_it_max": -1}, "n_it_max must be an integer >= 1"),
        ({"n_it_max": 2.5}, "n_it_max must be an integer"),
        ({"scale": -1.0}, "scale must be >= 0"),
        ({"scale": NAN}, "scale must be finite"),
        ({"crit": NAN}, "crit must be finite"),
    ],
)
def test_tvdenoiser_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TVDenoiser(**kwargs)
