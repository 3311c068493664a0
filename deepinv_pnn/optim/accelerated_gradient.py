r"""Accelerated gradient descent with gradient restart, batched: the inner solver of the ridge
regularisers' proximal operator (:meth:`~deepinv_pnn.optim.ridge.RidgeRegularizer.prox`) and
of the WCRR-NN training's denoiser.
"""

from __future__ import annotations

import torch

from deepinv_pnn.validation import check_count, check_positive


def accelerated_gradient(
    grad_fn,
    x0: torch.Tensor,
    lipschitz: float,
    max_iter: int = 1000,
    tol: float = 1e-6,
    accelerate: bool = True,
    reference: torch.Tensor | None = None,
    check_every: int | None = None,
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
    max_iter = check_count(max_iter, "max_iter")
    tol = check_positive(tol, "tol", allow_zero=True)
    if check_every is None:
        check_every = 10 if x0.is_cuda else 1
    check_every = check_count(check_every, "check_every")
    step = 1.0 / lipschitz
    x = x0.clone()
    y = x0.clone()
    t = torch.ones(x.shape[0], device=x.device, dtype=x.dtype)
    view = (-1,) + (1,) * (x.dim() - 1)
    dims = tuple(range(1, x.dim()))
    it = 0
    for it in range(1, max_iter + 1):
        g = grad_fn(y)
        x_new = y - step * g
        check = it % check_every == 0 or it == max_iter
        if check:  # ||x_new - y|| = step ||g||
            res = torch.linalg.vector_norm(g, dim=dims).mul_(step)
            scale = torch.linalg.vector_norm(x_new if reference is None else x_new - reference, dim=dims)
            scale = scale.clamp_min(1e-12)
        if accelerate:
            restart = (g * (x_new - x)).sum(dims) > 0
            t_new = 0.5 * (1 + torch.sqrt(1 + 4 * t**2))
            beta = torch.where(restart, torch.zeros_like(t), (t - 1) / t_new)
            t = torch.where(restart, torch.ones_like(t), t_new)
            y = x_new + beta.view(view) * (x_new - x)
        else:
            y = x_new
        x = x_new
        if check and bool((res <= tol * scale).all()):
            break
    return x, it
