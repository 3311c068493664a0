import pytest
import torch
from deepinv.optim.utils import conjugate_gradient as deepinv_cg

from deepinv_pnn.optim.conjugate_gradient import conjugate_gradient


def _system(device="cpu", seed=0):
    """v -> v + K^T K v on [3, 1, 8, 8] images (K a random convolution): the implicit-gradient system's shape."""
    g = torch.Generator().manual_seed(seed)
    kernel = torch.randn(4, 1, 3, 3, generator=g, dtype=torch.float64).to(device)
    b = torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64).to(device)

    def matvec(v):
        kv = torch.nn.functional.conv2d(v, kernel, padding=1)
        return v + torch.nn.functional.conv_transpose2d(kv, kernel, padding=1)

    return matvec, b


@pytest.mark.parametrize("max_iter", [1, 3, 7, 20])
def test_follows_deepinv_conjugate_gradient(max_iter):
    matvec, b = _system()
    ours, its = conjugate_gradient(matvec, b, max_iter=max_iter, tol=0.0, check_every=1)
    theirs = deepinv_cg(matvec, b, max_iter=max_iter, tol=0.0, eps=1e-30, parallel_dim=None)
    assert its == max_iter
    assert float((ours - theirs).norm() / theirs.norm()) < 1e-12


def test_stops_at_the_tolerance_and_checks_every_few_iterations():
    matvec, b = _system(seed=1)
    u1, its1 = conjugate_gradient(matvec, b, max_iter=500, tol=1e-8, check_every=1)
    u7, its7 = conjugate_gradient(matvec, b, max_iter=500, tol=1e-8, check_every=7)
    assert its1 < 500 and float((matvec(u1) - b).norm() / b.norm()) < 1e-8
    assert its7 % 7 == 0 and its1 <= its7 < its1 + 7
    assert float((matvec(u7) - b).norm()) <= float((matvec(u1) - b).norm()) * 1.5
    # same iterates as deepinv's solver stopped at its7 (it tests every iteration)
    assert torch.allclose(u7, deepinv_cg(matvec, b, max_iter=its7, tol=0.0, eps=1e-30, parallel_dim=None),
                          rtol=0, atol=1e-12)


def test_zero_right_hand_side_gives_zero():
    matvec, b = _system()
    u, its = conjugate_gradient(matvec, torch.zeros_like(b), tol=1e-3)
    assert its == 1 and torch.equal(u, torch.zeros_like(b))


def test_cuda_graph_flag_is_ignored_on_the_cpu_and_bad_arguments_are_refused():
    matvec, b = _system()
    assert torch.equal(conjugate_gradient(matvec, b, max_iter=30, tol=1e-6, check_every=5)[0],
                       conjugate_gradient(matvec, b, max_iter=30, tol=1e-6, check_every=5, cuda_graph=True)[0])
    with pytest.raises(ValueError, match="max_iter"):
        conjugate_gradient(matvec, b, max_iter=0)
    with pytest.raises(ValueError, match="check_every"):
        conjugate_gradient(matvec, b, check_every=0)
    with pytest.raises(TypeError, match="tensor"):
        conjugate_gradient(matvec, b.tolist())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("max_iter", [40, 43])
def test_cuda_graph_gives_the_eager_iterates(max_iter):
    matvec, b = _system(device="cuda", seed=2)
    for tol in (1e-8, 0.0):  # stops inside the graphed blocks / runs them all and the remainder
        eager = conjugate_gradient(matvec, b, max_iter=max_iter, tol=tol)
        graphed = conjugate_gradient(matvec, b, max_iter=max_iter, tol=tol, cuda_graph=True)
        assert eager[1] == graphed[1]
        assert torch.allclose(eager[0], graphed[0], rtol=0, atol=1e-12)
