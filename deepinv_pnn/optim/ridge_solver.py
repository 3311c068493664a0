r"""Fast reconstruction with a ridge regulariser and a coarse-to-fine parameter tuner.

:class:`RidgeSolver` minimises

.. math::

    F(x) = \tfrac12\|Ax - y\|^2 + \lambda R_\sigma(x) \quad (+\ \iota_{[a,b]}(x))

for any :class:`deepinv.physics.LinearPhysics` :math:`A` by FISTA (Nesterov's accelerated
gradient; projected onto an optional box) with step :math:`1/L`,
:math:`L = \|A\|^2 + \lambda\operatorname{Lip}(\nabla R_\sigma)`, and adaptive gradient
restart (O'Donoghue & Candès). For a weakly convex :math:`R` (WCRR-NN) :math:`F` may be
nonconvex; the solver is then *monotone*: a step that increases :math:`F` is replaced by
a plain projected gradient step from the last iterate (which decreases :math:`F` since
:math:`\nabla F` is :math:`L`-Lipschitz) and the momentum is reset. It stops when
:math:`\|x_{k+1} - x_k\| \le \text{tol}\,\|x_{k+1}\|`.

:func:`tune_coarse_to_fine` maximises a score (e.g. PSNR on a validation pair) over
positive parameters such as :math:`(\lambda, \sigma)` or :math:`(\lambda, \mu)` on a
multiplicative grid that is refined around the best point.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import deepinv as dinv
import torch

from deepinv_pnn.optim.ridge import RidgeRegularizer
from deepinv_pnn.validation import (
    check_bounds,
    check_count,
    check_image,
    check_image_fits,
    check_positive,
    check_sigma,
    physics_must_fit,
)


class RidgeSolver(dinv.models.Reconstructor):
    r"""FISTA with adaptive restart for :math:`\tfrac12\|Ax-y\|^2 + \lambda R_\sigma(x)`.

    :param RidgeRegularizer prior: the ridge regulariser.
    :param float lambda_reg: the weight :math:`\lambda`.
    :param float g_param: the noise level :math:`\sigma` passed to the prior (``None``: its default).
    :param int max_iter: maximum number of iterations.
    :param float tol: relative tolerance on the iterates.
    :param tuple box: optional bounds ``(a, b)`` (``None`` for an open side).
    :param bool fast: apply :math:`W` as one convolution with its composite kernel during
        the solve (``MultiConv2d.collapse``; same filters, padding applied once); whether it
        is faster depends on the device.

    :Examples:

    >>> import torch, deepinv as dinv
    >>> from deepinv_pnn.optim import ConvexRidgeRegularizer
    >>> from deepinv_pnn.optim.ridge_solver import RidgeSolver
    >>> physics = dinv.physics.BlurFFT((1, 24, 24), filter=dinv.physics.functional.gaussian_blur(sigma=1.0))
    >>> solver = RidgeSolver(ConvexRidgeRegularizer(channels=(1, 4, 8), kernel_size=3), lambda_reg=0.1)
    >>> solver(physics(torch.rand(1, 1, 24, 24)), physics).shape
    torch.Size([1, 1, 24, 24])
    """

    def __init__(
        self,
        prior: RidgeRegularizer,
        lambda_reg: float = 1.0,
        g_param: float | None = None,
        max_iter: int = 2000,
        tol: float = 1e-5,
        box: tuple | None = None,
        fast: bool = False,
    ):
        super().__init__()
        if not isinstance(prior, RidgeRegularizer):
            raise TypeError(f"prior must be a RidgeRegularizer, got {type(prior).__name__}")
        self.prior = prior
        self.lambda_reg = check_positive(lambda_reg, "lambda_reg", allow_zero=True)
        self.g_param = g_param if g_param is None else check_sigma(g_param, "g_param")
        self.max_iter = check_count(max_iter, "max_iter")
        self.tol = check_positive(tol, "tol")
        self.box = _check_box(box)
        self.fast = fast
        self.iterations = 0
        self.objective_history: list[float] = []
        self._sqnorm_cache: dict = {}

    def _sqnorm(self, physics, x: torch.Tensor) -> float:
        key = id(physics)
        if key not in self._sqnorm_cache:
            x0 = torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(0), dtype=x.dtype)[None]
            norm = physics.compute_sqnorm(x0.to(x.device), max_iter=100, tol=1e-5, verbose=False)
            self._sqnorm_cache = {key: float(norm) * 1.01}
        return self._sqnorm_cache[key]

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        if self.box is None:
            return x
        return x.clamp(self.box[0], self.box[1])

    def objective(self, x: torch.Tensor, y: torch.Tensor, physics) -> torch.Tensor:
        """:math:`F(x)` per batch element."""
        fid = 0.5 * (physics.A(x) - y).reshape(x.shape[0], -1).pow(2).sum(-1)
        if self.lambda_reg == 0:
            return fid
        return fid + self.lambda_reg * self.prior.fn(x, self.g_param)

    def forward(self, y: torch.Tensor, physics, x_init: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        r"""Reconstruct from ``y`` (see :meth:`solve`)."""
        previous = self.prior.conv.collapse
        self.prior.conv.collapse = self.fast or previous
        try:
            return self.solve(y, physics, x_init)
        finally:
            self.prior.conv.collapse = previous

    @torch.no_grad()
    def solve(self, y: torch.Tensor, physics, x_init: torch.Tensor | None = None) -> torch.Tensor:
        r"""Reconstruct from ``y``; starts from ``x_init`` or :math:`A^\top y`.

        :param torch.Tensor y: the measurements.
        :param deepinv.physics.LinearPhysics physics: the forward operator.
        :param torch.Tensor x_init: optional initial image.
        :return: the reconstruction (``self.iterations`` holds the iteration count).
        """
        if not isinstance(physics, dinv.physics.LinearPhysics):
            raise TypeError(f"physics must be a deepinv LinearPhysics, got {type(physics).__name__}")
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
        if not torch.isfinite(y).all():
            raise ValueError("y contains NaN or Inf values")
        if x_init is None:
            with physics_must_fit(y, "RidgeSolver"):
                x = physics.A_adjoint(y)
        else:
            x = check_image(x_init, "x_init").clone()
        check_image_fits(y, physics, x, "RidgeSolver", "physics" if x_init is None else "x_init")
        x = self._project(x)
        sigma = self.g_param
        lip = self._sqnorm(physics, x) + self.lambda_reg * self.prior.grad_lipschitz(sigma)
        step = 1.0 / lip
        monotone = self.prior.weak_convexity > 0 and self.lambda_reg > 0

        # the regulariser's gradient with its constants prepared once (sigma is fixed)
        grad_r = self.prior.grad_operator(x, sigma) if self.lambda_reg > 0 else None

        def grad(z):
            g = physics.A_adjoint(physics.A(z) - y)
            if grad_r is not None:
                g = g.add_(grad_r(z), alpha=self.lambda_reg)
            return g

        dims = tuple(range(1, x.dim()))
        view = (-1,) + (1,) * (x.dim() - 1)
        z = x.clone()
        t = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
        f_x = self.objective(x, y, physics) if monotone else None
        self.objective_history = []
        it = 0
        for it in range(1, self.max_iter + 1):
            g = grad(z)
            x_new = self._project(z - step * g)
            if monotone:
                f_new = self.objective(x_new, y, physics)
                worse = f_new > f_x
                if bool(worse.any()):
                    fallback = self._project(x - step * grad(x))
                    x_new = torch.where(worse.view(view), fallback, x_new)
                    f_new = torch.where(worse, self.objective(fallback, y, physics), f_new)
                restart = worse | ((g * (x_new - x)).sum(dims) > 0)
                f_x = f_new
                self.objective_history.append(float(f_x.sum()))
            else:
                restart = (g * (x_new - x)).sum(dims) > 0
            t_new = 0.5 * (1 + torch.sqrt(1 + 4 * t**2))
            beta = torch.where(restart, torch.zeros_like(t), (t - 1) / t_new)
            t = torch.where(restart, torch.ones_like(t), t_new)
            change = torch.linalg.vector_norm(x_new - x, dim=dims)
            scale = torch.linalg.vector_norm(x_new, dim=dims).clamp_min(1e-12)
            z = x_new + beta.view(view) * (x_new - x)
            x = x_new
            if bool((change <= self.tol * scale).all()):
                break
        self.iterations = it
        return x


def _check_box(box: object) -> tuple | None:
    """``box`` unchanged: ``None`` or ``(a, b)``, each bound ``None`` or finite, and ``a <= b``."""
    if box is None:
        return None
    if isinstance(box, (str, bytes)) or not hasattr(box, "__len__") or len(box) != 2:
        raise ValueError(f"box must be None or a pair (a, b), got {box!r}")
    try:
        check_bounds(box[0], box[1], "a", "b")
    except ValueError as err:
        raise ValueError(f"box must be a pair (a, b) of finite bounds or None with a <= b, got {tuple(box)}") from err
    return box


def tune_coarse_to_fine(
    score: Callable[..., float],
    init: tuple,
    step: float = 4.0,
    min_step: float = 1.1,
    max_evals: int = 80,
) -> tuple[tuple, float]:
    r"""Maximise ``score(*params)`` over positive parameters on a refined multiplicative grid.

    Evaluates the :math:`3^d` points :math:`p_i \cdot \text{step}^{\{-1,0,1\}}` around the
    current best; moves to the best neighbour, or, when the centre is best, shrinks the
    step to its square root, until it falls below ``min_step`` (or ``max_evals``
    evaluations). Values are cached.

    :param score: the function to maximise (e.g. validation PSNR).
    :param tuple init: initial positive parameters.
    :param float step: initial multiplicative step (> 1).
    :param float min_step: final resolution (> 1).
    :param int max_evals: evaluation budget.
    :return: the best parameters and their score.

    :Examples:

    >>> from deepinv_pnn.optim.ridge_solver import tune_coarse_to_fine
    >>> best, value = tune_coarse_to_fine(lambda a, b: -(a - 3) ** 2 - (b - 0.5) ** 2, (1.0, 1.0))
    >>> abs(best[0] - 3) < 0.5, abs(best[1] - 0.5) < 0.1
    (True, True)
    """
    if step <= 1 or min_step <= 1:
        raise ValueError(f"step and min_step must be > 1, got {step}, {min_step}")
    center = tuple(check_positive(p, "init") for p in init)
    cache: dict = {}

    def evaluate(p):
        key = tuple(round(math.log(v), 9) for v in p)
        if key not in cache:
            cache[key] = (p, float(score(*p)))
        return cache[key][1]

    best_value = evaluate(center)
    while step >= min_step and len(cache) < max_evals:
        candidates = []
        for exps in itertools.product((-1, 0, 1), repeat=len(center)):
            p = tuple(c * step**e for c, e in zip(center, exps))
            candidates.append((evaluate(p), p))
            if len(cache) >= max_evals:
                break
        value, p = max(candidates, key=lambda vp: vp[0])
        if value > best_value + 1e-12:
            best_value, center = value, p
        else:
            step = math.sqrt(step)
    return center, best_value
