"""Specification of the vectorised linear splines."""

import pytest
import torch

from deepinv_pnn.nn.splines import LinearSpline, frozen_spline, spline_value, spline_value_gather


def _random_spline(seed=0, **kwargs) -> LinearSpline:
    torch.manual_seed(seed)
    spline = LinearSpline(6, num_knots=11, x_range=1.0, init="identity", **kwargs).double()
    with torch.no_grad():
        spline.coefficients.add_(0.5 * torch.randn_like(spline.coefficients))
    return spline


def test_spline_interpolates_its_knot_values_and_is_linear_between():
    spline = _random_spline(slope_min=None)
    c = spline.projected_coefficients()
    knots = spline.knots.double()
    x = knots.view(1, 1, -1).expand(1, 6, -1)
    assert torch.allclose(spline(x)[0], c, atol=1e-12)
    mid = 0.5 * (knots[1:] + knots[:-1])
    out = spline(mid.view(1, 1, -1).expand(1, 6, -1))[0]
    assert torch.allclose(out, 0.5 * (c[:, 1:] + c[:, :-1]), atol=1e-12)


def test_spline_vanishes_at_zero_and_extends_linearly():
    spline = _random_spline()
    assert torch.allclose(spline(torch.zeros(1, 6, 1, dtype=torch.float64)), torch.zeros(1, 6, 1, dtype=torch.float64))
    slopes = spline.slopes()
    far = spline(torch.full((1, 6, 1), 3.0, dtype=torch.float64))[0, :, 0]
    edge = spline(torch.full((1, 6, 1), 1.0, dtype=torch.float64))[0, :, 0]
    assert torch.allclose(far - edge, 2.0 * slopes[:, -1])


def test_monotone_clipped_projection_gives_nondecreasing_bounded_splines():
    spline = _random_spline(slope_min=0.0, clip_ends=True)
    slopes = spline.slopes()
    assert (slopes >= 0).all() and (slopes[:, [0, -1]] == 0).all()
    x = torch.linspace(-5, 5, 1001, dtype=torch.float64).view(1, 1, -1).expand(1, 6, -1)
    y = spline(x)[0]
    assert (y[:, 1:] - y[:, :-1] >= -1e-12).all()
    assert torch.allclose(y[:, 0], y[:, 100]) and torch.allclose(y[:, -1], y[:, -101])


def test_slope_bounds_are_enforced():
    spline = _random_spline(slope_min=0.0, slope_max=1.0)
    slopes = spline.slopes()
    assert slopes.min() >= 0 and slopes.max() <= 1 + 1e-12


def test_potential_derivative_is_the_spline_and_potential_vanishes_at_zero():
    spline = _random_spline(slope_min=0.0)
    x = (2 * torch.randn(2, 6, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)).requires_grad_()
    (grad,) = torch.autograd.grad(spline.potential(x).sum(), x)
    assert torch.allclose(grad, spline(x), atol=1e-12)
    assert spline.potential(torch.zeros(1, 6, 1, dtype=torch.float64)).abs().max() < 1e-14
    # exact integral against the trapezoidal rule on a fine grid
    t = torch.linspace(0, 1.7, 20001, dtype=torch.float64)
    vals = spline(t.view(1, 1, -1).expand(1, 6, -1))[0]
    trap = torch.trapezoid(vals, t, dim=-1)
    assert torch.allclose(spline.potential(torch.full((1, 6, 1), 1.7, dtype=torch.float64))[0, :, 0], trap, atol=1e-8)


def test_vectorised_evaluation_matches_gather_and_its_gradients():
    spline = _random_spline()
    c = spline.projected_coefficients().detach()
    x = torch.randn(3, 6, 5, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 1.5
    w = torch.randn_like(x)
    grads = []
    for fn in (spline_value, spline_value_gather):
        xr, cr = x.clone().requires_grad_(), c.clone().requires_grad_()
        out = fn(xr, cr, -1.0, spline.h)
        grads.append((out, *torch.autograd.grad((out * w).sum(), (xr, cr))))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-12)


def test_tv2_counts_the_slope_changes():
    spline = LinearSpline(1, num_knots=5, x_range=1.0, init="zero")
    with torch.no_grad():
        spline.coefficients.copy_(torch.tensor([[0.0, 0.0, 0.0, 0.5, 1.0]]))
    # one kink where the slope goes from 0 to 1
    assert float(spline.tv2()) == pytest.approx(1.0)


def test_invalid_spline_arguments_raise():
    with pytest.raises(ValueError, match="num_knots"):
        LinearSpline(2, num_knots=10)
    with pytest.raises(ValueError, match="x_range"):
        LinearSpline(2, x_range=0.0)
    with pytest.raises(ValueError, match="shape"):
        LinearSpline(2)(torch.zeros(1, 3, 4))


def test_projection_passes_the_gradient_on_the_slope_bounds():
    # slopes exactly on a bound (the soft-clip start: 0 and 1) must still learn; outside
    # the bounds the projection cuts the gradient off
    from deepinv_pnn.nn.splines import clamp_closed

    x = torch.tensor([0.0, 1.0, -0.01, 0.5, 1.2], requires_grad=True)
    clamp_closed(x, 0.0, 1.0).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 0.0, 1.0, 0.0]
    spline = LinearSpline(2, 21, 2.0, init="soft-clip", slope_min=0.0, slope_max=1.0)
    spline(torch.linspace(-3, 3, 50).view(1, 1, 50).expand(1, 2, 50).contiguous()).square().sum().backward()
    assert float(spline.coefficients.grad.abs().sum()) > 0


def test_frozen_spline_matches_the_spline_with_factors_per_channel_and_per_sample():
    spline = _random_spline()
    c = spline.projected_coefficients().detach()
    x = torch.randn(3, 6, 5, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 1.5
    a = torch.rand(3, 6, 1, 1, dtype=torch.float64) + 0.5
    b = torch.rand(3, 6, 1, 1, dtype=torch.float64) + 0.5
    channels = torch.arange(6).view(1, 6, 1, 1)
    frozen = frozen_spline(c, -1.0, spline.h, group=channels, pre=a, post=b)
    assert torch.allclose(frozen(x), b * spline_value(a * x, c, -1.0, spline.h), atol=1e-12)
    # one table row per sample (the inputs beyond [-1, 1] use the linear extension)
    rows = torch.randn(3, 11, dtype=torch.float64)
    per_sample = frozen_spline(rows, -1.0, spline.h, group=torch.arange(3).view(3, 1, 1, 1))(x)
    for n in range(3):
        expected = spline_value(x[n : n + 1], rows[n : n + 1].expand(6, -1), -1.0, spline.h)
        assert torch.allclose(per_sample[n : n + 1], expected, atol=1e-12)
    assert not frozen(x.requires_grad_()).requires_grad  # a constant map: no autograd
    with pytest.raises(ValueError, match="group"):
        frozen_spline(rows, -1.0, spline.h)
