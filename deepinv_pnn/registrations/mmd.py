"""Registry entries of the MMD flows (Riesz kernel, sliced by sorting)."""

from __future__ import annotations

from deepinv_pnn.registry import Component, register
from deepinv_pnn.sampling.generative_flow import GenerativeMMDFlow


def mmd_digits(pretrained: bool | str = True, n_stages: int = 8, hidden: int = 256) -> GenerativeMMDFlow:
    """The generative sliced MMD flow trained on scikit-learn's 8x8 digits; ``sample(n)``."""
    return GenerativeMMDFlow((1, 8, 8), n_stages=n_stages, hidden=hidden, pretrained=pretrained,
                             default_file="mmd_digits.safetensors").eval()


register(
    Component(
        name="mmd-digits",
        kind="sampler",
        factory=mmd_digits,
        description="generative sliced MMD flow (Riesz kernel) on 8x8 digits; sample(n)",
        defaults={"pretrained": True},
        channels=(1,),
        contract={"sample_kwargs": {"seed": 0}},
    )
)

# The conditional flow (ConditionalMMDFlow / MMDPosteriorMean) is not registered: a CPU-trained
# digits-inpainting model (a few hundred flow steps) ignores the observation; the reference
# trains with up to 30000 flow steps per network. See docs/userguide/mmd.rst.
