r"""The optimisers of the ConvPNN recipe, by name.

The orthogonality (Stiefel) constraint of a PNN is kept either by a manifold optimiser on
the Stiefel parameters (``cayley-adam``, ``cayley-sgd``: Cayley retraction;
``ispalm``: the inertial stochastic PALM with a Stiefel projection as the proximal step)
or by a parametrisation with a Euclidean optimiser (``adam``, for a model built with
``parametrization="cayley"``). Stiefel and Euclidean parameters get separate learning rates.

:Examples:

>>> from deepinv_pnn.models.pnn import ConvPNN
>>> from deepinv_pnn.training.pnn_optimizers import make_optimizer
>>> model = ConvPNN(channels=1, width=8, state_channels=2, n_layers=2)
>>> type(make_optimizer(model, "cayley-adam", lr=1e-3, lr_stiefel=1e-2)).__name__
'CayleyAdam'
"""

from __future__ import annotations

import torch

from deepinv_pnn.nn.stiefel import is_stiefel_parameter

OPTIMIZERS = ("cayley-adam", "cayley-sgd", "ispalm", "adam")


def make_optimizer(model: torch.nn.Module, name: str, lr: float, lr_stiefel: float):
    """The optimiser ``name`` with separate learning rates for Stiefel and Euclidean parameters.

    :param torch.nn.Module model: the network (a :class:`~deepinv_pnn.models.pnn.ConvPNN`).
    :param str name: one of :data:`OPTIMIZERS`.
    :param float lr: learning rate of the Euclidean parameters (biases, scalars).
    :param float lr_stiefel: learning rate of the Stiefel parameters.
    """
    from deepinv_pnn.training.manifold import CayleyAdam, CayleySGD

    stiefel = [p for p in model.parameters() if is_stiefel_parameter(p)]
    other = [p for p in model.parameters() if not is_stiefel_parameter(p) and p.requires_grad]
    if name == "cayley-adam":
        return CayleyAdam([{"params": stiefel, "lr": lr_stiefel}, {"params": other, "lr": lr}])
    if name == "cayley-sgd":
        return CayleySGD(
            [{"params": stiefel, "lr": lr_stiefel}, {"params": other, "lr": lr}], momentum=0.9
        )
    if name == "ispalm":
        from deepinv_pnn.training.ispalm import ISPALM

        return ISPALM([stiefel, other], lr=[lr_stiefel, lr], prox=["stiefel", None])
    if name == "adam":
        return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
