"""deepinv_pnn.training."""
from deepinv_pnn.training.ispalm import ISPALM
from deepinv_pnn.training.manifold import CayleyAdam, CayleySGD
