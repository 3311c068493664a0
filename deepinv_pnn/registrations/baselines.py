"""Registry entries of the total-variation baselines."""

from deepinv_pnn.baselines import TVDenoiser, TVPrior
from deepinv_pnn.registry import Component, register

register(
    Component(
        name="tv-denoiser",
        kind="denoiser",
        factory=TVDenoiser,
        description="isotropic TV denoiser (deepinv's TVDenoiser, checked inputs); baseline",
        defaults={"scale": 1.0, "crit": 1e-4, "n_it_max": 300},
        problems=("denoise", "deblur", "sr", "inpaint"),
        solver={"algorithm": "PGD", "g_param": 0.02, "lambda_reg": 1.0, "max_iter": 100, "thres_conv": 1e-4},
        contract={"pnp_g_param": 0.05, "any_channels": True},
    )
)

register(
    Component(
        name="tv-prior",
        kind="prior",
        factory=TVPrior,
        defaults={"def_crit": 1e-5, "n_it_max": 300},
        description="isotropic total variation prior (deepinv's TVPrior, checked inputs); baseline",
        problems=("deblur", "sr", "inpaint"),
        solver={"algorithm": "PGD", "lambda_reg": 0.02, "max_iter": 100, "thres_conv": 1e-4},
        contract={"prox_gamma": 0.05, "grad_smooth": False, "any_channels": True},
    )
)
