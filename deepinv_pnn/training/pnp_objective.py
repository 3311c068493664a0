r"""Problem-aware training of an averaged denoiser: the loss of the PnP forward-backward fixed point.

For a linear problem :math:`y = Ax + e` and an averaged denoiser :math:`D_\sigma`,
plug-and-play forward-backward (PnP-FBS, ``deepinv.optim.PGD`` with a PnP prior) iterates

.. math::
    z_{k+1} = T(z_k), \qquad T(z) = D_\sigma\big(z - \gamma A^\top(Az - y)\big),
    \quad 0 < \gamma < 2/\|A\|^2,

and converges to a fixed point :math:`z^\star` of :math:`T` (Hertrich, Neumayer, Steidl,
LAA 2021). Training on denoising only makes :math:`D_\sigma` good at denoising; here the
denoiser's weights :math:`\theta` are fitted to what PnP returns for the problem,
:math:`\min_\theta \mathbb E\,\|z^\star_\theta(y) - x\|^2`, by Jacobian-free
backpropagation (Fung et al., AAAI 2022): :math:`K` iterations without a graph, then
one differentiable application of :math:`T`,

.. math::
    \ell(\theta) = \big\|T_\theta(\operatorname{sg}(z_K)) - x\big\|^2 .

The network's constraints hold by construction (Parseval convolutions, relaxation
:math:`t < (L+1)/L`), so whatever the optimiser does, the trained denoiser is still
averaged and PnP-FBS with it still converges for every :math:`\gamma < 2/\|A\|^2`; the
training changes which fixed point it converges to, not whether it converges.

:Examples:

>>> import torch
>>> from deepinv_pnn.models.pnn import ConvPNN
>>> from deepinv_pnn.problems import make_physics
>>> from deepinv_pnn.training.pnp_objective import fixed_point_loss
>>> model = ConvPNN(width=8, state_channels=2, n_layers=2, sigma0=0.01)
>>> physics = make_physics("deblur", (1, 16, 16), noise_level=0.0)
>>> x = torch.rand(2, 1, 16, 16); y = physics.A(x) + 0.01 * torch.randn_like(x)
>>> loss = fixed_point_loss(model, x, y, physics, sigma=0.008, stepsize=1.98, n_iter=3)
>>> loss.backward(); model.biases.grad is not None
True
"""

from __future__ import annotations

import deepinv as dinv
import torch

from deepinv_pnn.validation import check_positive

__all__ = ["fbs_step", "fixed_point_loss", "pnp_deblur_psnr", "pnp_fbs", "tikhonov_start"]


def fbs_step(model, z, y, physics, sigma, stepsize):
    r"""One PnP-FBS step :math:`D_\sigma(z - \gamma A^\top(Az - y))` (with the caller's graph, if any)."""
    return model(z - stepsize * physics.A_adjoint(physics.A(z) - y), sigma)


@torch.no_grad()
def pnp_fbs(
    model: torch.nn.Module,
    y: torch.Tensor,
    physics: dinv.physics.LinearPhysics,
    sigma: float,
    stepsize: float,
    n_iter: int,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""``n_iter`` iterations of PnP-FBS :math:`z \mapsto D_\sigma(z - \gamma A^\top(Az - y))`
    from ``start`` (default :math:`y`), without a graph.

    :param model: the denoiser ``model(x, sigma)``.
    :param torch.Tensor y: the measurements (image-shaped: deblurring, inpainting, denoising).
    :param physics: the linear forward operator.
    :param float sigma: the denoiser's noise level (its strength).
    :param float stepsize: :math:`\gamma`, with :math:`\gamma\|A\|^2 < 2` for convergence.
    :param int n_iter: number of iterations (>= 0).
    :param torch.Tensor start: the first iterate.
    """
    if int(n_iter) != n_iter or n_iter < 0:
        raise ValueError(f"n_iter must be a non-negative integer, got {n_iter}")
    z = (y if start is None else start).clone()
    for _ in range(int(n_iter)):
        z = fbs_step(model, z, y, physics, sigma, stepsize)
    return z


def fixed_point_loss(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    physics: dinv.physics.LinearPhysics,
    sigma: float,
    stepsize: float,
    n_iter: int,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Mean squared error of one differentiable PnP-FBS step after ``n_iter`` steps without a
    graph (Jacobian-free backpropagation of the fixed-point loss).

    The iteration converges from any first iterate (to the same limit when the fixed point
    is unique), so a cheap estimate closer to it than :math:`y`, e.g. :func:`tikhonov_start`,
    gives a better approximation for the same ``n_iter``.

    :param model: the denoiser ``model(x, sigma)``, trained through this loss.
    :param torch.Tensor x: the ground truth ``[B, C, H, W]``.
    :param torch.Tensor y: its measurements ``physics.A(x) + noise``.
    :param physics: the linear forward operator (with :math:`\|A\| \le 1` for ``stepsize`` < 2).
    :param float sigma: the denoiser's noise level during PnP.
    :param float stepsize: :math:`\gamma`.
    :param int n_iter: iterations :math:`K` before the differentiable one.
    :param torch.Tensor start: the first iterate (default :math:`y`).
    :return: the 0-d loss :math:`\operatorname{mean}\,(T(z_K) - x)^2`.
    """
    check_positive(sigma, "sigma")
    check_positive(stepsize, "stepsize")
    z = pnp_fbs(model, y, physics, sigma, stepsize, n_iter, start)
    return torch.mean((fbs_step(model, z, y, physics, sigma, stepsize) - x) ** 2)


@torch.no_grad()
def tikhonov_start(y: torch.Tensor, physics: dinv.physics.LinearPhysics, weight: float = 0.02) -> torch.Tensor:
    r"""The Tikhonov estimate :math:`\operatorname{argmin}_x \tfrac12\|Ax - y\|^2 + \tfrac{w}{2}\|x - y\|^2`
    (``physics.prox_l2``; closed form in Fourier for ``BlurFFT``), a first PnP iterate.

    :param torch.Tensor y: the measurements (image-shaped).
    :param physics: the linear forward operator.
    :param float weight: :math:`w > 0`.
    """
    return physics.prox_l2(y, y, 1.0 / check_positive(weight, "weight"))


@torch.no_grad()
def pnp_deblur_psnr(
    model: torch.nn.Module,
    images: list[torch.Tensor],
    sigma: float,
    stepsize: float,
    n_iter: int,
    noise_level: float = 0.01,
    seed: int = 1234,
) -> float:
    r"""Mean PSNR (dB, peak 1) of PnP-FBS after ``n_iter`` iterations from :math:`y` on the
    package's ``deblur`` problem (circular Gaussian blur, std 1.6) with seeded noise.

    :param model: the denoiser.
    :param list images: ``[C, H, W]`` ground truths.
    :param float sigma: the denoiser's noise level.
    :param float stepsize: :math:`\gamma`.
    :param int n_iter: PnP iterations.
    :param float noise_level: standard deviation of the measurement noise.
    :param int seed: seed of the noise.
    """
    from deepinv_pnn.problems import make_physics

    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    psnrs = []
    for im in images:
        x = im[None]
        physics = make_physics("deblur", tuple(im.shape), noise_level=0.0, device=x.device)
        y = physics.A(x) + noise_level * torch.randn(x.shape, generator=g).to(x.device)
        z = pnp_fbs(model, y, physics, sigma, stepsize, n_iter)
        psnrs.append(float(-10 * torch.log10(torch.mean((z - x) ** 2).clamp_min(1e-20))))
    model.train(was_training)
    return sum(psnrs) / max(len(psnrs), 1)
