r"""Plug-and-play parameters inside the convergence conditions of an averaged denoiser.

Let :math:`D` be :math:`\theta`-averaged (a PNN: ``denoiser.averaged_constant()``) and
:math:`f = \tfrac12\|Ax-y\|^2` with :math:`\nabla f` :math:`L`-Lipschitz. Then

- **PGD / forward-backward**: :math:`x^+ = D(x - \gamma\nabla f(x))`. For
  :math:`0 < \gamma < 2/L`, :math:`\mathrm{Id} - \gamma\nabla f` is
  :math:`\gamma L/2`-averaged, so the composition is averaged and the iterates converge
  to a fixed point when one exists (Krasnosel'skii-Mann; Combettes & Yamada 2015). Any
  :math:`\theta < 1`.
- **HQS**: :math:`x^+ = D(\mathrm{prox}_{\gamma f}(x))`, a composition of a firmly
  nonexpansive and an averaged map: converges for every :math:`\gamma > 0`.
- **DRS / ADMM**: the reflection :math:`2D - \mathrm{Id}` must be nonexpansive, i.e.
  :math:`\theta \le 1/2` (:math:`D` firmly nonexpansive). A PNN with larger
  :math:`\theta` is relaxed to :math:`D' = (1-s)\mathrm{Id} + sD`, :math:`s = 1/(2\theta)`
  (:class:`FirmlyNonexpansive`), which is firmly nonexpansive.

:math:`L` is estimated by algorithmic differentiation: power iteration with
Hessian-vector products of :math:`f` (:func:`gradient_lipschitz`), with a safety
factor.

**Preconditioners.** :math:`D` is averaged in the Euclidean metric, so a preconditioner
keeps the guarantee only when it leaves that metric alone or acts on the data step alone:

- the scalar step :math:`\gamma \in (0, 2/L)` of PGD (``stepsize``; default
  :math:`0.99/L`, a firmly nonexpansive gradient step; steps up to :math:`2/L` weigh the
  data more per iteration: ``benchmarks/bench_pnn_pnp_deblur.py`` uses :math:`1.98/L`);
- the scaling trick :math:`D_\sigma(x) = c + s^{-1}D(s(x-c))` (``sigma``), a scalar
  conjugation of :math:`D` that keeps its constant, and orthogonal changes of variables
  :math:`Q^\top D(Q\,\cdot)` (the opponent-colour basis of a gray ConvPNN);
- the Fourier preconditioner :math:`P_\gamma = (\mathrm{Id} + \gamma A^\top A)^{-1}` of
  HQS: :math:`x - \gamma P_\gamma\nabla f(x) = \mathrm{prox}_{\gamma f}(x)` is firmly
  nonexpansive for every :math:`\gamma > 0`, so PnP-HQS is PnP-FBS with this
  preconditioner, and it removes the bound :math:`\gamma < 2/L` (exact in Fourier for a
  circulant :math:`A`, e.g. ``BlurFFT``).

A diagonal (or any other) :math:`P` in :math:`D(x - \gamma P^{-1}\nabla f(x))` is not offered:
the gradient step is then averaged in the :math:`P`-metric, :math:`D` only in the Euclidean
one, and their composition has no certificate.

:Examples:

>>> import torch
>>> from deepinv_pnn.models.pnn import ConvPNN
>>> from deepinv_pnn.problems import make_physics
>>> from deepinv_pnn.optim.pnp_steps import pnp_parameters
>>> physics = make_physics("deblur", (1, 16, 16))
>>> params = pnp_parameters(ConvPNN(width=8, state_channels=2, n_layers=2), physics, (1, 16, 16), "PGD", sigma=0.02)
>>> 0.9 < params["stepsize"] * params["lipschitz"] < 1.1
True
"""

from __future__ import annotations

from collections.abc import Callable

import deepinv as dinv
import torch

from deepinv_pnn.validation import check_count, check_img_shape, check_positive

ALGORITHMS = ("PGD", "HQS", "DRS", "ADMM")


def gradient_lipschitz(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    n_iter: int = 100,
    tol: float = 1e-6,
    seed: int = 0,
) -> float:
    r"""Largest eigenvalue of the Hessian of ``fn`` at ``x0`` by Hessian-vector products.

    For a quadratic :math:`f` this is the Lipschitz constant of :math:`\nabla f`
    (e.g. :math:`\|A\|^2` for :math:`\tfrac12\|Ax-y\|^2`); for a convex :math:`f` it is a
    local estimate. ``fn`` returns a scalar or a per-sample vector (summed).
    """
    v = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed), dtype=x0.dtype).to(
        x0.device
    )
    v = v / v.norm()
    value = 0.0
    with torch.enable_grad():
        x = x0.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(x).sum(), x, create_graph=True)
        for _ in range(n_iter):
            (hv,) = torch.autograd.grad(g, x, v, retain_graph=True)
            new = float((hv * v).sum())
            v = hv / hv.norm().clamp_min(1e-30)
            if abs(new - value) <= tol * abs(new):
                value = new
                break
            value = new
    return value


def _check_problem(physics: object, img_shape: object) -> tuple[int, int, int]:
    """Check the operator and image shape of a PnP problem; return ``img_shape`` as ints."""
    if not isinstance(physics, dinv.physics.LinearPhysics):
        raise TypeError(
            "physics must be a deepinv.physics.LinearPhysics (the step-size bound needs a linear "
            f"operator), got {type(physics).__name__}"
        )
    return check_img_shape(img_shape)


def data_fidelity_lipschitz(
    physics: dinv.physics.LinearPhysics, img_shape: tuple, seed: int = 0
) -> float:
    r""":math:`L = \|A\|^2`, the Lipschitz constant of :math:`\nabla\tfrac12\|Ax - y\|^2`, by autodiff.

    :param physics: the linear forward operator.
    :param tuple img_shape: ``(C, H, W)`` of the images ``physics`` acts on.
    :param int seed: seed of the power iteration.
    :raises TypeError: if ``physics`` is not a ``LinearPhysics``.
    :raises ValueError: if ``img_shape`` is not ``(C, H, W)`` or does not fit ``physics``.
    """
    img_shape = _check_problem(physics, img_shape)
    x0 = torch.zeros((1,) + img_shape)
    try:
        y = physics.A(x0)
    except RuntimeError as err:
        raise ValueError(
            f"physics does not fit images of shape img_shape={img_shape} (built for another "
            f"image size?): {err}"
        ) from err

    def fn(x):
        return 0.5 * ((physics.A(x) - y) ** 2).sum()

    return gradient_lipschitz(fn, x0 + 0.1, seed=seed)


class FirmlyNonexpansive(dinv.models.Denoiser):
    r"""Relaxation :math:`D' = (1-s)\mathrm{Id} + sD`, :math:`s = 1/(2\theta)`, of a :math:`\theta`-averaged denoiser.

    :math:`D'` is :math:`1/2`-averaged (firmly nonexpansive), what PnP-DRS/ADMM need.

    :param denoiser: a denoiser with ``averaged_constant()``.
    """

    def __init__(self, denoiser: torch.nn.Module):
        super().__init__()
        theta = _theta(denoiser)
        self.denoiser = denoiser
        self.s = min(1.0, 1.0 / (2.0 * theta))

    def forward(self, x: torch.Tensor, sigma=None, **kwargs) -> torch.Tensor:
        return x + self.s * (self.denoiser(x, sigma) - x)

    def averaged_constant(self) -> float:
        return self.s * _theta(self.denoiser)


def _theta(denoiser) -> float:
    if not hasattr(denoiser, "averaged_constant"):
        raise ValueError(
            f"denoiser ({type(denoiser).__name__}) has no averaged_constant(): no convergence certificate"
        )
    theta = float(denoiser.averaged_constant())
    if not 0 < theta < 1:
        raise ValueError(f"denoiser is not averaged: averaged_constant() = {theta} not in (0, 1)")
    return theta


def check_pnp_parameters(
    denoiser: torch.nn.Module, algorithm: str, stepsize: float, lipschitz: float | None = None
) -> None:
    r"""Raise ``ValueError`` when ``(algorithm, stepsize)`` voids the convergence guarantee of ``denoiser``.

    :param denoiser: the plugged denoiser (with ``averaged_constant()``).
    :param str algorithm: ``PGD``, ``HQS``, ``DRS`` or ``ADMM``.
    :param float stepsize: the data step :math:`\gamma`.
    :param float lipschitz: :math:`L` of :math:`\nabla f` (needed by ``PGD``).
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    stepsize = check_positive(stepsize, "stepsize")
    theta = _theta(denoiser)
    if algorithm == "PGD":
        if lipschitz is None:
            raise ValueError("PGD needs lipschitz (the Lipschitz constant of the data gradient)")
        if stepsize * lipschitz >= 2:
            raise ValueError(
                f"stepsize must be < 2/L = {2 / lipschitz:.4g} for PnP-PGD (L = {lipschitz:.4g}), got {stepsize}"
            )
    if algorithm in ("DRS", "ADMM") and theta > 0.5 + 1e-9:
        raise ValueError(
            f"PnP-{algorithm} needs a firmly nonexpansive denoiser (averaged constant <= 1/2), got "
            f"{theta:.3f}: wrap it in FirmlyNonexpansive(denoiser) or use relax=True"
        )


def pnp_parameters(
    denoiser: torch.nn.Module,
    physics: dinv.physics.LinearPhysics,
    img_shape: tuple,
    algorithm: str = "PGD",
    sigma: float = 0.02,
    stepsize: float | None = None,
    safety: float = 0.99,
) -> dict:
    r"""Parameters for ``deepinv.optim.<algorithm>(..., **params)`` inside the convergence conditions.

    :param denoiser: an averaged denoiser (``averaged_constant()``), e.g. a ConvPNN.
    :param physics: the linear forward operator.
    :param tuple img_shape: ``(C, H, W)``.
    :param str algorithm: ``PGD``, ``HQS``, ``DRS`` or ``ADMM``.
    :param float sigma: the denoiser's noise level (the regularisation strength; the scaling
        trick keeps the certificate for every value).
    :param float stepsize: the data step; default ``safety / L`` (PGD) or 1 (others).
    :param float safety: fraction of the limit used for the default step.
    :return: dict with ``stepsize``, ``lambda_reg`` (1), ``g_param`` (``sigma``) and ``lipschitz``.
    :raises ValueError: if the parameters void the guarantee (see :func:`check_pnp_parameters`).
    """
    sigma = check_positive(sigma, "sigma")
    lipschitz = data_fidelity_lipschitz(physics, img_shape) * 1.01  # margin for the estimate
    if stepsize is None:
        stepsize = safety / lipschitz if algorithm == "PGD" else 1.0
    check_pnp_parameters(denoiser, algorithm, stepsize, lipschitz)
    return {"stepsize": stepsize, "lambda_reg": 1.0, "g_param": sigma, "lipschitz": lipschitz}


def pnp_solver(
    denoiser: torch.nn.Module,
    physics: dinv.physics.LinearPhysics,
    img_shape: tuple,
    algorithm: str = "PGD",
    sigma: float = 0.02,
    stepsize: float | None = None,
    relax: bool = False,
    max_iter: int = 300,
    thres_conv: float = 1e-5,
    **kwargs,
) -> dinv.optim.BaseOptim:
    r"""A deepinv PnP solver whose parameters keep the convergence guarantee.

    :param bool relax: for DRS/ADMM, wrap a denoiser that is not firmly nonexpansive in
        :class:`FirmlyNonexpansive` instead of refusing it.
    :param int max_iter: maximum number of iterations (>= 1).
    :param float thres_conv: residual below which the iteration stops (>= 0).
    :return: ``deepinv.optim.<algorithm>`` in eval mode (``crit_conv="residual"``).
    """
    max_iter = check_count(max_iter, "max_iter")
    thres_conv = check_positive(thres_conv, "thres_conv", allow_zero=True)
    if relax and algorithm in ("DRS", "ADMM") and _theta(denoiser) > 0.5:
        denoiser = FirmlyNonexpansive(denoiser)
    params = pnp_parameters(denoiser, physics, img_shape, algorithm, sigma, stepsize)
    params.pop("lipschitz")
    solver = getattr(dinv.optim, algorithm)(
        data_fidelity=dinv.optim.L2(),
        prior=dinv.optim.PnP(denoiser=denoiser),
        max_iter=max_iter,
        thres_conv=thres_conv,
        crit_conv="residual",
        early_stop=True,
        **params,
        **kwargs,
    )
    return solver.eval()
