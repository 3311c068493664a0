"""Registry entries of the TV parameter-map family (issue 6, Kofler et al. 2023)."""

from deepinv_pnn.models.param_map import WEIGHTS, TVParameterMapNet
from deepinv_pnn.optim.weighted_tv import WeightedTVPrior
from deepinv_pnn.pretrained import WEIGHTS_DIR
from deepinv_pnn.registry import Component, register


def _shipped(problem: str) -> bool:
    return (WEIGHTS_DIR / WEIGHTS[problem]).is_file()


register(
    Component(
        name="tv-param-map",
        kind="reconstructor",
        factory=TVParameterMapNet,
        description=(
            "weighted TV with a U-Net regularisation map, unrolled PDHG on [A; grad] "
            "(Kofler et al. 2023); weights trained for denoising (sigma 0.05-0.15)"
        ),
        defaults={"pretrained": _shipped("denoise") or None, "problem": "denoise"},
        problems=("denoise", "deblur", "sr", "inpaint"),
        channels=(1, 3),
    )
)

register(
    Component(
        name="tv-param-map-deblur",
        kind="reconstructor",
        factory=TVParameterMapNet,
        description=(
            "weighted TV with a U-Net regularisation map, unrolled PDHG (Kofler et al. 2023); "
            "weights trained for Gaussian deblurring (std 1.6, noise 0.01)"
        ),
        defaults={"pretrained": _shipped("deblur") or None, "problem": "deblur"},
        problems=("deblur", "denoise", "sr", "inpaint"),
        channels=(1, 3),
    )
)

register(
    Component(
        name="weighted-tv",
        kind="prior",
        factory=WeightedTVPrior,
        description=(
            "total variation weighted by a given pixel-wise map ||Lambda * grad x||_1; prox by "
            "certified dual FGP, prox_conjugate for deepinv's PDCP with K=nabla (default map 1)"
        ),
        defaults={"lambda_map": 1.0},
        problems=("deblur", "sr", "inpaint"),
        channels=(1, 3),
        solver={"algorithm": "PGD", "lambda_reg": 0.02, "max_iter": 200},
        contract={"prox_gamma": 0.05, "grad_smooth": False, "any_channels": True},
    )
)
