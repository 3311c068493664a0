"""deepinv-pnn: learned, provably well-behaved regularisers and denoisers for DeepInverse.

Subpackages mirror deepinv: :mod:`deepinv_pnn.models` (denoisers, reconstructors),
:mod:`deepinv_pnn.optim` (priors, solvers), :mod:`deepinv_pnn.sampling` (MMD flows),
:mod:`deepinv_pnn.training` (manifold optimisers, recipes) and :mod:`deepinv_pnn.nn`
(building blocks that know torch only).
"""

__version__ = "0.1.0"

from deepinv_pnn.data import ImageFolderDataset, PatchDataset, load_image
from deepinv_pnn.pretrained import load_pretrained
from deepinv_pnn.registry import available, build, components, get

__all__ = [
    "__version__",
    "ImageFolderDataset",
    "PatchDataset",
    "available",
    "build",
    "components",
    "get",
    "load_image",
    "load_pretrained",
]
