import pytest
import torch

from deepinv_pnn.optim.accelerated_gradient import accelerated_gradient


def _quadratic(batch=3, n=40, seed=0, device="cpu"):
    """f_b(x) = 1/2 x^T A x - c_b^T x per batch element (A: eigenvalues 1e-2 .. 1)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    a = q @ torch.diag(torch.logspace(-2, 0, n, dtype=torch.float64)) @ q.T
    c = torch.randn(batch, n, generator=g, dtype=torch.float64)
    solution = torch.linalg.solve(a, c.T).T
    a, c = a.to(device), c.to(device)
    return (lambda x: x @ a - c), solution.to(device)


def test_converges_to_the_minimiser_within_the_tolerance():
    grad, solution = _quadratic()
    x, its = accelerated_gradient(grad, torch.zeros_like(solution), 1.0, max_iter=5000, tol=1e-10)
    assert its < 5000
    assert float((x - solution).norm() / solution.norm()) < 1e-7


def test_checking_less_often_stops_at_a_multiple_and_is_no_less_accurate():
    grad, solution = _quadratic(seed=1)
    x0 = torch.zeros_like(solution)
    x1, its1 = accelerated_gradient(grad, x0, 1.0, max_iter=5000, tol=1e-8, check_every=1)
    x7, its7 = accelerated_gradient(grad, x0, 1.0, max_iter=5000, tol=1e-8, check_every=7)
    assert its7 % 7 == 0 and its1 <= its7 < its1 + 7
    # the same iterates: the run that checks less often is the longer prefix of the same sequence
    x_ref, _ = accelerated_gradient(grad, x0, 1.0, max_iter=its7, tol=0.0)
    assert torch.equal(x7, x_ref)
    assert float((x7 - solution).norm()) <= float((x1 - solution).norm()) * 1.5
    # max_iter is always checked (and returned) even when it is not a multiple
    _, its = accelerated_gradient(grad, x0, 1.0, max_iter=10, tol=1e-30, check_every=7)
    assert its == 10
    with pytest.raises(ValueError, match="check_every"):
        accelerated_gradient(grad, x0, 1.0, check_every=0)


def test_cuda_graph_flag_is_ignored_on_the_cpu():
    grad, solution = _quadratic(seed=2)
    x0 = torch.zeros_like(solution)
    eager = accelerated_gradient(grad, x0, 1.0, max_iter=500, tol=1e-8, check_every=5)
    flagged = accelerated_gradient(grad, x0, 1.0, max_iter=500, tol=1e-8, check_every=5, cuda_graph=True)
    assert torch.equal(eager[0], flagged[0]) and eager[1] == flagged[1]


def test_a_failed_graph_capture_warns_and_leaves_the_state_untouched(monkeypatch):
    from deepinv_pnn.optim.cuda_graph_loop import replay_in_blocks

    def refuse(*args, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(torch.cuda, "Stream", refuse)
    state = (torch.ones(2, 3), torch.ones(2))
    with pytest.warns(UserWarning, match="running eagerly"):
        ran = replay_in_blocks(lambda s, check: ((s[0] / 2, s[1]), s[0].sum() < 1 if check else None), state, 5, 4)
    assert ran is None
    assert torch.equal(state[0], torch.ones(2, 3)) and torch.equal(state[1], torch.ones(2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("max_iter", [400, 403])
def test_cuda_graph_gives_the_eager_iterates_and_stopping_iteration(max_iter):
    grad, solution = _quadratic(seed=3, device="cuda")
    x0 = torch.zeros_like(solution)
    for tol in (1e-8, 0.0):  # stops inside the graphed blocks / runs them all and the remainder
        eager = accelerated_gradient(grad, x0, 1.0, max_iter=max_iter, tol=tol)
        graphed = accelerated_gradient(grad, x0, 1.0, max_iter=max_iter, tol=tol, cuda_graph=True)
        assert eager[1] == graphed[1]
        assert torch.allclose(eager[0], graphed[0], rtol=0, atol=1e-12)
