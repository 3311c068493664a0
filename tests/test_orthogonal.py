"""Exact orthogonal layers: dense Stiefel layers and Parseval convolutions."""

import pytest
import torch

from deepinv_pnn.nn.orthogonal import (
    ParsevalConv2d,
    StiefelLinear,
    constrain,
    group_shift,
    orthogonality_error,
    random_stiefel,
)
from deepinv_pnn.training.manifold import CayleyAdam, CayleySGD

MAPS = ("manifold", "cayley", "exp")


@pytest.mark.parametrize("parametrization", MAPS)
@pytest.mark.parametrize("shape", [(4, 9), (9, 4), (6, 6)])
def test_stiefel_linear_is_exact_in_both_orientations(parametrization, shape):
    in_f, out_f = shape
    layer = StiefelLinear(
        in_f, out_f, parametrization=parametrization, generator=torch.Generator().manual_seed(0)
    )
    w = layer.weight.detach().double()
    gram = w.T @ w if out_f >= in_f else w @ w.T
    assert (gram - torch.eye(gram.shape[0], dtype=torch.float64)).abs().max() < 1e-6
    x = torch.randn(3, in_f)
    if out_f >= in_f:  # isometry: the adjoint inverts it
        assert torch.allclose(layer.adjoint(layer(x)), x, atol=1e-5)


@pytest.mark.parametrize("parametrization", MAPS)
def test_parseval_conv_is_exact_on_odd_sizes(parametrization):
    conv = ParsevalConv2d(
        2,
        11,
        n_stages=3,
        parametrization=parametrization,
        generator=torch.Generator().manual_seed(1),
    )
    t = conv.as_matrix(7, 5).double()  # [11*35, 2*35]
    assert t.shape == (11 * 35, 2 * 35)
    assert (t.T @ t - torch.eye(70, dtype=torch.float64)).abs().max() < 1e-5
    assert conv.norm_bound() < 1 + 1e-5


def test_square_parseval_conv_is_orthogonal_and_adjoint_is_transpose():
    conv = ParsevalConv2d(5, 5, n_stages=2, generator=torch.Generator().manual_seed(2))
    t = conv.as_matrix(6, 9).double()
    assert (t @ t.T - torch.eye(t.shape[0], dtype=torch.float64)).abs().max() < 1e-5
    x, y = (
        torch.randn(2, 5, 6, 9, dtype=torch.float64),
        torch.randn(2, 5, 6, 9, dtype=torch.float64),
    )
    conv = conv.double()
    assert torch.allclose((conv(x) * y).sum(), (x * conv.adjoint(y)).sum(), rtol=1e-10)


def test_parseval_conv_filter_is_local():
    """The equivalent filter lives on the diamond |i| + |j| <= n_stages."""
    conv = ParsevalConv2d(1, 5, n_stages=2, generator=torch.Generator().manual_seed(3))
    x = torch.zeros(1, 1, 11, 11)
    x[..., 5, 5] = 1
    support = conv(x).abs().sum(1)[0] > 1e-7
    i, j = torch.nonzero(support, as_tuple=True)
    assert int(((i - 5).abs() + (j - 5).abs()).max()) <= 2


def test_group_shift_is_a_permutation():
    x = torch.randn(2, 7, 5, 4)
    assert torch.equal(group_shift(group_shift(x, 1), -1), x)
    assert torch.equal(group_shift(x).flatten().sort()[0], x.flatten().sort()[0])
    assert torch.allclose(group_shift(x).norm(), x.norm())


def _train(module, optimizer, steps, size):
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        optimizer.zero_grad()
        x = torch.randn(4, *size, generator=gen)
        out = module(x)
        (out.pow(3).sum() + (out - 1).abs().sum()).backward()
        optimizer.step()


def _optimizer(method, params):
    if method == "cayley-adam":
        return CayleyAdam(params, lr=1.0)
    if method == "cayley-sgd":
        return CayleySGD(params, lr=1.0, momentum=0.9)
    return torch.optim.Adam(params, lr=1.0)


METHODS = ["cayley-adam", "cayley-sgd", "adam-on-cayley", "adam-on-exp"]
# the Euclidean optimiser on parametrised weights is slower per step on one CPU core
FAST_METHODS = [
    m if m.startswith("cayley") else pytest.param(m, marks=pytest.mark.slow) for m in METHODS
]


@pytest.mark.parametrize("method", FAST_METHODS)
@pytest.mark.parametrize("shape", [(5, 12), (12, 5)])
def test_dense_orthogonality_survives_1000_large_lr_steps(method, shape):
    parametrization = {"adam-on-cayley": "cayley", "adam-on-exp": "exp"}.get(method, "manifold")
    layer = StiefelLinear(
        *shape, parametrization=parametrization, generator=torch.Generator().manual_seed(0)
    )
    opt = _optimizer(method, layer.parameters())
    before = layer.weight.detach().clone()
    _train(layer, opt, 1000, (shape[0],))
    assert not torch.allclose(layer.weight.detach(), before)
    assert orthogonality_error(layer.weight) <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_conv_orthogonality_survives_1000_large_lr_steps(method):
    parametrization = {"adam-on-cayley": "cayley", "adam-on-exp": "exp"}.get(method, "manifold")
    conv = ParsevalConv2d(
        2,
        8,
        n_stages=2,
        parametrization=parametrization,
        generator=torch.Generator().manual_seed(0),
    )
    opt = _optimizer(method, conv.parameters())
    before = conv.first.detach().clone()
    _train(conv, opt, 1000, (2, 6, 6))
    assert not torch.allclose(conv.first.detach(), before)  # it did move
    assert conv.orthogonality_error() <= 1e-5
    t = conv.as_matrix(6, 6).double()
    assert (t.T @ t - torch.eye(t.shape[1], dtype=torch.float64)).abs().max() <= 1e-5


def test_constrain_makes_any_linear_layer_orthogonal():
    layer = constrain(torch.nn.Linear(3, 7, bias=False), "weight")
    opt = torch.optim.SGD(layer.parameters(), lr=1.0)
    for _ in range(20):
        opt.zero_grad()
        layer(torch.randn(5, 3)).pow(2).sum().backward()
        opt.step()
    assert orthogonality_error(layer.weight) < 1e-6


def test_bad_sizes_raise_value_errors_that_name_the_argument():
    with pytest.raises(ValueError, match="out_channels"):
        ParsevalConv2d(8, 4)
    with pytest.raises(ValueError, match="n_stages"):
        ParsevalConv2d(1, 4, n_stages=-1)
    with pytest.raises(ValueError, match="parametrization"):
        ParsevalConv2d(1, 4, parametrization="qr")
    with pytest.raises(ValueError, match="shape"):
        random_stiefel(2, 5)
    with pytest.raises(ValueError, match="bias"):
        constrain(torch.nn.Linear(3, 4), "bias")
