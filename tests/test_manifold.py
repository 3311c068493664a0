"""Riemannian SGD / Adam on the Stiefel manifold with the exact Cayley retraction."""

import pytest
import torch

from deepinv_pnn.nn.stiefel import orthogonality_error, random_stiefel, stiefel_parameter
from deepinv_pnn.training.manifold import (
    CayleyAdam,
    CayleySGD,
    cayley_retraction,
    tangent_projection,
)


def test_cayley_retraction_is_exact_for_huge_steps():
    """The reference fixed-point iteration diverges for large steps; the solve does not."""
    w = random_stiefel(10, 4, generator=torch.Generator().manual_seed(0))
    d = tangent_projection(w, torch.randn(10, 4, generator=torch.Generator().manual_seed(1)))
    for step in (1e-3, 1.0, 1e2, 1e5):
        assert orthogonality_error(cayley_retraction(w, d, step)) < 1e-6


def test_cayley_retraction_is_a_first_order_retraction():
    w = random_stiefel(8, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    d = tangent_projection(
        w, torch.randn(8, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    )
    h = 1e-5
    derivative = (cayley_retraction(w, d, h) - w) / h
    assert torch.allclose(derivative, -d, atol=1e-4)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_cayley_optimisers_find_the_dominant_subspace(optimizer):
    """max tr(W^T A W) over St(8, 2) = sum of the two largest eigenvalues of A."""
    gen = torch.Generator().manual_seed(4)
    b = torch.randn(8, 8, generator=gen)
    a = b @ b.T / 8
    w = stiefel_parameter(random_stiefel(8, 2, generator=gen))
    opt = CayleySGD([w], lr=0.1, momentum=0.5) if optimizer == "sgd" else CayleyAdam([w], lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        (-torch.trace(w.T @ a @ w)).backward()
        opt.step()
    best = torch.linalg.eigvalsh(a)[-2:].sum()
    assert float(torch.trace(w.T @ a @ w)) > float(best) - 1e-3
    assert orthogonality_error(w) < 1e-6


def test_wide_points_stay_wide_and_orthogonal():
    w = stiefel_parameter(random_stiefel(9, 3, generator=torch.Generator().manual_seed(5)).T)
    opt = CayleyAdam([w], lr=0.5)
    for _ in range(50):
        opt.zero_grad()
        (w @ torch.ones(9)).pow(3).sum().backward()
        opt.step()
    assert w.shape == (3, 9) and orthogonality_error(w) < 1e-6


def test_euclidean_parameters_get_plain_updates():
    p = torch.nn.Parameter(torch.tensor([3.0]))
    opt = CayleySGD([p], lr=0.25, momentum=0.0)
    opt.zero_grad()
    (p**2).sum().backward()
    opt.step()
    assert float(p) == pytest.approx(1.5)


def test_bad_hyperparameters_raise():
    p = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match="lr"):
        CayleyAdam(p, lr=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        CayleySGD(p, lr=0.1, momentum=1.5)
