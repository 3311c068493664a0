"""iSPALM with the SARAH estimator."""

import pytest
import torch

from deepinv_pnn.nn.stiefel import StiefelLinear, orthogonality_error, random_stiefel
from deepinv_pnn.training.ispalm import ISPALM


def _procrustes(seed=0):
    """min ||W X - Y||^2 over St(6, 3) with Y = W* X: the solution is W*."""
    g = torch.Generator().manual_seed(seed)
    w_star = random_stiefel(6, 3, generator=g)
    x = torch.randn(3, 200, generator=g)
    return w_star, x, w_star @ x


@pytest.mark.parametrize("sarah", [True, False])
def test_ispalm_solves_stochastic_procrustes(sarah):
    w_star, x, y = _procrustes()
    layer = StiefelLinear(3, 6, generator=torch.Generator().manual_seed(1))
    opt = ISPALM([[layer.weight]], lr=0.2, prox=["stiefel"], sarah=sarah, restart_every=5)
    g = torch.Generator().manual_seed(2)
    for _ in range(150):
        idx = torch.randint(0, 200, (32,), generator=g)

        def closure(idx=idx):
            opt.zero_grad()
            loss = ((layer.weight @ x[:, idx] - y[:, idx]) ** 2).sum(0).mean()
            loss.backward()
            return loss

        opt.step(closure)
    assert float((layer.weight.detach() - w_star).abs().max()) < 1e-3
    assert orthogonality_error(layer.weight) < 1e-6


def test_sarah_estimator_is_exact_for_a_fixed_batch_on_a_quadratic():
    """On one fixed batch SARAH's estimate equals the true gradient (differences telescope)."""
    p = torch.nn.Parameter(torch.tensor([2.0, -1.0]))
    opt = ISPALM([[p]], lr=0.1, sarah=True, restart_every=100, alpha=0.0, beta=0.0)
    a = torch.tensor([1.0, 3.0])

    def closure():
        opt.zero_grad()
        loss = (a * p**2).sum() / 2
        loss.backward()
        return loss

    for _ in range(5):
        before = p.detach().clone()
        opt.step(closure)
        assert torch.allclose(p.detach(), before - 0.1 * a * before, atol=1e-6)


def test_bad_arguments_raise():
    p = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="alpha"):
        ISPALM([p], alpha=1.0)
    with pytest.raises(ValueError, match="lr"):
        ISPALM([p], lr=[0.1, 0.2])
    with pytest.raises(ValueError, match="restart_every"):
        ISPALM([p], restart_every=0)
