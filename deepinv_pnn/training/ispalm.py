r"""Inertial stochastic PALM (iSPALM) with the SARAH gradient estimator.

For :math:`\min_{x_1,\dots,x_n} H(x_1,\dots,x_n) + \sum_i f_i(x_i)` with a smooth
(expected) loss :math:`H` and proximable :math:`f_i` (here :math:`f_i = \iota_{\mathrm{St}}`
for the orthogonal matrices of a PNN, :math:`f_i = 0` for biases and thresholds),
iSPALM (Hertrich & Steidl, Sampl. Theory Signal Process. Data Anal. 2022) updates
block :math:`i` at step :math:`k`, Gauss-Seidel,

.. math::
    y_i = x_i^k + \alpha(x_i^k - x_i^{k-1}),\quad z_i = x_i^k + \beta(x_i^k - x_i^{k-1}),\quad
    x_i^{k+1} = \mathrm{prox}_{\tau_i f_i}\big(y_i - \tau_i \tilde\nabla_i H(\dots, z_i, \dots)\big),

with the SARAH estimator on the minibatch :math:`B_k`

.. math::
    \tilde\nabla_i^k = \nabla_i H_{B_k}(z^k) - \nabla_i H_{B_k}(z^{k-1}) + \tilde\nabla_i^{k-1},

restarted with a plain minibatch gradient every ``restart_every`` steps (the paper
restarts with a large batch; the caller may pass a larger batch on those steps).
:math:`\mathrm{prox}` of :math:`\iota_{\mathrm{St}}` is the projection (polar factor), so the
iterates are exactly orthogonal after every step; the extrapolated points :math:`z` are not.

:Examples:

>>> import torch
>>> from deepinv_pnn.nn.stiefel import StiefelLinear, orthogonality_error
>>> from deepinv_pnn.training.ispalm import ISPALM
>>> layer = StiefelLinear(3, 6, bias=True)
>>> opt = ISPALM([[layer.weight], [layer.bias]], lr=[0.1, 0.1], prox=["stiefel", None])
>>> x = torch.randn(32, 3)
>>> def closure():
...     opt.zero_grad(); loss = (layer(x) - 1).pow(2).mean(); loss.backward(); return loss
>>> first = float(opt.step(closure))
>>> for _ in range(30): last = float(opt.step(closure))
>>> last < first, float(orthogonality_error(layer.weight)) < 1e-6
(True, True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

from deepinv_pnn.nn.stiefel import project_stiefel
from deepinv_pnn.validation import check_count, check_positive


def _block_lists(blocks: object) -> list[list[torch.Tensor]]:
    """``blocks`` as a list of lists of tensors; a flat list of tensors is refused."""
    if isinstance(blocks, torch.Tensor) or not isinstance(blocks, Iterable):
        raise TypeError(f"blocks must be a list of blocks, got {type(blocks).__name__}")
    lists = []
    for i, block in enumerate(blocks):
        if isinstance(block, torch.Tensor) or not isinstance(block, Iterable):
            raise TypeError(
                f"blocks[{i}] must be a list of tensors, got {type(block).__name__}: "
                "write ISPALM([[w], [b]]), not ISPALM([w, b])"
            )
        block = list(block)
        for p in block:
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"blocks[{i}] must contain tensors, got {type(p).__name__}")
        lists.append(block)
    return lists


def _check_prox(kind: object, block: list[torch.Tensor], i: int) -> None:
    if kind is None or callable(kind):
        return
    if kind != "stiefel":
        raise ValueError(f"prox must be None, 'stiefel' or a callable, got {kind!r}")
    for p in block:
        if p.dim() < 2:
            raise ValueError(
                f"prox[{i}]='stiefel' needs [..., n, k] tensors, "
                f"got a tensor of shape {tuple(p.shape)}"
            )


def _prox(kind, p: torch.Tensor) -> torch.Tensor:
    if kind is None:
        return p
    if kind == "stiefel":
        return project_stiefel(p)
    if callable(kind):
        return kind(p)
    raise ValueError(f"prox must be None, 'stiefel' or a callable, got {kind!r}")


class ISPALM:
    r"""iSPALM with SARAH over blocks of parameters (see the module docstring).

    :param blocks: a list of blocks, each a list of parameters.
    :param lr: step size :math:`\tau_i` per block (or one for all).
    :param prox: per block ``None`` (no constraint), ``"stiefel"`` (projection onto the
        Stiefel manifold, ``[..., n, k]`` tensors) or a callable ``p -> prox(p)``.
    :param float alpha: inertia of the prox point, in :math:`[0, 1)`.
    :param float beta: inertia of the gradient point, in :math:`[0, 1)`.
    :param bool sarah: use the SARAH estimator (else plain minibatch gradients, "iPALM").
    :param int restart_every: steps between SARAH restarts.
    """

    def __init__(
        self,
        blocks: Sequence[Sequence[torch.Tensor]],
        lr: float | Sequence[float] = 1e-2,
        prox: Sequence | None = None,
        alpha: float = 0.5,
        beta: float = 0.5,
        sarah: bool = True,
        restart_every: int = 10,
    ):
        self.blocks = [b for b in _block_lists(blocks) if len(b)]
        n = len(self.blocks)
        lrs = [lr] * n if isinstance(lr, (int, float)) else list(lr)
        proxes = [None] * n if prox is None else list(prox)
        if len(lrs) != n or len(proxes) != n:
            raise ValueError(
                f"lr and prox need one entry per block ({n}), got {len(lrs)} and {len(proxes)}"
            )
        self.lrs = [check_positive(v, "lr") for v in lrs]
        for i, (kind, block) in enumerate(zip(proxes, self.blocks)):
            _check_prox(kind, block, i)
        self.proxes = proxes
        for name, value in (("alpha", alpha), ("beta", beta)):
            if not 0 <= value < 1:
                raise ValueError(f"{name} must lie in [0, 1), got {value}")
        restart_every = check_count(restart_every, "restart_every")
        self.alpha, self.beta, self.sarah, self.restart_every = alpha, beta, sarah, restart_every
        self.params = [p for b in self.blocks for p in b]
        self.k = 0
        self.previous = [[p.detach().clone() for p in b] for b in self.blocks]
        self.estimate: list[list[torch.Tensor] | None] = [None] * n
        self.eval_point: list[list[torch.Tensor] | None] = [None] * n
        # param_groups so that learning-rate schedules can set group["lr"] like torch optimisers
        self.param_groups = [{"params": b, "lr": r} for b, r in zip(self.blocks, self.lrs)]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def _grads(self, block: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in block]

    def _snapshot(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def _load(self, values: list[torch.Tensor]) -> None:
        for p, v in zip(self.params, values):
            p.copy_(v)

    def step(
        self, closure: Callable[[], torch.Tensor], model: torch.nn.Module | None = None
    ) -> torch.Tensor:
        """One iSPALM step over all blocks; ``closure`` zeroes the gradients, evaluates the loss on
        the current minibatch and calls ``backward``. Returns the loss at the first evaluation."""
        restart = self.k % self.restart_every == 0 or not self.sarah
        first_loss = None
        for i, block in enumerate(self.blocks):
            lr = self.param_groups[i]["lr"]
            current = [p.detach().clone() for p in block]
            y = [c + self.alpha * (c - o) for c, o in zip(current, self.previous[i])]
            with torch.no_grad():
                for p, c, o in zip(block, current, self.previous[i]):
                    p.copy_(c + self.beta * (c - o))
            point = self._snapshot()
            with torch.enable_grad():
                loss = closure()
            if not isinstance(loss, torch.Tensor):
                raise TypeError(
                    "closure must return the loss tensor (after calling backward), "
                    f"got {type(loss).__name__}"
                )
            first_loss = loss.detach() if first_loss is None else first_loss
            g_new = self._grads(block)
            if restart or self.estimate[i] is None:
                v = g_new
            else:
                self._load(self.eval_point[i])
                with torch.enable_grad():
                    closure()
                g_old = self._grads(block)
                self._load(point)
                v = [gn - go + e for gn, go, e in zip(g_new, g_old, self.estimate[i])]
            self.estimate[i], self.eval_point[i] = v, point
            with torch.no_grad():
                for p, yy, vv in zip(block, y, v):
                    p.copy_(_prox(self.proxes[i], yy - lr * vv))
            self.previous[i] = current
        self.k += 1
        self.zero_grad()
        return first_loss

    def state_dict(self) -> dict:
        return {
            "k": self.k,
            "previous": self.previous,
            "estimate": self.estimate,
            "eval_point": self.eval_point,
            "lrs": [g["lr"] for g in self.param_groups],
        }

    def load_state_dict(self, state: dict) -> None:
        self.k, self.previous = int(state["k"]), state["previous"]
        self.estimate, self.eval_point = state["estimate"], state["eval_point"]
        for g, lr in zip(self.param_groups, state["lrs"]):
            g["lr"] = lr
