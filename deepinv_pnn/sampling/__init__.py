"""deepinv_pnn.sampling: MMD with the Riesz kernel (exact, and sliced by sorting in
O(N log N)), MMD particle flows, generative and conditional MMD flows."""

from deepinv_pnn.sampling.conditional_flow import (
    ConditionalMMDFlow,
    MMDPosteriorMean,
    condition_features,
)
from deepinv_pnn.sampling.generative_flow import (
    DisplacementMLP,
    GenerativeMMDFlow,
    train_flow_chain,
)
from deepinv_pnn.sampling.mmd_riesz import mmd_riesz, riesz_constant
from deepinv_pnn.sampling.particle_flow import MMDParticleFlow
from deepinv_pnn.sampling.sliced_mmd import (
    local_projections,
    random_directions,
    sliced_mmd_riesz,
    sliced_mmd_riesz_1d,
)

__all__ = [
    "ConditionalMMDFlow",
    "DisplacementMLP",
    "GenerativeMMDFlow",
    "MMDParticleFlow",
    "MMDPosteriorMean",
    "condition_features",
    "local_projections",
    "mmd_riesz",
    "random_directions",
    "riesz_constant",
    "sliced_mmd_riesz",
    "sliced_mmd_riesz_1d",
    "train_flow_chain",
]
