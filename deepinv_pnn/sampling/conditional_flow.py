r"""Conditional MMD flow: posterior sampling for an inverse problem :math:`y = A x + \epsilon`.

The conditional flow (Hagemann, Hertrich, Altekrüger, Beinert, Chemseddine, Steidl,
*Posterior sampling based on gradient flows of the MMD with negative distance kernel*,
ICLR 2024) runs the MMD flow of the joint measure: particles :math:`(\tilde x_i, c_i)` move
toward the training pairs :math:`(x_i, c_i)`, but only their :math:`x` part moves. The
paper shows that the joint flow with fixed observations approximates the conditional
flows toward the posteriors :math:`P_{X | Y = y}`. As in
:class:`~deepinv_pnn.sampling.GenerativeMMDFlow`, a chain of networks
:math:`\Phi_l(x, c)` learns the flow's displacements, and sampling applies
:math:`x \mapsto x + \Phi_l(x, c)` to latent noise for a fixed observation.

The conditioning vector is computed from the observation and the operator as
:math:`c = A^\top y + \kappa (A^\top A \mathbf 1 - \mathbf 1)` with :math:`\kappa = 1/2`: for
inpainting this is the observed image with the missing pixels set to :math:`-\kappa`, so
one model serves every mask; for a blur with a normalised kernel or for denoising it is
:math:`A^\top y`.

With ``consistent_latent=True`` the latent points are made consistent with the observation,
:math:`z = w + A^\dagger (y - A w)` with :math:`w = m + s e`, :math:`e \sim \mathcal N(0, I)`
(for inpainting: the observed pixels are copied, the missing ones are noise around the
training mean :math:`m`), in training and in sampling alike; the chain then only has to
learn how the observed part determines the rest. On 8x8 digits inpainting (half of the
pixels missing, 4 networks after 100 flow steps each) it raised the held-out posterior-mean
PSNR from 18.62 to 19.47 dB at equal training time.
"""

from __future__ import annotations

import math

import deepinv as dinv
import torch
from torch import nn

from deepinv_pnn.sampling.generative_flow import DisplacementMLP, train_flow_chain
from deepinv_pnn.sampling.mmd_riesz import _all_finite
from deepinv_pnn.validation import (
    check_count,
    check_image,
    check_img_shape,
    check_positive,
    physics_must_fit,
)

__all__ = ["ConditionalMMDFlow", "MMDPosteriorMean", "condition_features"]


MISSING_VALUE = 0.5


def condition_features(y: torch.Tensor, physics: dinv.physics.LinearPhysics) -> torch.Tensor:
    r"""The conditioning vector :math:`c = A^\top y + \kappa (A^\top A \mathbf 1 - \mathbf 1)`,
    flattened ``[B, C H W]``."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if not isinstance(physics, dinv.physics.LinearPhysics):
        raise TypeError(f"physics must be a deepinv.physics.LinearPhysics, got {type(physics).__name__}")
    if not bool(torch.isfinite(y).all()):
        raise ValueError("y contains NaN or Inf values")
    back = physics.A_adjoint(y)
    ones = torch.ones_like(back[:1])
    gram = physics.A_adjoint(physics.A(ones))
    return (back + MISSING_VALUE * (gram - 1)).reshape(len(back), -1)


class ConditionalMMDFlow(nn.Module):
    r"""Posterior sampler :math:`x \sim P_{X|Y=y}` by a conditional MMD flow.

    :param tuple img_shape: ``(C, H, W)`` of the unknown image.
    :param int n_stages: the number of networks.
    :param int hidden: the width of each network.
    :param float latent_std: the standard deviation of the latent Gaussian (around the
        training mean).
    :param float cond_weight: the weight :math:`\lambda` of the conditioning in the joint kernel.
    :param bool consistent_latent: start from latent points consistent with the observation
        (see the module docstring); training then needs the observations and the physics.
    :param pretrained: ``True`` or a path: load weights.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.problems import make_physics
    >>> from deepinv_pnn.sampling import ConditionalMMDFlow
    >>> physics = make_physics("inpaint", (1, 8, 8))
    >>> model = ConditionalMMDFlow((1, 8, 8), n_stages=1, hidden=16)
    >>> out = model.posterior(physics(torch.rand(2, 1, 8, 8)), physics, n_samples=5)
    >>> out["samples"].shape, out["mean"].shape, out["std"].shape
    (torch.Size([5, 2, 1, 8, 8]), torch.Size([2, 1, 8, 8]), torch.Size([2, 1, 8, 8]))
    """

    def __init__(
        self,
        img_shape: tuple[int, int, int] = (1, 8, 8),
        n_stages: int = 6,
        hidden: int = 256,
        latent_std: float = 0.5,
        cond_weight: float = 1.0,
        consistent_latent: bool = False,
        pretrained: bool | str | None = None,
        default_file: str | None = None,
    ):
        super().__init__()
        self.img_shape = check_img_shape(img_shape)
        self.dim = math.prod(self.img_shape)
        self.latent_std = check_positive(latent_std, "latent_std")
        cond_weight = check_positive(cond_weight, "cond_weight", allow_zero=True)
        n_stages = check_count(n_stages, "n_stages")
        # a buffer, so that the weights file carries the kernel weight the chain was trained with
        self.register_buffer("cond_scale", torch.tensor(cond_weight))
        self.register_buffer("consistent", torch.tensor(float(bool(consistent_latent))))
        self.networks = nn.ModuleList(
            DisplacementMLP(self.dim, hidden, cond_dim=self.dim) for _ in range(n_stages)
        )
        self.register_buffer("latent_mean", torch.zeros(self.dim))
        if pretrained:
            from deepinv_pnn.pretrained import load_pretrained

            load_pretrained(self, pretrained, default_file)

    @property
    def cond_weight(self) -> float:
        return float(self.cond_scale)

    @property
    def consistent_latent(self) -> bool:
        return bool(self.consistent > 0)

    def latent(
        self, e: torch.Tensor, y: torch.Tensor | None = None, physics: dinv.physics.LinearPhysics | None = None
    ) -> torch.Tensor:
        r"""Latent points :math:`w = m + s e` for standard normal ``e`` ``[n, d]``, made consistent
        with the observations ``y`` (``n`` of them, ``[n, ...]``) if ``consistent_latent``."""
        w = self.latent_mean + self.latent_std * e
        if not self.consistent_latent:
            return w
        if y is None or physics is None:
            raise ValueError("a consistent latent needs the observations y and the physics")
        img = w.reshape((len(w),) + self.img_shape)
        return (img + physics.A_dagger(y - physics.A(img))).reshape(len(w), -1)

    def transport(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Push latent points ``z`` ``[n, d]`` through the chain given conditions ``cond`` ``[n, k]``."""
        c = self.cond_scale * cond
        for net in self.networks:
            z = z + net(z, c)
        return z

    def sample(
        self, y: torch.Tensor, physics: dinv.physics.LinearPhysics, n_samples: int = 16, seed: int | None = 0
    ) -> torch.Tensor:
        """``n_samples`` posterior samples per observation, ``[n_samples, B, C, H, W]``."""
        check_image(y, "y", channels=self.img_shape[0])
        if not isinstance(physics, dinv.physics.LinearPhysics):
            raise TypeError(f"physics must be a deepinv.physics.LinearPhysics, got {type(physics).__name__}")
        n_samples = check_count(n_samples, "n_samples")
        if len(y) == 0:
            raise ValueError(f"y must hold at least one observation (B >= 1), got shape {tuple(y.shape)}")
        param = next(self.parameters())
        with physics_must_fit(y, "ConditionalMMDFlow.sample"):
            cond = condition_features(y.to(param), physics)
        if cond.shape[1] != self.dim:
            raise ValueError(
                f"y and physics must describe images of shape {self.img_shape}; A^T y has {cond.shape[1]} entries"
            )
        b = len(y)
        gen = None if seed is None else torch.Generator(device=param.device).manual_seed(int(seed))
        e = torch.randn(int(n_samples) * b, self.dim, generator=gen, device=param.device, dtype=param.dtype)
        reps = (int(n_samples),) + (1,) * (y.dim() - 1)
        z = self.latent(e, y.to(param).repeat(reps), physics) if self.consistent_latent else self.latent(e)
        x = self.transport(z, cond.repeat(int(n_samples), 1))
        return x.reshape((int(n_samples), b) + self.img_shape)

    def posterior(
        self, y: torch.Tensor, physics: dinv.physics.LinearPhysics, n_samples: int = 16, seed: int | None = 0
    ) -> dict:
        """Posterior ``samples`` ``[S, B, C, H, W]``, pixel-wise ``mean`` and ``std`` ``[B, C, H, W]``."""
        n_samples = check_count(n_samples, "n_samples")
        samples = self.sample(y, physics, n_samples, seed)
        return {"samples": samples, "mean": samples.mean(0), "std": samples.std(0, unbiased=n_samples > 1)}

    def fit(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        seed: int = 0,
        y: torch.Tensor | None = None,
        physics: dinv.physics.LinearPhysics | None = None,
        **kwargs,
    ) -> list[dict]:
        """Train on images ``x`` ``[N, C, H, W]`` with their conditions ``cond`` ``[N, C H W]``
        (from :func:`condition_features`; the observations ``y`` and the ``physics`` too if
        ``consistent_latent``); ``kwargs`` go to :func:`~deepinv_pnn.sampling.train_flow_chain`."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != self.img_shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape [N, {self.img_shape}], got {got}")
        if not isinstance(cond, torch.Tensor) or tuple(cond.shape) != (len(x), self.dim):
            got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise ValueError(f"cond must have shape [N, C H W] = [{len(x)}, {self.dim}] (one per image), got {got}")
        if y is not None and (not isinstance(y, torch.Tensor) or len(y) != len(x)):
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"y must hold one observation per image ({len(x)}), got {got}")
        param = next(self.parameters())
        target = x.reshape(len(x), -1).to(param)
        cond = cond.to(param)
        for name, values in (("x", target), ("cond", cond)):
            if not _all_finite(values):
                raise ValueError(f"{name} contains NaN or Inf values")
        self.latent_mean.copy_(target.mean(0))
        gen = torch.Generator(device=param.device).manual_seed(seed)
        e = torch.randn(target.shape, generator=gen, device=param.device, dtype=param.dtype)
        with torch.no_grad():
            z = self.latent(e, None if y is None else y.to(param), physics)
        wrapped = nn.ModuleList(_Scaled(net, self.cond_weight) for net in self.networks)
        return train_flow_chain(
            wrapped, z, target, particle_cond=cond, target_cond=cond, cond_weight=self.cond_weight, seed=seed, **kwargs
        )


class _Scaled(nn.Module):
    """``net(x, c)`` called with unscaled conditions during training, as in :meth:`transport`."""

    def __init__(self, net: nn.Module, weight: float):
        super().__init__()
        self.net, self.weight = net, weight

    def forward(self, x, cond=None):
        return self.net(x, self.weight * cond)


class MMDPosteriorMean(dinv.models.Reconstructor):
    r"""Reconstructor ``(y, physics) -> E[x | y]`` estimated with a :class:`ConditionalMMDFlow`.

    ``posterior(y, physics)`` gives the samples, the mean and the pixel-wise std.

    :param ConditionalMMDFlow flow: the conditional flow.
    :param int n_samples: posterior samples averaged per observation.
    """

    def __init__(self, flow: ConditionalMMDFlow, n_samples: int = 32):
        super().__init__()
        if not callable(getattr(flow, "sample", None)):
            raise TypeError(f"flow must be a ConditionalMMDFlow, got {type(flow).__name__}")
        self.flow = flow
        self.n_samples = check_count(n_samples, "n_samples")

    def forward(self, y: torch.Tensor, physics: dinv.physics.Physics, **kwargs) -> torch.Tensor:
        return self.flow.sample(y, physics, self.n_samples, seed=0).mean(0)

    def posterior(
        self, y: torch.Tensor, physics: dinv.physics.LinearPhysics, n_samples: int | None = None, seed: int | None = 0
    ) -> dict:
        """Posterior ``samples`` ``[S, B, C, H, W]``, ``mean`` and ``std`` ``[B, C, H, W]``."""
        return self.flow.posterior(y, physics, self.n_samples if n_samples is None else n_samples, seed)
