r"""Exact orthogonal layers: dense Stiefel layers and Parseval / orthogonal convolutions.

Re-exports :mod:`deepinv_pnn.nn.stiefel` (dense, both orientations, parametrisations and
manifold parameters) and :mod:`deepinv_pnn.nn.orthogonal_conv` (circular-boundary
convolutions with :math:`T^\top T = I`), so users write
``from deepinv_pnn.nn.orthogonal import ParsevalConv2d, StiefelLinear, constrain``.

:Examples:

>>> import torch
>>> from deepinv_pnn.nn.orthogonal import ParsevalConv2d
>>> T = ParsevalConv2d(1, 4, n_stages=1)
>>> T.orthogonality_error() < 1e-6
True
"""

from deepinv_pnn.nn.orthogonal_conv import ParsevalConv2d, group_shift
from deepinv_pnn.nn.stiefel import (
    Stiefel,
    StiefelLinear,
    cayley,
    constrain,
    is_stiefel_parameter,
    orthogonality_error,
    project_stiefel,
    random_stiefel,
    skew,
    stiefel_parameter,
)

__all__ = [
    "ParsevalConv2d",
    "Stiefel",
    "StiefelLinear",
    "cayley",
    "constrain",
    "group_shift",
    "is_stiefel_parameter",
    "orthogonality_error",
    "project_stiefel",
    "random_stiefel",
    "skew",
    "stiefel_parameter",
]
