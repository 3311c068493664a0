r"""One-shot tuning of the plug-and-play regularisation parameter for a new noise level.

PnP forward-backward with an averaged denoiser :math:`D_\sigma` has the fixed-point map
:math:`T(x, \sigma) = D_\sigma(x - \gamma\nabla f(x))`. We want the noise level
:math:`\sigma` of the denoiser (the regularisation strength; one network serves every
level by the scaling trick) whose fixed point :math:`x^*(\sigma)` is closest to a
validation image: :math:`\min_\sigma \ell(x^*(\sigma)) = \tfrac12\|x^*(\sigma) - x_{val}\|^2`.

The one-shot (piggy-back) method updates the state, the adjoint and the parameter
together instead of solving the fixed point to convergence for every :math:`\sigma`
(Griewank & Faure; Bosse, Gauger, Griewank et al.):

.. math::
    x_{k+1} = T(x_k, \sigma_k), \quad
    p_{k+1} = \delta\,\partial_x T(x_k, \sigma_k)^\top p_k + \nabla\ell(x_k), \quad
    \rho_{k+1} = \rho_k - \eta\,\mathrm{Adam}\big(\partial_\rho T(x_k, \sigma_k)^\top p_k\big),

with :math:`\sigma = e^\rho > 0`. Both vector-Jacobian products come from one backward
pass. :math:`T` is averaged, not contractive, so the adjoint iteration is damped by
:math:`\delta < 1` (a Neumann series of :math:`(I - \delta\,\partial_x T^\top)^{-1}`).

:Examples:

>>> import torch
>>> from deepinv_pnn.models.pnn import ConvPNN
>>> from deepinv_pnn.problems import make_physics
>>> from deepinv_pnn.training.one_shot import one_shot_tune
>>> physics = make_physics("deblur", (1, 16, 16))
>>> x = torch.rand(1, 1, 16, 16); y = physics(x)
>>> result = one_shot_tune(ConvPNN(width=8, state_channels=2, n_layers=2), physics, y, x, sigma0=0.05, n_iter=5)
>>> result["sigma"] > 0
True
"""

from __future__ import annotations

import math

import deepinv as dinv
import torch

from deepinv_pnn.optim.pnp_steps import check_pnp_parameters, data_fidelity_lipschitz
from deepinv_pnn.training.pnp_objective import fbs_step
from deepinv_pnn.validation import check_image, check_positive


def one_shot_tune(
    denoiser: torch.nn.Module,
    physics: dinv.physics.LinearPhysics,
    y_val: torch.Tensor,
    x_val: torch.Tensor,
    sigma0: float = 0.03,
    stepsize: float | None = None,
    n_iter: int = 200,
    lr: float = 0.05,
    damping: float = 0.95,
) -> dict:
    r"""Tune the denoiser's noise level of PnP-PGD on ``(y_val, x_val)`` by one-shot optimisation.

    :param denoiser: an averaged denoiser ``D(x, sigma)`` (``averaged_constant()``), e.g. ConvPNN.
    :param physics: the linear forward operator of the new problem.
    :param torch.Tensor y_val: validation measurements.
    :param torch.Tensor x_val: the matching ground truth ``[B, C, H, W]``.
    :param float sigma0: initial noise level.
    :param float stepsize: data step :math:`\gamma`; default ``0.99 / L`` with :math:`L` by autodiff.
    :param int n_iter: one-shot iterations.
    :param float lr: Adam step on :math:`\rho = \log\sigma`.
    :param float damping: :math:`\delta` of the adjoint iteration, in :math:`(0, 1]`.
    :return: dict with ``sigma`` (tuned), ``stepsize``, ``x`` (last state), ``history``
        (list of ``(sigma, loss)``).
    """
    check_image(x_val, "x_val")
    check_image(y_val, "y_val")
    sigma0 = check_positive(sigma0, "sigma0")
    if not 0 < damping <= 1:
        raise ValueError(f"damping must lie in (0, 1], got {damping}")
    lipschitz = data_fidelity_lipschitz(physics, tuple(x_val.shape[1:])) * 1.01
    if stepsize is None:
        stepsize = 0.99 / lipschitz
    check_pnp_parameters(denoiser, "PGD", stepsize, lipschitz)
    flags = [q.requires_grad for q in denoiser.parameters()]
    for q in denoiser.parameters():
        q.requires_grad_(False)
    try:
        return _iterate(denoiser, physics, y_val, x_val, sigma0, stepsize, n_iter, lr, damping)
    finally:
        for q, flag in zip(denoiser.parameters(), flags):
            q.requires_grad_(flag)


def _iterate(denoiser, physics, y_val, x_val, sigma0, stepsize, n_iter, lr, damping) -> dict:
    rho = torch.tensor(math.log(sigma0), dtype=x_val.dtype, device=x_val.device, requires_grad=True)
    opt = torch.optim.Adam([rho], lr=lr)
    x = physics.A_adjoint(y_val).detach()
    p = torch.zeros_like(x)
    history = []
    for _ in range(n_iter):
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            out = fbs_step(denoiser, xr, y_val, physics, rho.exp(), stepsize)
            jx, jrho = torch.autograd.grad(out, (xr, rho), p)
        loss_grad = x - x_val
        history.append((float(rho.detach().exp()), float(0.5 * (loss_grad**2).sum())))
        opt.zero_grad()
        rho.grad = jrho.detach().clone()
        opt.step()
        p = damping * jx.detach() + loss_grad
        x = out.detach()
    return {"sigma": float(rho.detach().exp()), "stepsize": stepsize, "x": x, "history": history}
