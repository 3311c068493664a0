"""Registry entries of the proximal neural networks (PNN) family."""

from deepinv_pnn.models.pnn import ConvPNN
from deepinv_pnn.registry import Component, register

register(
    Component(
        name="convpnn",
        kind="denoiser",
        factory=ConvPNN,
        description=(
            "convolutional PNN denoiser, exactly Parseval convolutions, averaged by construction "
            "(shipped gray weights, sigma0=25/255; colour via an opponent transform)"
        ),
        defaults={"pretrained": True},
        problems=("denoise", "deblur", "sr", "inpaint"),
        channels=(1, 3),
        solver={"algorithm": "PGD", "lambda_reg": 1.0, "max_iter": 300},
        contract={"pnp_g_param": 0.05},
    )
)

register(
    Component(
        name="convpnn-small-sigma",
        kind="denoiser",
        factory=ConvPNN,
        description=(
            "convolutional PNN denoiser trained at sigma0=0.01 for plug-and-play deblurring "
            "(averaged by construction; PnP-PGD converges)"
        ),
        defaults={"pretrained": True, "sigma0": 0.01},
        problems=("denoise", "deblur", "sr", "inpaint"),
        channels=(1, 3),
        solver={"algorithm": "PGD", "lambda_reg": 1.0, "max_iter": 300},
        contract={"pnp_g_param": 0.05, "slow": True},
    )
)

register(
    Component(
        name="convpnn-pnp-deblur",
        kind="denoiser",
        factory=ConvPNN,
        description=(
            "the small-sigma convolutional PNN fine-tuned through the PnP-FBS fixed point of "
            "Gaussian deblurring (blur std 1.6, noise 0.01); still averaged, PnP-PGD converges"
        ),
        defaults={"pretrained": "deblur", "sigma0": 0.01},
        problems=("deblur",),
        channels=(1, 3),
        solver={"algorithm": "PGD", "lambda_reg": 1.0, "max_iter": 300},
        contract={"pnp_g_param": 0.05, "slow": True},
    )
)
