"""deepinv_pnn.optim."""
from deepinv_pnn.optim.patch_reconstruction import AdamPatchReconstructor
from deepinv_pnn.optim.patchnr import PatchNR
from deepinv_pnn.optim.pnp_steps import FirmlyNonexpansive, pnp_parameters, pnp_solver
from deepinv_pnn.optim.ridge import RidgeRegularizer
from deepinv_pnn.optim.ridge_convex import ConvexRidgeRegularizer
from deepinv_pnn.optim.ridge_weakly_convex import WeaklyConvexRidgeRegularizer
from deepinv_pnn.optim.weighted_tv import WeightedTVPrior
from deepinv_pnn.optim.wpp import WassersteinPatchPrior
