r"""Conjugate gradient for the implicit gradient of the WCRR-NN training, with the stopping rule
tested every few iterations and, on a GPU, the iterations replayed as a CUDA graph.

:func:`deepinv.optim.utils.conjugate_gradient` tests its stopping rule at every iteration, one
host synchronisation each; this one follows the same iterates (tested against it) but tests
every ``check_every`` iterations, so on a GPU the host can queue the next ones, or replay them
from a graph (:func:`~deepinv_pnn.optim.cuda_graph_loop.run_iterations`).
"""

from __future__ import annotations

import torch

from deepinv_pnn.optim.cuda_graph_loop import run_iterations
from deepinv_pnn.validation import check_positive


def _cg_iteration(matvec, state, threshold, eps, check):
    x, r, p, rs = state
    ap = matvec(p)
    alpha = rs / ((p * ap).sum() + eps)
    x = x + alpha * p
    r = r - alpha * ap
    rs_new = (r * r).sum()
    done = rs_new < threshold if check else None
    p = r + (rs_new / (rs + eps)) * p
    return (x, r, p, rs_new), done


def conjugate_gradient(
    matvec,
    b: torch.Tensor,
    max_iter: int = 50,
    tol: float = 1e-3,
    eps: float = 1e-30,
    check_every: int | None = None,
    cuda_graph: bool = False,
) -> tuple[torch.Tensor, int]:
    r"""Solve :math:`Au = b` for a symmetric positive semidefinite :math:`A`, the whole tensor
    (batch included) as one vector, from :math:`u_0 = 0`.

    Stops once :math:`\|r_k\|^2 < \text{tol}^2\,\|b\|^2` (tested every ``check_every``
    iterations and after ``max_iter``), the rule of :func:`deepinv.optim.utils.conjugate_gradient`
    with ``parallel_dim=None``; with ``check_every=1`` the iterates are the same.

    :param matvec: ``v -> A v`` on tensors shaped like ``b``.
    :param torch.Tensor b: the right-hand side.
    :param int max_iter: maximum number of iterations.
    :param float tol: relative tolerance on the residual.
    :param float eps: added to the denominators (a tiny ``b`` is not a reason to stop).
    :param int check_every: test the stopping rule every this many iterations; default 10 on a
        GPU (each test waits for the device), else 1.
    :param bool cuda_graph: on a CUDA tensor, replay blocks of ``check_every`` iterations from
        a CUDA graph (same iterates; ``matvec`` must not synchronise with the host). Ignored on
        the CPU.
    :return: the solution estimate and the number of iterations done.
    :raises ValueError: unless ``max_iter >= 1``, ``tol >= 0``, ``check_every >= 1``.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.optim.conjugate_gradient import conjugate_gradient
    >>> a = torch.tensor([[4.0, 1.0], [1.0, 3.0]])
    >>> u, its = conjugate_gradient(lambda v: a @ v, torch.tensor([1.0, 2.0]), tol=1e-6)
    >>> bool(torch.allclose(a @ u, torch.tensor([1.0, 2.0]), atol=1e-5)), its
    (True, 2)
    """
    if not isinstance(b, torch.Tensor):
        raise TypeError(f"b must be a tensor, got {type(b).__name__}")
    tol = check_positive(tol, "tol", allow_zero=True)
    b_sq = (b * b).sum()
    threshold = torch.where(b_sq > 0, b_sq, torch.ones_like(b_sq)) * tol**2
    state = (torch.zeros_like(b), b.clone(), b.clone(), b_sq.clone())
    state, it = run_iterations(lambda s, check: _cg_iteration(matvec, s, threshold, eps, check), state, max_iter,
                               check_every, cuda_graph)
    return state[0], it
