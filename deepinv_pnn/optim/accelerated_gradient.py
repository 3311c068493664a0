r"""Accelerated gradient descent with gradient restart, batched: the inner solver of the ridge
regularisers' proximal operator (:meth:`~deepinv_pnn.optim.ridge.RidgeRegularizer.prox`) and
of the WCRR-NN training's denoiser.

With ``cuda_graph=True`` the iterations run as replays of a CUDA graph
(:func:`~deepinv_pnn.optim.cuda_graph_loop.run_iterations`).
"""

from __future__ import annotations

import torch

from deepinv_pnn.optim.cuda_graph_loop import run_iterations
from deepinv_pnn.validation import check_positive


def _iteration(grad_fn, x, y, t, step, accelerate, view, dims):
    """One step from ``y``; returns the new ``(x, y, t)`` and the gradient at the old ``y``."""
    g = grad_fn(y)
    x_new = y - step * g
    if accelerate:
        restart = (g * (x_new - x)).sum(dims) > 0
        t_new = 0.5 * (1 + torch.sqrt(1 + 4 * t**2))
        beta = torch.where(restart, torch.zeros_like(t), (t - 1) / t_new)
        t = torch.where(restart, torch.ones_like(t), t_new)
        y = x_new + beta.view(view) * (x_new - x)
    else:
        y = x_new
    return x_new, y, t, g


def _converged(g, x, step, tol, reference, dims) -> torch.Tensor:
    """The stopping rule as a 0-d boolean tensor: ``||x_new - y|| = step ||g||`` small."""
    res = torch.linalg.vector_norm(g, dim=dims).mul_(step)
    scale = torch.linalg.vector_norm(x if reference is None else x - reference, dim=dims).clamp_min(1e-12)
    return (res <= tol * scale).all()


def accelerated_gradient(
    grad_fn,
    x0: torch.Tensor,
    lipschitz: float,
    max_iter: int = 1000,
    tol: float = 1e-6,
    accelerate: bool = True,
    reference: torch.Tensor | None = None,
    check_every: int | None = None,
    cuda_graph: bool = False,
) -> tuple[torch.Tensor, int]:
    r"""Minimise a smooth function by FISTA-type accelerated gradient with gradient restart.

    Restart (O'Donoghue & Candès): the momentum is reset whenever
    :math:`\langle \nabla f(y_k), x_{k+1} - x_k\rangle > 0`, per batch element.
    Stops when every batch element satisfies :math:`\|x_{k+1} - y_k\| \le \text{tol}\,\|x_{k+1}\|`,
    or :math:`\|x_{k+1} - y_k\| \le \text{tol}\,\|x_{k+1} - r\|` with a ``reference`` :math:`r`
    (for a proximal point, the input: the test is then relative to the displacement, which a
    weak regulariser makes much smaller than the image, so the optimality residual
    :math:`\|\nabla h\| / \|x_{k+1} - r\|` stays below about :math:`L\,\text{tol}` at every
    strength).

    :param grad_fn: ``x -> grad f(x)`` on ``[B, ...]`` tensors.
    :param torch.Tensor x0: the initial point.
    :param float lipschitz: a Lipschitz constant of the gradient.
    :param int max_iter: maximum number of iterations.
    :param float tol: relative tolerance.
    :param bool accelerate: use momentum (else plain gradient descent).
    :param torch.Tensor reference: measure the tolerance relative to the distance from this
        point instead of the norm of the iterate.
    :param int check_every: test the stopping rule every this many iterations (and at
        ``max_iter``). Each test waits for the device, so on a GPU, where the host would
        otherwise queue the next iterations while the device computes, the default is 10;
        elsewhere 1. A later test only makes the result more accurate.
    :param bool cuda_graph: on a CUDA tensor, record ``check_every`` iterations once as a CUDA
        graph and replay it (the same iterates and stopping iteration as without it). ``grad_fn``
        must then be free of host synchronisation and of host-to-device copies; if the capture
        fails, a warning is issued and the solver runs eagerly. Ignored on the CPU.
    :return: the minimiser estimate and the number of iterations done.
    :raises ValueError: unless ``lipschitz > 0``, ``max_iter >= 1``, ``tol >= 0``, ``check_every >= 1``.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.optim.accelerated_gradient import accelerated_gradient
    >>> target = torch.tensor([[1.0, -2.0], [0.5, 3.0]])  # a batch of two problems
    >>> x, its = accelerated_gradient(lambda z: 4 * (z - target), torch.zeros(2, 2), lipschitz=4.0)
    >>> bool(torch.allclose(x, target)), its
    (True, 2)
    """
    if not isinstance(x0, torch.Tensor) or x0.dim() < 1:
        raise TypeError(f"x0 must be a batched tensor [B, ...], got {type(x0).__name__}")
    lipschitz = check_positive(lipschitz, "lipschitz")
    tol = check_positive(tol, "tol", allow_zero=True)
    step = 1.0 / lipschitz
    t = torch.ones(x0.shape[0], device=x0.device, dtype=x0.dtype)
    view = (-1,) + (1,) * (x0.dim() - 1)
    dims = tuple(range(1, x0.dim()))

    def iterate(state, check):
        x, y, t, g = _iteration(grad_fn, *state, step, accelerate, view, dims)
        return (x, y, t), (_converged(g, x, step, tol, reference, dims) if check else None)

    (x, _, _), it = run_iterations(iterate, (x0.clone(), x0.clone(), t), max_iter, check_every, cuda_graph)
    return x, it
