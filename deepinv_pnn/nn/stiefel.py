r"""The Stiefel manifold :math:`\mathrm{St}(n, k) = \{W \in \mathbb{R}^{n\times k}: W^\top W = I_k\}`.

Two ways to keep a weight on the manifold, both exact to float precision:

- **parametrisation** (:class:`Stiefel`, :func:`constrain`): an unconstrained square
  matrix :math:`X` is mapped to :math:`W = \mathrm{cay}(X - X^\top)[:, :k]` (or the matrix
  exponential), registered with :mod:`torch.nn.utils.parametrize`, so *any* optimiser
  keeps the constraint;
- **manifold parameters** (:func:`stiefel_parameter`): the weight itself is a point of
  the manifold, tagged ``p.manifold = "stiefel"``, and a Riemannian optimiser
  (:mod:`deepinv_pnn.training.manifold`) moves it along the manifold with an exact
  Cayley retraction.

The Cayley transform :math:`\mathrm{cay}(A) = (I - A)^{-1}(I + A)` of a skew matrix
:math:`A` is orthogonal; :math:`I - A` has singular values :math:`\ge 1`, so the
solve is well conditioned. It is computed in float64 and rounded once.

:Examples:

>>> import torch
>>> from deepinv_pnn.nn.stiefel import StiefelLinear, orthogonality_error
>>> layer = StiefelLinear(4, 8)
>>> float(orthogonality_error(layer.weight)) < 1e-6
True
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from deepinv_pnn.validation import check_count, check_dtype_matches

MAPS = ("cayley", "exp")


def skew(x: torch.Tensor) -> torch.Tensor:
    r"""Skew-symmetric part :math:`(X - X^\top)/2` over the last two dimensions."""
    return 0.5 * (x - x.transpose(-1, -2))


def cayley(a: torch.Tensor) -> torch.Tensor:
    r"""Cayley transform :math:`(I - A)^{-1}(I + A)` of skew matrices ``a`` (``[..., n, n]``).

    Computed in float64 with a linear solve (not a fixed-point iteration), then cast
    back to ``a``'s dtype.
    """
    a64 = a.to(torch.float64)
    eye = torch.eye(a.shape[-1], dtype=torch.float64, device=a.device)
    return torch.linalg.solve(eye - a64, eye + a64).to(a.dtype)


def orthogonality_error(w: torch.Tensor) -> torch.Tensor:
    r"""Largest entry of :math:`|W^\top W - I|` (tall ``W``) or :math:`|W W^\top - I|` (wide).

    Works on batches ``[..., n, k]``; returns the maximum over the batch.
    """
    w64 = w.detach().to(torch.float64)
    if w64.shape[-2] < w64.shape[-1]:
        w64 = w64.transpose(-1, -2)
    gram = w64.transpose(-1, -2) @ w64
    eye = torch.eye(gram.shape[-1], dtype=torch.float64, device=w.device)
    return (gram - eye).abs().amax()


def project_stiefel(w: torch.Tensor) -> torch.Tensor:
    r"""Nearest point of the Stiefel manifold (polar factor :math:`UV^\top` of ``w``), float64 inside."""
    transpose = w.shape[-2] < w.shape[-1]
    w64 = w.detach().to(torch.float64)
    if transpose:
        w64 = w64.transpose(-1, -2)
    u, _, vh = torch.linalg.svd(w64, full_matrices=False)
    q = u @ vh
    if transpose:
        q = q.transpose(-1, -2)
    return q.to(w.dtype)


def random_stiefel(
    *shape: int, generator: torch.Generator | None = None, dtype=torch.float32
) -> torch.Tensor:
    r"""A random point of :math:`\mathrm{St}(n, k)` (Haar for square), shape ``[..., n, k]``, ``n >= k``."""
    if len(shape) < 2 or shape[-2] < shape[-1]:
        raise ValueError(f"shape must be [..., n, k] with n >= k, got {shape}")
    g = torch.randn(*shape, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    return q.to(dtype)


class Stiefel(nn.Module):
    r"""Parametrisation of :math:`\mathrm{St}(n, k)` by an unconstrained ``[..., n, n]`` matrix.

    .. math::
        W = \left[\mathrm{map}(X - X^\top)\right]_{:, :k}, \qquad \mathrm{map}\in\{\mathrm{cay}, \exp\}.

    Wide weights (``n < k``) are handled by transposition, so :math:`W W^\top = I`.
    Register it with :func:`constrain`.

    :param str map: ``"cayley"`` or ``"exp"``.
    """

    def __init__(self, map: str = "cayley"):
        super().__init__()
        if map not in MAPS:
            raise ValueError(f"map must be one of {MAPS}, got {map!r}")
        self.map = map
        self.shape: tuple[int, int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = skew(x)
        if self.map == "cayley":
            q = cayley(a)
        else:
            q = torch.linalg.matrix_exp(a.to(torch.float64)).to(x.dtype)
        n, k = self.shape
        if n >= k:
            return q[..., :, :k]
        return q[..., :, :n].transpose(-1, -2)

    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        """Unconstrained matrix whose image is (the projection of) ``w``."""
        n, k = w.shape[-2:]
        self.shape = (n, k)
        tall = w if n >= k else w.transpose(-1, -2)
        big = max(n, k)
        q = project_stiefel(tall).to(torch.float64)
        # complete to a square orthogonal matrix with det chosen so the map can reach it
        if q.shape[-1] < big:
            extra = torch.randn(
                *q.shape[:-1], big - q.shape[-1], dtype=torch.float64, device=w.device
            )
            extra = extra - q @ (q.transpose(-1, -2) @ extra)
            qe, _ = torch.linalg.qr(extra)
            q = torch.cat([q, qe], dim=-1)
        # the maps reach SO(n) only: fix det = +1 by flipping the last column (for a square
        # weight this changes w; tall weights only change their unused completion)
        flip = torch.linalg.det(q) < 0
        q[..., -1] = torch.where(flip[..., None], -q[..., -1], q[..., -1])
        eye = torch.eye(big, dtype=torch.float64, device=w.device)
        if self.map == "cayley":
            # A = (Q - I)(Q + I)^{-1} (Q + I is invertible for a generic rotation)
            a = torch.linalg.solve(
                (q + eye).transpose(-1, -2), (q - eye).transpose(-1, -2)
            ).transpose(-1, -2)
        else:
            a = _real_log_orthogonal(q)
        return skew(a).to(w.dtype)


def _real_log_orthogonal(q: torch.Tensor) -> torch.Tensor:
    """Real skew logarithm of a rotation (used only by ``Stiefel(map="exp").right_inverse``)."""
    evals, evecs = torch.linalg.eig(q)
    log = evecs @ torch.diag_embed(torch.log(evals)) @ torch.linalg.inv(evecs)
    return log.real


def constrain(module: nn.Module, name: str = "weight", map: str = "cayley") -> nn.Module:
    r"""Constrain ``module.<name>`` to the Stiefel manifold by parametrisation.

    :param torch.nn.Module module: e.g. a :class:`torch.nn.Linear`.
    :param str name: the tensor to constrain (``[..., n, k]``).
    :param str map: ``"cayley"`` or ``"exp"``.
    :return: ``module``; ``module.<name>`` is now orthogonal whatever the optimiser does.
    """
    if not hasattr(module, name):
        raise ValueError(f"module {type(module).__name__} has no tensor {name!r}")
    if getattr(module, name).dim() < 2:
        raise ValueError(
            f"{name} must have at least 2 dimensions, got shape {tuple(getattr(module, name).shape)}"
        )
    if not torch.isfinite(getattr(module, name)).all():
        raise ValueError(
            f"{name} contains NaN or Inf values: it cannot be projected onto the Stiefel manifold"
        )
    parametrize.register_parametrization(module, name, Stiefel(map), unsafe=True)
    return module


def stiefel_parameter(w: torch.Tensor) -> nn.Parameter:
    r"""A parameter holding a point of the Stiefel manifold, tagged for the Riemannian optimisers.

    :param torch.Tensor w: a ``[..., n, k]`` tensor; it is projected onto the manifold.
    """
    p = nn.Parameter(project_stiefel(w))
    p.manifold = "stiefel"
    return p


def is_stiefel_parameter(p: torch.Tensor) -> bool:
    """Whether ``p`` was created by :func:`stiefel_parameter`."""
    return getattr(p, "manifold", None) == "stiefel"


class StiefelLinear(nn.Module):
    r"""Dense layer :math:`x \mapsto W x + b` with :math:`W \in \mathrm{St}`, both orientations.

    ``out_features >= in_features``: :math:`W^\top W = I` (an isometry, the analysis
    operator of a Parseval frame); ``out_features < in_features``: :math:`W W^\top = I`
    (a co-isometry). :meth:`adjoint` applies :math:`W^\top`.

    :param int in_features: input size.
    :param int out_features: output size.
    :param bool bias: add a learnable bias.
    :param str parametrization: ``"manifold"`` (the weight is a tagged Stiefel point, train it
        with :mod:`deepinv_pnn.training.manifold`), ``"cayley"`` or ``"exp"`` (any optimiser).
    :param torch.Generator generator: seed of the random initialisation.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        parametrization: str = "manifold",
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        in_features = check_count(in_features, "in_features")
        out_features = check_count(out_features, "out_features")
        if parametrization not in ("manifold",) + MAPS:
            raise ValueError(
                f"parametrization must be 'manifold', 'cayley' or 'exp', got {parametrization!r}"
            )
        n, k = max(out_features, in_features), min(out_features, in_features)
        w = random_stiefel(n, k, generator=generator)
        if out_features < in_features:
            w = w.T.contiguous()
        self.weight = stiefel_parameter(w)
        if parametrization != "manifold":
            del self.weight.manifold
            constrain(self, "weight", parametrization)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.in_features, self.out_features = in_features, out_features

    def _check(self, x: torch.Tensor, features: int, name: str) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            given = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(
                f"{name} must be a floating-point tensor [..., {features}], got {given}"
            )
        if x.dim() < 1 or x.shape[-1] != features:
            raise ValueError(f"{name} must have shape [..., {features}], got {tuple(x.shape)}")
        check_dtype_matches(self, x, name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`W x + b` on the last dimension of ``x`` (``[..., in_features]``)."""
        self._check(x, self.in_features, "x")
        y = x @ self.weight.T
        return y + self.bias if self.bias is not None else y

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        r""":math:`W^\top y` (no bias), ``y`` of shape ``[..., out_features]``."""
        self._check(y, self.out_features, "y")
        return y @ self.weight

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
