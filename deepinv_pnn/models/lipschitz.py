r"""Empirical certificates: Lipschitz constants and averagedness of operators.

- :func:`jacobian_spectral_norm`: power iteration on :math:`J^\top J` with
  Jacobian-vector and vector-Jacobian products (automatic differentiation),
  a lower bound of the local Lipschitz constant at a point.
- :func:`lipschitz_ratios`: :math:`\|f(x)-f(y)\|/\|x-y\|` on pairs.
- :func:`averagedness_margin`: the defect of the :math:`\theta`-averagedness inequality

  .. math::
      \|f(x)-f(y)\|^2 + \tfrac{1-\theta}{\theta}\|(x-f(x)) - (y-f(y))\|^2 \le \|x-y\|^2

  on pairs; :math:`f` is :math:`\theta`-averaged iff the left side never exceeds the right.

They measure; the bounds of the constructions are ``model.lipschitz_bound()`` and
``model.averaged_constant()``.

:Examples:

>>> import torch
>>> from deepinv_pnn.models.lipschitz import jacobian_spectral_norm
>>> f = lambda x: 0.5 * x
>>> round(jacobian_spectral_norm(f, torch.randn(1, 1, 8, 8)), 4)
0.5
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _batch_norm(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).norm(dim=1).clamp_min(1e-30)


def jacobian_spectral_norm(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    n_iter: int = 50,
    tol: float = 1e-6,
    seed: int = 0,
) -> float:
    r"""Largest singular value of the Jacobian of ``f`` at ``x`` by power iteration on :math:`J^\top J`.

    Jacobian-vector products by the double-vjp trick (:math:`Jv = \partial_u \langle J^\top u, v\rangle`)
    and vector-Jacobian products by reverse mode, on one graph (no dense Jacobian, no
    forward recomputation). ``f`` must act sample-wise; the maximum over the batch is returned.

    :param Callable f: the operator, ``[B, ...] -> [B, ...]``.
    :param torch.Tensor x: the point.
    :param int n_iter: maximum number of iterations.
    :param float tol: relative change that stops the iteration.
    :param int seed: seed of the start vector.
    :return: :math:`\max_b \|J_f(x_b)\|_2`.
    """
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype).to(
        x.device
    )
    v = v / _batch_norm(v).view(-1, *[1] * (x.dim() - 1))
    sigma = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        y = f(xr)
        # J v by the double-vjp trick: J v = d/du <J^T u, v>; one graph, no forward recompute
        u = torch.zeros_like(y, requires_grad=True)
        (jt_u,) = torch.autograd.grad(y, xr, u, create_graph=True)
        for _ in range(n_iter):
            (jv,) = torch.autograd.grad(jt_u, u, v, retain_graph=True)
            (jtjv,) = torch.autograd.grad(y, xr, jv, retain_graph=True)
            new = _batch_norm(jtjv).sqrt()
            v = jtjv / _batch_norm(jtjv).view(-1, *[1] * (x.dim() - 1))
            done = bool(((new - sigma).abs() <= tol * new).all())
            sigma = new.detach()
            if done:
                break
    return float(sigma.max())


@torch.no_grad()
def lipschitz_ratios(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    r"""Ratios :math:`\|f(x_b)-f(y_b)\|/\|x_b-y_b\|` for each pair of the batch."""
    return _batch_norm(f(x) - f(y)) / _batch_norm(x - y)


@torch.no_grad()
def averagedness_margin(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, theta: float
) -> torch.Tensor:
    r"""Relative defect of the :math:`\theta`-averagedness inequality on each pair.

    :return: :math:`\big(\|f(x)-f(y)\|^2 + \tfrac{1-\theta}{\theta}\|r(x)-r(y)\|^2\big)/\|x-y\|^2 - 1`
        with :math:`r = \mathrm{Id} - f`; :math:`\le 0` on every pair when :math:`f` is
        :math:`\theta`-averaged.
    """
    if not 0 < theta < 1:
        raise ValueError(f"theta must lie in (0, 1), got {theta}")
    fx, fy = f(x), f(y)
    d = _batch_norm(x - y) ** 2
    lhs = _batch_norm(fx - fy) ** 2 + (1 - theta) / theta * _batch_norm((x - fx) - (y - fy)) ** 2
    return lhs / d - 1
