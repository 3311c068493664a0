r"""Generative MMD flow: a chain of small networks trained on the displacements of a flow.

Training (Hertrich et al., ICLR 2024, Sec. 3.3): start from latent particles
:math:`x^0_i \sim \mathcal N(0, s^2 I)`; for each stage :math:`l = 1, \dots, L` run
:math:`T` steps of the sliced :class:`~deepinv_pnn.sampling.MMDParticleFlow` toward the
data :math:`y`, giving :math:`\tilde x^l`, fit a network
:math:`\Phi_l \approx \tilde x^l - x^{l-1}` by least squares, and continue from the
network's output :math:`x^l = x^{l-1} + \Phi_l(x^{l-1})` (so that training sees what
sampling does). Sampling draws fresh latent points and applies the chain,

.. math::

    x = (\mathrm{Id} + \Phi_L) \circ \dots \circ (\mathrm{Id} + \Phi_1)(z), \qquad z \sim \mathcal N(0, s^2 I).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import nn

from deepinv_pnn.sampling.mmd_riesz import _all_finite, check_point_cloud
from deepinv_pnn.sampling.particle_flow import MMDParticleFlow
from deepinv_pnn.validation import check_count, check_dtype_matches, check_img_shape, check_positive

__all__ = ["DisplacementMLP", "GenerativeMMDFlow", "train_flow_chain"]


class DisplacementMLP(nn.Module):
    r"""A small MLP :math:`\Phi(x, c)` predicting a displacement of ``x`` (zero at initialisation).

    :param int dim: the dimension of ``x``.
    :param int hidden: the width of the two hidden layers.
    :param int cond_dim: the dimension of the conditioning vector ``c`` (0: none).
    """

    def __init__(self, dim: int, hidden: int = 256, cond_dim: int = 0):
        super().__init__()
        dim, hidden = check_count(dim, "dim"), check_count(hidden, "hidden")
        cond_dim = check_count(cond_dim, "cond_dim", minimum=0)
        self.net = nn.Sequential(
            nn.Linear(dim + cond_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, dim),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.dim, self.cond_dim = dim, cond_dim

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """The displacement of ``x`` ``[n, dim]`` given ``cond`` ``[n, cond_dim]`` (or ``None``)."""
        _check_vectors(x, "x", self.dim)
        check_dtype_matches(self, x, "x")
        if (cond is None) != (self.cond_dim == 0):
            raise ValueError(f"cond must be given exactly when cond_dim > 0 (cond_dim = {self.cond_dim})")
        if cond is None:
            return self.net(x)
        _check_vectors(cond, "cond", self.cond_dim, len(x))
        check_dtype_matches(self, cond, "cond")
        return self.net(torch.cat([x, cond], dim=1))


def _check_vectors(x: object, name: str, dim: int, n: int | None = None) -> None:
    # O(1): shape and type only (called for every network of a chain)
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != dim or (n is not None and len(x) != n):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        rows = "n" if n is None else n
        raise ValueError(f"{name} must be a tensor of shape [{rows}, {dim}], got {got}")


def train_flow_chain(
    networks: nn.ModuleList,
    x0: torch.Tensor,
    target: torch.Tensor,
    particle_cond: torch.Tensor | None = None,
    target_cond: torch.Tensor | None = None,
    cond_weight: float = 1.0,
    flow_steps: int = 30,
    train_iters: int = 300,
    batch_size: int = 256,
    lr: float = 1e-3,
    n_projections: int = 256,
    step_size: float = 1.0,
    momentum: float = 0.5,
    seed: int = 0,
    deadline: float | None = None,
    progress: Callable[[int, dict], None] | None = None,
) -> list[dict]:
    r"""Train ``networks`` stage by stage on the displacements of the (joint) sliced MMD flow.

    With conditioning vectors, the flow runs on the joint points :math:`(x, \lambda c)` and
    only the ``x`` part moves (the conditional MMD flow of Hagemann et al., ICLR 2024).

    :param nn.ModuleList networks: the chain :math:`\Phi_1, \dots, \Phi_L`, each called as
        ``net(x, cond)``.
    :param torch.Tensor x0: the latent particles ``[N, d]``.
    :param torch.Tensor target: the data ``[M, d]``.
    :param torch.Tensor particle_cond: conditioning of the particles ``[N, k]`` (or ``None``).
    :param torch.Tensor target_cond: conditioning of the data ``[M, k]`` (or ``None``).
    :param float cond_weight: the weight :math:`\lambda` of the conditioning in the kernel.
    :param int flow_steps: flow steps :math:`T` per stage.
    :param int train_iters: Adam iterations per network.
    :param float deadline: ``time.monotonic()`` after which the remaining stages get only one
        network iteration each (so a time budget is kept and every stage is initialised).
    :param progress: called as ``progress(stage, record)``.
    :return: one record per stage (flow MMD before/after, network fit error).
    """
    if (particle_cond is None) != (target_cond is None):
        raise ValueError("give both particle_cond and target_cond (conditional flow) or neither")
    check_point_cloud(x0, "x0")
    d = x0.shape[1]
    check_point_cloud(target, "target", dim=d)
    joint = particle_cond is not None
    if joint:
        k = particle_cond.shape[-1] if isinstance(particle_cond, torch.Tensor) and particle_cond.dim() else 0
        _check_vectors(particle_cond, "particle_cond", k, len(x0))
        _check_vectors(target_cond, "target_cond", k, len(target))
        cond_weight = check_positive(cond_weight, "cond_weight", allow_zero=True)
    flow_steps = check_count(flow_steps, "flow_steps", minimum=0)
    train_iters = check_count(train_iters, "train_iters")
    batch_size = check_count(batch_size, "batch_size")
    tgt = torch.cat([target, cond_weight * target_cond], 1) if joint else target
    pc = cond_weight * particle_cond if joint else None
    flow = MMDParticleFlow(tgt, n_projections, step_size, momentum, movable_dims=d, seed=seed)
    gen = torch.Generator(device=x0.device).manual_seed(seed + 1)
    x = x0.clone()
    history = []
    for stage, net in enumerate(networks):
        late = deadline is not None and time.monotonic() > deadline
        xj = torch.cat([x, pc], 1) if joint else x
        flown = flow.run(xj, 0 if late else flow_steps)[:, :d]
        disp = flown - x
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        n_iters = 1 if late else train_iters
        for it in range(n_iters):
            idx = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=gen, device=x.device)
            pred = net(x[idx], particle_cond[idx] if joint else None)
            loss = (pred - disp[idx]).square().sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            for group in opt.param_groups:  # cosine decay within the stage
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * (it + 1) / n_iters))
        with torch.no_grad():
            step = net(x, particle_cond if joint else None)
            before = float(flow.direction(torch.cat([x, pc], 1) if joint else x)[0])
            fit = float((step - disp).square().sum(1).mean() / disp.square().sum(1).mean().clamp_min(1e-30))
            x = x + step
            after = float(flow.direction(torch.cat([x, pc], 1) if joint else x)[0])
            record = {"stage": stage, "mmd_before": before, "mmd_after": after, "displacement": float(disp.square().sum(1).mean().sqrt()),
                      "relative_fit_error": fit, "skipped": late}
        history.append(record)
        if progress is not None:
            progress(stage, record)
    return history


class GenerativeMMDFlow(nn.Module):
    r"""Generative sliced MMD flow: noise through a chain of residual networks.

    :param tuple img_shape: ``(C, H, W)`` of the generated images.
    :param int n_stages: the number :math:`L` of networks.
    :param int hidden: the width of each :class:`DisplacementMLP`.
    :param float latent_std: the standard deviation :math:`s` of the latent Gaussian.
    :param pretrained: ``True`` or a path: load weights (see :mod:`deepinv_pnn.pretrained`).

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.sampling import GenerativeMMDFlow
    >>> model = GenerativeMMDFlow(img_shape=(1, 8, 8), n_stages=2, hidden=32)
    >>> history = model.fit(torch.rand(100, 1, 8, 8), n_particles=100, flow_steps=5, train_iters=5)
    >>> model.sample(4).shape
    torch.Size([4, 1, 8, 8])
    """

    def __init__(
        self,
        img_shape: tuple[int, int, int] = (1, 8, 8),
        n_stages: int = 8,
        hidden: int = 256,
        latent_std: float = 1.0,
        pretrained: bool | str | None = None,
        default_file: str | None = None,
    ):
        super().__init__()
        self.img_shape = check_img_shape(img_shape)
        self.dim = math.prod(self.img_shape)
        self.latent_std = check_positive(latent_std, "latent_std")
        n_stages = check_count(n_stages, "n_stages")
        self.networks = nn.ModuleList(DisplacementMLP(self.dim, hidden) for _ in range(n_stages))
        # latent z = mean + s * L e, e ~ N(0, I); fit() sets (mean, L) to a Gaussian fit of the data
        self.register_buffer("latent_mean", torch.zeros(self.dim))
        self.register_buffer("latent_factor", torch.eye(self.dim))
        if pretrained:
            from deepinv_pnn.pretrained import load_pretrained

            load_pretrained(self, pretrained, default_file)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Push latent vectors ``z`` ``[n, d]`` through the chain; returns ``[n, C, H, W]``."""
        _check_vectors(z, "z", self.dim)
        check_dtype_matches(self, z, "z")
        if not _all_finite(z):
            raise ValueError("z contains NaN or Inf values")
        x = z
        for net in self.networks:
            x = x + net(x)
        return x.reshape((len(z),) + self.img_shape)

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` generated images ``[n, C, H, W]`` (seeded with ``seed`` or ``generator``)."""
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        param = next(self.parameters())
        if generator is None and seed is not None:
            generator = torch.Generator(device=param.device).manual_seed(int(seed))
        e = torch.randn(int(n), self.dim, generator=generator, device=param.device, dtype=param.dtype)
        return self(self.latent(e))

    def latent(self, e: torch.Tensor) -> torch.Tensor:
        r"""Map standard normal ``e`` ``[n, d]`` to the latent :math:`z = m + s L e`."""
        return self.latent_mean + self.latent_std * e @ self.latent_factor.T

    def fit(
        self, data: torch.Tensor, n_particles: int = 2000, seed: int = 0, gaussian_latent: bool = True, **kwargs
    ) -> list[dict]:
        r"""Train the chain on ``data`` ``[M, C, H, W]`` (see :func:`train_flow_chain` for ``kwargs``).

        :param bool gaussian_latent: set the latent distribution to the Gaussian with the mean
            and covariance of ``data`` (the flow then only refines a Gaussian fit); else
            :math:`\mathcal N(0, s^2 I)`.
        """
        if not isinstance(data, torch.Tensor):
            raise TypeError(f"data must be a torch.Tensor [M, C, H, W], got {type(data).__name__}")
        if data.shape[1:] != self.img_shape:
            raise ValueError(f"data must have shape [M, {self.img_shape}], got {tuple(data.shape)}")
        least, why = (2, " to fit the Gaussian latent (gaussian_latent=True)") if gaussian_latent else (1, "")
        if len(data) < least:
            raise ValueError(f"data must hold at least {least} images{why}, got {len(data)}")
        n_particles = check_count(n_particles, "n_particles")
        param = next(self.parameters())
        target = data.reshape(len(data), -1).to(param)
        if not _all_finite(target):
            raise ValueError("data contains NaN or Inf values")
        gen = torch.Generator(device=param.device).manual_seed(seed)
        if gaussian_latent:
            flat = target.double()
            cov = torch.cov(flat.T) + 1e-6 * torch.eye(self.dim, dtype=flat.dtype, device=flat.device)
            self.latent_mean.copy_(flat.mean(0))
            self.latent_factor.copy_(torch.linalg.cholesky(cov))
        e = torch.randn(n_particles, self.dim, generator=gen, device=param.device, dtype=param.dtype)
        return train_flow_chain(self.networks, self.latent(e), target, seed=seed, **kwargs)
