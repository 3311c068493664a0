"""Turn any registered component into a reconstruction method ``(y, physics) -> x``.

- a reconstructor is used as it is;
- a denoiser denoises directly when the physics is :class:`deepinv.physics.Denoising`,
  else it is plugged as :class:`deepinv.optim.PnP` prior into a deepinv optimiser;
- a prior is minimised with its data-fidelity term by a deepinv optimiser.

The optimiser and its parameters come from the component's ``solver`` entry in the
registry (keys ``algorithm``, ``stepsize``, ``lambda_reg``, ``g_param``, ``max_iter``,
``thres_conv``), overridden by the caller.
"""

from __future__ import annotations

import deepinv as dinv
import torch

from deepinv_pnn.problems import noise_level_of
from deepinv_pnn.registry import Component

SOLVER_DEFAULTS = {"algorithm": "PGD", "max_iter": 100, "thres_conv": 1e-5, "lambda_reg": 1.0}


class DenoiserReconstructor(dinv.models.Reconstructor):
    r"""Apply a denoiser to the observation at the physics' noise level.

    :param deepinv.models.Denoiser denoiser: the denoiser.
    :param float sigma: noise level given to the denoiser; ``None`` reads it from the physics.
    """

    def __init__(self, denoiser: torch.nn.Module, sigma: float | None = None):
        super().__init__()
        self.denoiser = denoiser
        self.sigma = sigma

    def forward(self, y: torch.Tensor, physics: dinv.physics.Physics, **kwargs) -> torch.Tensor:
        sigma = self.sigma if self.sigma is not None else noise_level_of(physics)
        return self.denoiser(y, sigma)


def _stepsize(physics: dinv.physics.LinearPhysics, img_shape: tuple, device) -> float:
    """``1 / ||A||^2``: the largest safe gradient step on ``1/2 ||Ax - y||^2``."""
    x0 = torch.randn((1,) + tuple(img_shape), device=device, generator=torch.Generator(device).manual_seed(0))
    norm = float(physics.compute_sqnorm(x0, max_iter=100, tol=1e-3, verbose=False))
    return 1.0 / max(norm, 1e-12)


def make_reconstructor(
    component: Component,
    model: torch.nn.Module,
    physics: dinv.physics.Physics,
    img_shape: tuple,
    **solver_overrides,
) -> dinv.models.Reconstructor:
    r"""A reconstructor ``(y, physics) -> x`` that uses ``model`` as ``component`` prescribes.

    :param Component component: the registry entry of ``model``.
    :param torch.nn.Module model: the built component.
    :param deepinv.physics.Physics physics: the forward operator of the problem.
    :param tuple img_shape: ``(C, H, W)`` of the unknown image.
    :param solver_overrides: overrides of the component's ``solver`` settings.
    """
    if component.kind == "reconstructor":
        return model
    if component.kind == "sampler":
        raise ValueError(f"{component.name} is a sampler, not a reconstruction method")
    settings = {**SOLVER_DEFAULTS, **component.solver, **solver_overrides}
    noise = noise_level_of(physics)
    if component.kind == "denoiser" and isinstance(physics, dinv.physics.Denoising):
        return DenoiserReconstructor(model, sigma=settings.get("denoise_sigma"))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    stepsize = settings.get("stepsize")
    if stepsize is None:
        stepsize = _stepsize(physics, img_shape, device)
    g_param = settings.get("g_param")
    if component.kind == "denoiser":
        prior = dinv.optim.PnP(denoiser=model)
        if g_param is None:
            g_param = max(noise, 1e-3)
    else:
        prior = model
    lambda_reg = settings["lambda_reg"]
    if callable(lambda_reg):
        lambda_reg = lambda_reg(noise)
    algorithm = getattr(dinv.optim, settings["algorithm"])
    solver = algorithm(
        data_fidelity=dinv.optim.L2(),
        prior=prior,
        stepsize=stepsize,
        lambda_reg=lambda_reg,
        g_param=g_param,
        max_iter=settings["max_iter"],
        thres_conv=settings["thres_conv"],
        early_stop=True,
        crit_conv="residual",
    )
    return solver.eval()
