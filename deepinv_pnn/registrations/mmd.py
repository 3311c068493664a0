"""Registry entries of the MMD flows (Riesz kernel, sliced by sorting)."""

from __future__ import annotations

from deepinv_pnn.registry import Component, register
from deepinv_pnn.sampling.conditional_flow import ConditionalMMDFlow, MMDPosteriorMean
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


def mmd_digits_posterior(
    pretrained: bool | str = True, n_stages: int = 8, hidden: int = 256, n_samples: int = 32
) -> MMDPosteriorMean:
    """The conditional MMD flow for 8x8 digits inpainting (the seed-0 ``inpaint`` mask of
    :func:`deepinv_pnn.problems.make_physics`, noise 0.01): ``forward`` gives the posterior
    mean of ``n_samples`` samples, ``posterior(y, physics)`` the samples, mean and std."""
    flow = ConditionalMMDFlow((1, 8, 8), n_stages=n_stages, hidden=hidden, consistent_latent=True,
                              pretrained=pretrained, default_file="mmd_digits_posterior.safetensors")
    return MMDPosteriorMean(flow.eval(), n_samples=n_samples).eval()


register(
    Component(
        name="mmd-digits-posterior",
        kind="reconstructor",
        factory=mmd_digits_posterior,
        description="conditional MMD flow posterior sampler, 8x8 digits inpainting; posterior(y, physics)",
        defaults={"pretrained": True},
        problems=("inpaint",),
        channels=(1,),
        contract={"img_size": (8, 8)},
    )
)
