r"""Unrolled primal-dual hybrid gradient (Chambolle-Pock) for weighted-TV reconstruction.

Solves, by :math:`T` iterations whose step sizes are learnable,

.. math::

    \min_x \tfrac12\|Ax - y\|_2^2 + \|\Lambda \odot \nabla x\|_1
    = \min_x F(Kx), \qquad K = \begin{bmatrix} A \\ \nabla \end{bmatrix},

with the relaxed primal-dual iteration of Condat (J. Optim. Theory Appl. 2013) (dual
variables :math:`p` for the data term, :math:`q` for the gradient):

.. math::

    \tilde x &= x - \tau (A^\top p + \nabla^\top q) \\
    \tilde p &= \big(p + \sigma (A(2\tilde x - x) - y)\big) / (1 + \sigma) \\
    \tilde q &= \Pi_{\{|q_i| \le \Lambda_i\}}\big(q + \sigma \nabla(2\tilde x - x)\big) \\
    (x, p, q) &\leftarrow (x, p, q) + \rho\,\big((\tilde x, \tilde p, \tilde q) - (x, p, q)\big)

It converges for any :math:`\rho \in (0, 2)` when :math:`\sigma\tau\|K\|^2 < 1`. Both
hold **by construction**: with :math:`L^2 = m\,\|A\|^2 + \|\nabla\|^2 \ge \|K\|^2`
(:math:`\|A\|^2` from :meth:`deepinv.physics.LinearPhysics.compute_sqnorm`, a
safety margin :math:`m > 1` for the power iteration, :math:`\|\nabla\|^2 \le 8`),

.. math::

    \tau = s\, e^{t} / L, \quad \sigma = s\, e^{-t} / L, \quad
    s = s_{\min} + (s_{\max} - s_{\min})\operatorname{sigmoid}(a), \quad
    \rho = \rho_{\min} + (2 - 2\rho_{\min})\operatorname{sigmoid}(r),

with :math:`0 < s_{\min} < s_{\max} < 1`, :math:`|t| \le 10` and
:math:`\rho_{\min} = 0.02`, so :math:`\sigma\tau L^2 = s^2 < 1` and
:math:`\rho \in [0.02, 1.98]` for every value (even an extreme one) of the learnable
:math:`a, t, r`.
With ``data_term="prox"`` the data term is not dualised: :math:`K = \nabla` and the
primal step is the proximal operator of :math:`f = \tfrac12\|A\cdot - y\|^2`
(:meth:`deepinv.physics.LinearPhysics.prox_l2`: closed form for
:class:`deepinv.physics.BlurFFT`, denoising, inpainting and single-coil MRI, conjugate
gradient otherwise),

.. math::

    \tilde x = \operatorname{prox}_{\tau f}(x - \tau\nabla^\top q), \qquad
    \tilde q = \Pi_{\{|q_i| \le \Lambda_i\}}\big(q + \sigma \nabla(2\tilde x - x)\big),

with the same relaxation and :math:`L^2 = \|\nabla\|^2 \le 8`, so the steps no longer
depend on :math:`\|A\|`. For deblurring with a small :math:`\Lambda` it needs several times
fewer iterations (the dual variable of :math:`A` converges slowly when :math:`A^\top A` is
ill-conditioned).
The steps do not depend on the iteration, so a model trained with :math:`T`
iterations can run with more at test time, approaching the minimiser of the
variational problem as :math:`T \to \infty`.
"""

from __future__ import annotations

import math
import warnings
import weakref

import deepinv as dinv
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from deepinv_pnn.optim.weighted_tv import (
    NABLA_SQNORM,
    expand_map,
    nabla,
    nabla_adjoint,
    project_dual_ball,
)
from deepinv_pnn.validation import (
    check_count,
    check_image,
    check_image_fits,
    check_positive,
    check_sigma,
    physics_must_fit,
)

#: factor applied to the power-iteration estimate of :math:`\|A\|^2` (it can only underestimate).
SQNORM_MARGIN = 1.02
#: bounds of :math:`s` and :math:`\rho` (keep steps and relaxation away from 0 and 2).
S_MIN = 0.01
RHO_MIN = 0.02
#: how the data term enters: dualised (``K = [A; grad]``) or through ``physics.prox_l2`` (``K = grad``).
DATA_TERMS = ("dual", "prox")


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class UnrolledPDHG(nn.Module):
    r"""Unrolled relaxed Chambolle-Pock on :math:`K = [A; \nabla]` (or :math:`K = \nabla` with the
    data prox) with learnable, always-convergent steps.

    :param int n_iter: default number of iterations :math:`T`.
    :param bool isotropic: isotropic (default) or anisotropic TV.
    :param bool learn_steps: make :math:`s` and the ratio :math:`e^{2t} = \tau/\sigma` learnable.
    :param bool learn_relaxation: make the over-relaxation :math:`\rho` learnable.
    :param float s_init: initial :math:`s = \sqrt{\sigma\tau}\,L`.
    :param float rho_init: initial over-relaxation :math:`\rho \in (0, 2)`.
    :param float log_ratio_init: initial :math:`t`, i.e. :math:`\tau/\sigma = e^{2t}`.
    :param float s_max: upper bound of :math:`s` (< 1).
    :param bool checkpointing: trade compute for memory with gradient checkpointing
        (segments of about :math:`\sqrt{T}` iterations are recomputed in the backward pass).
    :param bool cache_sqnorm: remember :math:`\|A\|^2` per physics object (correct as long
        as the physics' parameters do not change; pass ``op_sqnorm`` otherwise).
    :param str data_term: ``"dual"`` (:math:`K = [A; \nabla]`, needs only :math:`A` and
        :math:`A^\top`) or ``"prox"`` (:math:`K = \nabla`, the data term through
        ``physics.prox_l2``).

    :Examples:

    >>> import torch, deepinv as dinv
    >>> from deepinv_pnn.models.unrolled_pdhg import UnrolledPDHG
    >>> physics = dinv.physics.Denoising()
    >>> y = torch.rand(1, 1, 16, 16)
    >>> UnrolledPDHG(n_iter=20)(y, physics, lambda_map=0.05 * torch.ones_like(y)).shape
    torch.Size([1, 1, 16, 16])
    """

    def __init__(
        self,
        n_iter: int = 64,
        isotropic: bool = True,
        learn_steps: bool = True,
        learn_relaxation: bool = True,
        s_init: float = 0.95,
        rho_init: float = 1.0,
        log_ratio_init: float = 0.0,
        s_max: float = 0.999,
        checkpointing: bool = False,
        cache_sqnorm: bool = True,
        data_term: str = "dual",
    ):
        super().__init__()
        if data_term not in DATA_TERMS:
            raise ValueError(f"data_term must be one of {DATA_TERMS}, got {data_term!r}")
        self.data_term = data_term
        n_iter = check_count(n_iter, "n_iter")
        if not math.isfinite(float(log_ratio_init)):
            raise ValueError(f"log_ratio_init must be finite, got {log_ratio_init}")
        if not 0 < s_max < 1:
            raise ValueError(f"s_max must be in (0, 1), got {s_max}")
        if not 0 < s_init < s_max:
            raise ValueError(f"s_init must be in (0, s_max={s_max}), got {s_init}")
        if not 0 < rho_init < 2:
            raise ValueError(f"rho_init must be in (0, 2), got {rho_init}")
        self.n_iter = int(n_iter)
        self.isotropic = bool(isotropic)
        self.s_max = float(s_max)
        self.checkpointing = bool(checkpointing)
        self.cache_sqnorm = bool(cache_sqnorm)
        s_frac = (s_init - S_MIN) / (s_max - S_MIN)
        rho_frac = (rho_init - RHO_MIN) / (2 - 2 * RHO_MIN)
        if not (0 < s_frac < 1 and 0 < rho_frac < 1):
            raise ValueError(
                f"s_init must be in ({S_MIN}, s_max) and rho_init in ({RHO_MIN}, {2 - RHO_MIN}), "
                f"got {s_init}, {rho_init}"
            )
        self.step_logit = nn.Parameter(torch.tensor(_logit(s_frac)), requires_grad=learn_steps)
        self.log_ratio = nn.Parameter(torch.tensor(float(log_ratio_init)), requires_grad=learn_steps)
        self.relax_logit = nn.Parameter(torch.tensor(_logit(rho_frac)), requires_grad=learn_relaxation)
        self._sqnorms: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def operator_sqnorm(self, physics: dinv.physics.LinearPhysics, x_like: torch.Tensor) -> float:
        r""":math:`\|A\|^2` of the physics by power iteration (cached per physics object)."""
        if self.cache_sqnorm and physics in self._sqnorms:
            return self._sqnorms[physics]
        if isinstance(physics, dinv.physics.Denoising):
            value = 1.0
        else:
            generator = torch.Generator(device=x_like.device).manual_seed(0)
            x0 = torch.randn(x_like[:1].shape, generator=generator, device=x_like.device, dtype=x_like.dtype)
            # the power iteration can only underestimate; SQNORM_MARGIN covers a slow convergence
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = float(physics.compute_sqnorm(x0, max_iter=100, tol=1e-5, verbose=False))
        if self.cache_sqnorm:
            self._sqnorms[physics] = value
        return value

    def parameters_pdhg(self, op_sqnorm: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""The step sizes :math:`(\tau, \sigma)` and over-relaxation :math:`\rho` for :math:`\|A\|^2`.

        :return: ``(tau, sigma, rho)`` as 0-d tensors, with
            :math:`\sigma\tau(\|A\|^2 + 8) < 1` (``data_term="prox"``: :math:`8\sigma\tau < 1`,
            whatever ``op_sqnorm``) and :math:`0 < \rho < 2`, bounded away from the limits.
        """
        data_sqnorm = SQNORM_MARGIN * float(op_sqnorm) if self.data_term == "dual" else 0.0
        lipschitz = math.sqrt(data_sqnorm + NABLA_SQNORM)
        s = S_MIN + (self.s_max - S_MIN) * torch.sigmoid(self.step_logit)
        ratio = torch.exp(self.log_ratio.clamp(-10.0, 10.0))
        tau = s * ratio / lipschitz
        sigma = s / ratio / lipschitz
        rho = RHO_MIN + (2.0 - 2.0 * RHO_MIN) * torch.sigmoid(self.relax_logit)
        return tau, sigma, rho

    def forward(
        self,
        y: torch.Tensor,
        physics: dinv.physics.LinearPhysics,
        lambda_map: torch.Tensor | float,
        x_init: torch.Tensor | None = None,
        n_iter: int | None = None,
        op_sqnorm: float | None = None,
        return_history: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        r"""Run :math:`T` iterations.

        :param torch.Tensor y: the measurements.
        :param deepinv.physics.LinearPhysics physics: the forward operator :math:`A`.
        :param lambda_map: :math:`\Lambda \ge 0`, a number, ``[B|1, C|1, H, W]`` or
            ``[B|1, C|1, H, W, 2]`` (anisotropic TV only).
        :param torch.Tensor x_init: the initial image (default :math:`A^\top y`).
        :param int n_iter: number of iterations (default ``self.n_iter``).
        :param float op_sqnorm: :math:`\|A\|^2` if known (skips the power iteration; not
            needed with ``data_term="prox"``).
        :param bool return_history: also return the list of iterates (no checkpointing).
        :return: the reconstruction :math:`x_T` (and the iterates).
        """
        if not isinstance(physics, dinv.physics.LinearPhysics):
            raise TypeError(f"physics must be a deepinv.physics.LinearPhysics, got {type(physics).__name__}")
        n_iter = self.n_iter if n_iter is None else check_count(n_iter, "n_iter", minimum=0)
        x = self._check(y, physics, lambda_map, x_init)
        if op_sqnorm is not None:
            check_positive(op_sqnorm, "op_sqnorm")
        else:  # the prox iteration's steps do not depend on ||A||: no power iteration
            op_sqnorm = self.operator_sqnorm(physics, x) if self.data_term == "dual" else 0.0
        tau, sigma, rho = self.parameters_pdhg(op_sqnorm)
        tau, sigma, rho = (v.to(device=x.device, dtype=x.dtype) for v in (tau, sigma, rho))
        p = torch.zeros_like(y)
        q = torch.zeros_like(nabla(x))
        lam = expand_map(lambda_map, q)
        if self.isotropic and lam.dim() == 5 and lam.shape[-1] == 2:
            raise ValueError("one map per direction needs anisotropic TV (isotropic=False)")

        def body(x, p, q, n):
            for _ in range(n):
                x, p, q = self._iteration(x, p, q, y, physics, lam, tau, sigma, rho)
            return x, p, q

        history = []
        if return_history or not self.checkpointing or not torch.is_grad_enabled():
            for _ in range(n_iter):
                x, p, q = body(x, p, q, 1)
                if return_history:
                    history.append(x)
        else:
            segment = max(1, math.ceil(math.sqrt(n_iter)))
            done = 0
            while done < n_iter:
                n = min(segment, n_iter - done)
                x, p, q = checkpoint(body, x, p, q, n, use_reentrant=False)
                done += n
        return (x, history) if return_history else x

    def _check(self, y, physics, lambda_map, x_init) -> torch.Tensor:
        """Check the inputs of :meth:`forward`; return the initial image."""
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
        check_image(y, "y", ndim=y.dim(), allow_complex=True)
        if isinstance(lambda_map, torch.Tensor):
            lam = lambda_map.detach()
            if not (torch.isfinite(lam).all() and (lam >= 0).all()):
                raise ValueError(
                    f"lambda_map must be finite and non-negative, got values in [{lam.min()}, {lam.max()}]"
                )
        else:
            check_sigma(lambda_map, "lambda_map")
        if x_init is None:
            with physics_must_fit(y, "UnrolledPDHG"):
                x = physics.A_adjoint(y)
        else:
            x = check_image(x_init, "x_init")
            if x_init.shape[0] != y.shape[0]:
                raise ValueError(
                    f"x_init must have the batch size of y ({y.shape[0]}), got shape {tuple(x_init.shape)}"
                )
        return check_image_fits(y, physics, x, "UnrolledPDHG", "physics" if x_init is None else "x_init")

    def _iteration(self, x, p, q, y, physics, lam, tau, sigma, rho):
        if self.data_term == "prox":
            x_tilde = physics.prox_l2(x - tau * nabla_adjoint(q), y, tau)
            q_tilde = project_dual_ball(q + sigma * nabla(2 * x_tilde - x), lam, self.isotropic)
            return x + rho * (x_tilde - x), p, q + rho * (q_tilde - q)
        x_tilde = x - tau * (physics.A_adjoint(p) + nabla_adjoint(q))
        x_bar = 2 * x_tilde - x
        p_tilde = (p + sigma * (physics.A(x_bar) - y)) / (1 + sigma)
        q_tilde = project_dual_ball(q + sigma * nabla(x_bar), lam, self.isotropic)
        return x + rho * (x_tilde - x), p + rho * (p_tilde - p), q + rho * (q_tilde - q)
