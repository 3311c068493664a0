r"""Total variation with a pixel-wise regularisation map, as a deepinv prior.

.. math::

    g(x) = \|\Lambda \odot \nabla x\|_1 = \sum_{c,i} \Lambda_{c,i}\, |(\nabla x)_{c,i}|,

where :math:`|\cdot|` is the Euclidean norm of the two finite differences (isotropic
TV) or the sum of their absolute values (anisotropic TV), and
:math:`\Lambda \geq 0` is a map of the image's size (one map shared by both
directions, or one map per direction for anisotropic TV). This is the regulariser of
:footcite:t:`kofler2023parametermaps`. ``\nabla`` is deepinv's forward-difference operator
:meth:`deepinv.models.TVDenoiser.nabla` (Neumann boundary).

The prior accepts two kinds of inputs, so that it plugs into
:class:`deepinv.optim.PDCP` either way:

- an image ``[B, C, H, W]``: :meth:`WeightedTVPrior.fn` is :math:`g(x)` and
  :meth:`WeightedTVPrior.prox` solves the weighted TV denoising problem (PDCP with
  ``K = Id``, or PGD/ADMM/HQS);
- a gradient field ``[B, C, H, W, 2]`` (PDCP with ``K = nabla``, ``g_first=True``):
  :meth:`fn` is the weighted :math:`\ell^1` norm :math:`\|\Lambda \odot v\|_1` and
  :meth:`prox_conjugate` is the exact projection onto
  :math:`\{|v_i| \le \lambda \Lambda_i\}`.
"""

from __future__ import annotations

import deepinv as dinv
import torch

from deepinv_pnn.validation import (
    check_batch_values,
    check_count,
    check_image,
    check_positive,
    check_sigma,
)

nabla = dinv.models.TVDenoiser.nabla
nabla_adjoint = dinv.models.TVDenoiser.nabla_adjoint

#: squared operator norm bound of ``nabla`` in 2D, :math:`\|\nabla\|^2 \le 8`.
NABLA_SQNORM = 8.0


def expand_map(lambda_map: torch.Tensor | float, field: torch.Tensor, name: str = "lambda_map") -> torch.Tensor:
    r"""Shape a regularisation map so that it broadcasts against a gradient field.

    :param lambda_map: a number, or a tensor ``[B|1, C|1, H, W]`` (one map for both
        directions) or ``[B|1, C|1, H, W, 2]`` (one map per direction).
    :param torch.Tensor field: the gradient field ``[B, C, H, W, 2]``.
    :param str name: the argument's name for error messages.
    :return: a tensor broadcastable to ``field`` on its device and dtype.
    """
    lam = torch.as_tensor(lambda_map, device=field.device, dtype=field.dtype)
    if lam.dim() == 0:
        return lam
    if lam.dim() == 4:
        lam = lam.unsqueeze(-1)
    if lam.dim() != 5:
        raise ValueError(
            f"{name} must be a number, [B, C, H, W] or [B, C, H, W, 2], got shape {tuple(lam.shape)}"
        )
    try:
        fits = torch.broadcast_shapes(lam.shape, field.shape) == field.shape
    except RuntimeError:
        fits = False
    if not fits:  # e.g. a map for another batch size would silently broadcast the result
        raise ValueError(
            f"{name} of shape {tuple(lam.shape)} does not fit the gradient field {tuple(field.shape)}"
        )
    return lam


def per_sample(value, field: torch.Tensor, name: str):
    """A number, or a tensor with one value (or one per sample) shaped to broadcast against ``field``."""
    if isinstance(value, torch.Tensor) and value.dim() >= 1:
        check_batch_values(value, field.shape[0], name)
        return value.reshape(-1, *([1] * (field.dim() - 1)))
    return value


def check_field(x: torch.Tensor, name: str = "x", finite: bool = True) -> torch.Tensor:
    """Check a gradient field ``[B, C, H, W, 2]``: two directions, ``B >= 1`` and (``finite``) a
    finite floating-point tensor; the proxes skip that pass over the data, as deepinv's PDCP
    calls them at every iteration on the fields it computes."""
    if finite:
        check_image(x, name, ndim=5)
    if x.shape[-1] != 2:
        raise ValueError(f"{name} as a gradient field must be [B, C, H, W, 2], got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} has an empty batch (shape {tuple(x.shape)}): B >= 1 is needed")
    return x


def project_dual_ball(q: torch.Tensor, lam: torch.Tensor, isotropic: bool = True) -> torch.Tensor:
    r"""Projection onto :math:`\{q : |q_i| \le \Lambda_i\}`, the prox of the conjugate of the weighted norm.

    Isotropic: :math:`q_i \min(1, \Lambda_i / \|q_i\|_2)` over the direction axis;
    anisotropic: clipping of each direction to :math:`[-\Lambda_i, \Lambda_i]`.
    Safe for :math:`\Lambda_i = 0` and :math:`q_i = 0`.

    :param torch.Tensor q: a gradient field ``[B, C, H, W, 2]``.
    :param torch.Tensor lam: a non-negative map broadcastable to ``q`` (last axis 1 or 2;
        isotropic TV needs the same radius for both directions).
    :param bool isotropic: isotropic or anisotropic TV.
    """
    if not isotropic:
        return torch.maximum(torch.minimum(q, lam), -lam)
    if lam.dim() == 5 and lam.shape[-1] == 2:  # the same radius for both directions
        lam = lam[..., :1]
    norm = torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    bound = torch.maximum(norm, lam).clamp_min(torch.finfo(q.dtype).tiny)
    return q * (lam / bound)


def weighted_norm(field: torch.Tensor, lam: torch.Tensor, isotropic: bool = True) -> torch.Tensor:
    r""":math:`\sum_i \Lambda_i |v_i|` per batch element, shape ``(B,)``."""
    if isotropic:
        mag = torch.linalg.vector_norm(field, dim=-1, keepdim=True)
        if lam.dim() == 5 and lam.shape[-1] == 2:  # the same radius for both directions
            lam = lam[..., :1]
    else:
        mag = field.abs()
    return (lam * mag).reshape(field.shape[0], -1).sum(-1)


def weighted_tv_denoise(
    x: torch.Tensor,
    lambda_map: torch.Tensor | float,
    isotropic: bool = True,
    max_iter: int = 3000,
    tol: float = 1e-4,
    check_every: int = 20,
) -> torch.Tensor:
    r"""Solve :math:`\min_z \tfrac12\|z - x\|^2 + \|\Lambda \odot \nabla z\|_1` to a certified accuracy.

    Fast gradient projection on the dual problem (Beck and Teboulle, IEEE TIP 2009),
    :math:`\max_{|q_i| \le \Lambda_i} \tfrac12\|x\|^2 - \tfrac12\|x - \nabla^\top q\|^2`,
    with step :math:`1/\|\nabla\|^2 = 1/8` and :math:`z = x - \nabla^\top q`. It stops when
    the duality gap :math:`G` satisfies :math:`G \le \tfrac12 (\mathrm{tol}\,\|x\|)^2`,
    which bounds the error :math:`\|z - z^\star\| \le \mathrm{tol}\,\|x\|` by strong
    convexity.

    :param torch.Tensor x: the image ``[B, C, H, W]``.
    :param lambda_map: the map (see :func:`expand_map`).
    :param bool isotropic: isotropic or anisotropic TV.
    :param int max_iter: maximum number of iterations.
    :param float tol: relative accuracy (see above).
    :param int check_every: evaluate the duality gap every this many iterations.
    :return: the minimiser ``[B, C, H, W]``.
    """
    q = torch.zeros_like(nabla(x))
    lam = expand_map(lambda_map, q)
    w, t = q, 1.0
    target = 0.5 * (tol * torch.linalg.vector_norm(x.reshape(x.shape[0], -1), dim=-1)) ** 2
    target = target.clamp_min(torch.finfo(x.dtype).tiny)
    for it in range(max_iter):
        q_new = project_dual_ball(w + nabla(x - nabla_adjoint(w)) / NABLA_SQNORM, lam, isotropic)
        t_new = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
        w = q_new + ((t - 1.0) / t_new) * (q_new - q)
        q, t = q_new, t_new
        if (it + 1) % check_every == 0:
            z = x - nabla_adjoint(q)
            if ((_primal(z, x, lam, isotropic) - _dual(q, x)) <= target).all():
                return z
    return x - nabla_adjoint(q)


def _primal(z: torch.Tensor, x: torch.Tensor, lam: torch.Tensor, isotropic: bool) -> torch.Tensor:
    fid = 0.5 * ((z - x) ** 2).reshape(x.shape[0], -1).sum(-1)
    return fid + weighted_norm(nabla(z), lam, isotropic)


def _dual(q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # max over the dual ball of -g*(q) + min_z 1/2||z-x||^2 + <q, nabla z>
    r = x - nabla_adjoint(q)
    return 0.5 * ((x**2) - (r**2)).reshape(x.shape[0], -1).sum(-1)


class WeightedTVPrior(dinv.optim.Prior):
    r"""Weighted total variation :math:`g(x) = \|\Lambda \odot \nabla x\|_1` with a given map.

    The positional ``g_param`` that deepinv's optimisers pass multiplies the map
    (``None``: 1), so ``WeightedTVPrior()`` is plain TV and
    ``WeightedTVPrior(lam)`` with a constant ``lam`` is ``lam`` times TV.

    :param lambda_map: the map :math:`\Lambda \ge 0`: a number, ``[B|1, C|1, H, W]`` or,
        for anisotropic TV, ``[B|1, C|1, H, W, 2]`` (one map per direction). Can be
        replaced later through the attribute ``lambda_map`` (e.g. one map per batch).
    :param bool isotropic: isotropic (default) or anisotropic TV.
    :param int max_iter: iterations of the inner solver of :meth:`prox` on images.
    :param float tol: relative accuracy of the inner solver (:func:`weighted_tv_denoise`).

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.optim.weighted_tv import WeightedTVPrior
    >>> x = torch.rand(1, 1, 16, 16)
    >>> prior = WeightedTVPrior(0.1 * torch.ones(1, 1, 16, 16))
    >>> prior(x).shape
    torch.Size([1])
    >>> prior.prox(x, gamma=1.0).shape
    torch.Size([1, 1, 16, 16])
    """

    def __init__(
        self,
        lambda_map: torch.Tensor | float = 1.0,
        isotropic: bool = True,
        max_iter: int = 3000,
        tol: float = 1e-4,
    ):
        super().__init__()
        self.explicit_prior = True
        self.isotropic = bool(isotropic)
        self.max_iter = check_count(max_iter, "max_iter")
        self.tol = check_positive(tol, "tol", allow_zero=True)
        self.lambda_map = lambda_map

    @property
    def lambda_map(self) -> torch.Tensor | float:
        """The regularisation map :math:`\\Lambda`."""
        return self._lambda_map

    @lambda_map.setter
    def lambda_map(self, value: torch.Tensor | float) -> None:
        if isinstance(value, torch.Tensor):
            if not value.is_floating_point():
                raise TypeError(f"lambda_map must be a floating-point tensor, got {value.dtype}")
            if not torch.isfinite(value).all() or (value < 0).any():
                raise ValueError("lambda_map must be finite and non-negative")
            if value.dim() == 5 and value.shape[-1] == 2 and self.isotropic:
                raise ValueError(
                    "one map per direction ([..., 2]) needs anisotropic TV: pass isotropic=False"
                )
        else:
            check_sigma(value, "lambda_map")
        self._lambda_map = value

    def _map(self, field: torch.Tensor, g_param, scale=1.0) -> torch.Tensor:
        lam = expand_map(self._lambda_map, field)
        if g_param is not None:
            check_sigma(g_param, "g_param")
            g = torch.as_tensor(g_param, device=field.device, dtype=field.dtype)
            lam = lam * per_sample(g, field, "g_param")  # one value, or one per batch element
        return lam * per_sample(scale, field, "gamma")

    def _is_field(self, x: torch.Tensor) -> bool:
        return isinstance(x, torch.Tensor) and x.dim() == 5

    def fn(self, x: torch.Tensor, g_param=None, *args, **kwargs) -> torch.Tensor:
        r"""The weighted TV of an image, or the weighted norm of a gradient field.

        :param torch.Tensor x: image ``[B, C, H, W]`` or gradient field ``[B, C, H, W, 2]``.
        :param g_param: a multiplier of the map (number or ``[B]`` tensor); ``None``: 1.
        :return: (:class:`torch.Tensor`) of shape ``(B,)``.
        """
        field = check_field(x) if self._is_field(x) else nabla(check_image(x, nonempty=True))
        return weighted_norm(field, self._map(field, g_param), self.isotropic)

    def grad(self, x: torch.Tensor, g_param=None, *args, **kwargs) -> torch.Tensor:
        r"""A subgradient :math:`\nabla^\top(\Lambda\, \nabla x / |\nabla x|)` (0 where :math:`\nabla x = 0`).

        :param torch.Tensor x: the image ``[B, C, H, W]``.
        """
        check_image(x, nonempty=True)
        field = nabla(x)
        lam = self._map(field, g_param)
        if self.isotropic:
            norm = torch.linalg.vector_norm(field, dim=-1, keepdim=True)
            direction = field / torch.where(norm > 0, norm, torch.ones_like(norm))
        else:
            direction = torch.sign(field)
        return nabla_adjoint(lam * direction)

    def prox(self, x: torch.Tensor, g_param=None, *args, gamma: float = 1.0, **kwargs) -> torch.Tensor:
        r"""Proximal operator of :math:`\gamma g`.

        On an image: weighted TV denoising with the map :math:`\gamma\Lambda`
        (:func:`weighted_tv_denoise`); on a gradient field: (vector) soft thresholding.

        :param torch.Tensor x: image ``[B, C, H, W]`` or gradient field ``[B, C, H, W, 2]``.
        :param g_param: multiplier of the map (``None``: 1).
        :param float gamma: the step size :math:`\gamma \ge 0`.
        """
        check_sigma(gamma, "gamma")
        if self._is_field(x):
            check_field(x, finite=False)
            return x - project_dual_ball(x, self._map(x, g_param, gamma), self.isotropic)
        check_image(x, nonempty=True)
        lam = self._map(nabla(x), g_param, _as_map_scale(gamma, x))
        return weighted_tv_denoise(x, lam, self.isotropic, self.max_iter, self.tol)

    def prox_conjugate(
        self, x: torch.Tensor, g_param=None, *args, gamma: float = 1.0, lamb: float = 1.0, **kwargs
    ) -> torch.Tensor:
        r"""Proximal operator of :math:`\gamma (\lambda g)^*`.

        On a gradient field this is the projection onto
        :math:`\{|v_i| \le \lambda\Lambda_i\}` (independent of :math:`\gamma`), the step
        of :class:`deepinv.optim.PDCP` with ``K = nabla`` and ``g_first=True``; on an
        image it uses Moreau's identity.

        :param torch.Tensor x: gradient field ``[B, C, H, W, 2]`` or image ``[B, C, H, W]``.
        :param g_param: multiplier of the map (``None``: 1).
        :param float gamma: the step size.
        :param float lamb: the factor :math:`\lambda` in front of :math:`g`.
        """
        if self._is_field(x):
            check_field(x, finite=False)
            return project_dual_ball(x, self._map(x, g_param, _as_map_scale(lamb, x, "lamb")), self.isotropic)
        return super().prox_conjugate(x, g_param, *args, gamma=gamma, lamb=lamb, **kwargs)


def _as_map_scale(value, x: torch.Tensor, name: str = "gamma") -> torch.Tensor:
    """A step size (number, 0-d or ``[B]`` tensor) as a factor broadcastable to a gradient field."""
    check_sigma(value, name)
    check_batch_values(value, x.shape[0], name)
    v = torch.as_tensor(value, device=x.device, dtype=x.dtype)
    if v.dim() >= 1:
        v = v.reshape(-1, 1, 1, 1, 1)
    return v
