"""Specification of the multi-convolution W: exact adjoint, zero mean, norm bound and cache."""

import pytest
import torch

from deepinv_pnn.nn.multiconv import MultiConv2d


@pytest.fixture
def conv():
    torch.manual_seed(0)
    return MultiConv2d((1, 8, 32), kernel_size=7).double()


def test_adjoint_is_exact(conv):
    g = torch.Generator().manual_seed(1)
    for shape in ((2, 1, 37, 31), (1, 1, 16, 16)):
        x = torch.randn(shape, generator=g, dtype=torch.float64)
        y = torch.randn((shape[0], 32) + shape[2:], generator=g, dtype=torch.float64)
        lhs, rhs = (conv(x) * y).sum(), (x * conv.adjoint(y)).sum()
        assert abs(float(lhs - rhs)) / float(lhs.abs()) < 1e-6


def test_constant_images_are_in_the_kernel(conv):
    x = torch.full((1, 1, 40, 40), 0.7, dtype=torch.float64)
    # away from the zero-padded border the response of a constant vanishes
    assert conv(x)[..., 6:-6, 6:-6].abs().max() < 1e-12


def test_normalised_operator_has_norm_at_most_one_and_bound_is_tight(conv):
    measured = conv.spectral_norm(n_iter=60, size=24)
    assert measured <= 1.0 + 1e-6
    assert measured > 0.85  # the Fourier bound loses little
    raw = MultiConv2d((1, 8, 32), kernel_size=7, normalize=False).double()
    raw.load_state_dict(conv.state_dict())
    assert raw.spectral_norm(n_iter=60, size=24) <= float(raw.norm_bound()) * (1 + 1e-9)


def test_norm_bound_is_differentiable(conv):
    bound = conv.norm_bound()
    bound.backward()
    assert all(w.grad is not None and torch.isfinite(w.grad).all() for w in conv.weights)


def test_cached_scale_is_refreshed_after_loading_and_optimiser_steps(conv):
    x = torch.randn(1, 1, 20, 20, dtype=torch.float64)
    with torch.no_grad():
        before = conv(x)
        other = MultiConv2d((1, 8, 32), kernel_size=7).double()
        conv.load_state_dict(other.state_dict())
        after = conv(x)
        assert torch.allclose(after, other(x))
        assert not torch.allclose(before, after)
        conv.weights[1].mul_(2.0)  # a 2x larger raw operator is renormalised to the same one
        assert torch.allclose(conv(x), after, atol=1e-10)


def test_impulse_response_reproduces_the_operator(conv):
    kernel = conv.impulse_response()
    x = torch.randn(1, 1, 30, 30, dtype=torch.float64)
    direct = torch.nn.functional.conv2d(x, kernel.flip(-1, -2), padding=conv.radius)
    # equal away from the border (the chain zero-pads after each layer)
    r = 2 * conv.radius
    assert torch.allclose(direct[..., r:-r, r:-r], conv(x)[..., r:-r, r:-r], atol=1e-10)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="kernel_size"):
        MultiConv2d((1, 4), kernel_size=4)
    with pytest.raises(ValueError, match="channels"):
        MultiConv2d((1,), kernel_size=3)


def test_collapsed_operator_is_an_exact_adjoint_pair_equal_in_the_interior(conv):
    x = torch.randn(1, 1, 40, 40, dtype=torch.float64)
    y = torch.randn(1, 32, 40, 40, dtype=torch.float64)
    chain = conv(x)
    conv.collapse = True
    fast = conv(x)
    r = 2 * conv.radius
    assert torch.allclose(fast[..., r:-r, r:-r], chain[..., r:-r, r:-r], atol=1e-10)
    assert abs(float((conv(x) * y).sum() - (x * conv.adjoint(y)).sum())) < 1e-8


@pytest.mark.parametrize("collapse", [False, True])
def test_frozen_operators_match_forward_and_adjoint(conv, collapse):
    conv.collapse = collapse
    x = torch.randn(2, 1, 30, 30, dtype=torch.float64)
    y = torch.randn(2, 32, 30, 30, dtype=torch.float64)
    forward, adjoint = conv.frozen(torch.float64)
    assert torch.allclose(forward(x), conv(x), atol=1e-12)
    assert torch.allclose(adjoint(y), conv.adjoint(y), atol=1e-12)
    assert not forward(x).requires_grad and not adjoint(y).requires_grad
