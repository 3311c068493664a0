r"""Riemannian SGD and Adam on the Stiefel manifold with an exact Cayley retraction.

Parameters created by :func:`deepinv_pnn.nn.stiefel.stiefel_parameter` (tagged
``p.manifold == "stiefel"``, shape ``[..., n, k]``) move along the manifold; every other
parameter gets the ordinary Euclidean update, so one optimiser trains a whole network.

For a tall point :math:`W` (:math:`W^\top W = I`) and a tangent direction :math:`D`
(the Euclidean gradient projected, :math:`D = G - W\,\mathrm{sym}(W^\top G)`), the
update is the Cayley curve (Wen & Yin 2013; Li, Fuxin, Todorovic, ICLR 2020)

.. math::
    W^+ = \Big(I + \tfrac{\tau}{2}A\Big)^{-1}\Big(I - \tfrac{\tau}{2}A\Big) W,\qquad
    A = \hat W - \hat W^\top,\ \hat W = D W^\top - \tfrac12 W (W^\top D W^\top),

solved exactly (a linear solve in float64), not by the fixed-point iteration of the
reference code, which diverges for large :math:`\tau`. :math:`(I + \tfrac\tau2 A)` is
invertible for every :math:`\tau` (:math:`A` is skew), so any step size is safe. One
Newton-Schulz step :math:`W \leftarrow W(3I - W^\top W)/2` in float64 then removes the
rounding error of the stored float32 point, so the error does not accumulate.
Wide points (:math:`WW^\top = I`) are handled transposed.

:Examples:

>>> import torch
>>> from deepinv_pnn.nn.stiefel import StiefelLinear, orthogonality_error
>>> from deepinv_pnn.training.manifold import CayleyAdam
>>> layer = StiefelLinear(4, 8)
>>> opt = CayleyAdam(layer.parameters(), lr=0.5)
>>> for _ in range(20):
...     opt.zero_grad(); layer(torch.randn(16, 4)).pow(3).sum().backward(); opt.step()
>>> float(orthogonality_error(layer.weight)) < 1e-5
True
"""

from __future__ import annotations

import torch

from deepinv_pnn.nn.stiefel import is_stiefel_parameter
from deepinv_pnn.validation import check_positive


def _tall(w: torch.Tensor) -> tuple[torch.Tensor, bool]:
    wide = w.shape[-2] < w.shape[-1]
    return (w.transpose(-1, -2) if wide else w), wide


def tangent_projection(w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    r"""Projection of ``g`` onto the tangent space at the tall point ``w``: :math:`G - W\mathrm{sym}(W^\top G)`."""
    wtg = w.transpose(-1, -2) @ g
    return g - w @ (0.5 * (wtg + wtg.transpose(-1, -2)))


def cayley_retraction(w: torch.Tensor, d: torch.Tensor, step: float) -> torch.Tensor:
    r"""Move the tall point ``w`` by ``-step`` along the tangent direction ``d`` (exact Cayley curve).

    Computed in float64, followed by one Newton-Schulz re-orthonormalisation; returns
    ``w``'s dtype.
    """
    w64, d64 = w.to(torch.float64), d.to(torch.float64)
    w_hat = d64 @ w64.transpose(-1, -2) - 0.5 * w64 @ (
        w64.transpose(-1, -2) @ d64 @ w64.transpose(-1, -2)
    )
    a = w_hat - w_hat.transpose(-1, -2)
    eye = torch.eye(a.shape[-1], dtype=torch.float64, device=w.device)
    new = torch.linalg.solve(eye + 0.5 * step * a, (eye - 0.5 * step * a) @ w64)
    gram = new.transpose(-1, -2) @ new
    new = new @ (1.5 * torch.eye(gram.shape[-1], dtype=torch.float64, device=w.device) - 0.5 * gram)
    return new.to(w.dtype)


class _Riemannian(torch.optim.Optimizer):
    def _stiefel_update(self, p: torch.Tensor, direction: torch.Tensor, lr: float) -> torch.Tensor:
        """Retract ``p`` along ``-lr * direction`` (both in p's orientation); return the new tall point."""
        w, wide = _tall(p)
        d = direction.transpose(-1, -2) if wide else direction
        new = cayley_retraction(w, tangent_projection(w, d), lr)
        p.copy_(new.transpose(-1, -2) if wide else new)
        return new


class CayleySGD(_Riemannian):
    r"""Riemannian SGD with momentum on Stiefel parameters (Euclidean SGD on the others).

    Momentum is kept in the tangent space (transported by projection after each step).

    :param params: parameters or parameter groups.
    :param float lr: step size :math:`\tau`.
    :param float momentum: heavy-ball coefficient :math:`\beta \in [0, 1)`.
    :param float weight_decay: Euclidean weight decay of the non-manifold parameters.
    """

    def __init__(self, params, lr: float = 1e-2, momentum: float = 0.9, weight_decay: float = 0.0):
        check_positive(lr, "lr")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        check_positive(weight_decay, "weight_decay", allow_zero=True)
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, beta = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                g = p.grad
                if not is_stiefel_parameter(p) and group["weight_decay"]:
                    g = g + group["weight_decay"] * p
                buf = state.get("momentum_buffer")
                buf = g.clone() if buf is None else buf.mul_(beta).add_(g)
                state["momentum_buffer"] = buf
                if is_stiefel_parameter(p):
                    new = self._stiefel_update(p, buf, lr)
                    # transport the momentum to the new tangent space
                    _, wide = _tall(p)
                    b = buf.transpose(-1, -2) if wide else buf
                    b = tangent_projection(new.to(b.dtype), b)
                    state["momentum_buffer"] = (b.transpose(-1, -2) if wide else b).contiguous()
                else:
                    p.add_(buf, alpha=-lr)
        return loss


class CayleyAdam(_Riemannian):
    r"""Riemannian Adam on Stiefel parameters (Cayley ADAM of Li et al., ICLR 2020); Adam on the others.

    On a Stiefel matrix the second moment is one scalar per matrix (the squared norm of
    the Riemannian gradient), which keeps the update equivariant under rotations.

    :param params: parameters or parameter groups.
    :param float lr: step size.
    :param tuple betas: :math:`(\beta_1, \beta_2)`.
    :param float eps: denominator offset.
    """

    def __init__(
        self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ):
        check_positive(lr, "lr")
        check_positive(eps, "eps")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    shape = p.shape[:-2] + (1, 1) if is_stiefel_parameter(p) else p.shape
                    state["v"] = torch.zeros(shape, dtype=p.dtype, device=p.device)
                state["step"] += 1
                k = state["step"]
                g = p.grad
                if is_stiefel_parameter(p):
                    w, wide = _tall(p)
                    gt = g.transpose(-1, -2) if wide else g
                    gr = tangent_projection(w, gt)
                    gr = gr.transpose(-1, -2) if wide else gr
                    state["m"].mul_(b1).add_(gr, alpha=1 - b1)
                    sq = gr.pow(2).sum(dim=(-2, -1), keepdim=True)
                    state["v"].mul_(b2).add_(sq, alpha=1 - b2)
                    m_hat = state["m"] / (1 - b1**k)
                    v_hat = state["v"] / (1 - b2**k)
                    direction = m_hat / (v_hat.sqrt() + eps)
                    new = self._stiefel_update(p, direction, lr)
                    m = state["m"].transpose(-1, -2) if wide else state["m"]
                    m = tangent_projection(new.to(m.dtype), m)
                    state["m"] = (m.transpose(-1, -2) if wide else m).contiguous()
                else:
                    state["m"].mul_(b1).add_(g, alpha=1 - b1)
                    state["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                    m_hat = state["m"] / (1 - b1**k)
                    v_hat = state["v"] / (1 - b2**k)
                    p.addcdiv_(m_hat, v_hat.sqrt().add_(eps), value=-lr)
        return loss
