"""Registry entries of the learned ridge regularisers (CRR-NN, WCRR-NN) and their denoisers."""

from __future__ import annotations

from deepinv_pnn.models.ridge_denoiser import RidgeDenoiser
from deepinv_pnn.optim.ridge_convex import CRR_WEIGHTS, ConvexRidgeRegularizer
from deepinv_pnn.optim.ridge_weakly_convex import WCRR_WEIGHTS, WeaklyConvexRidgeRegularizer
from deepinv_pnn.pretrained import WEIGHTS_DIR
from deepinv_pnn.registry import Component, register

_CRR_SHIPPED = (WEIGHTS_DIR / CRR_WEIGHTS).is_file()
_WCRR_SHIPPED = (WEIGHTS_DIR / WCRR_WEIGHTS).is_file()


def crr_denoiser(pretrained=_CRR_SHIPPED, tol: float = 1e-5, max_iter: int = 1000, **kwargs) -> RidgeDenoiser:
    """The prox of the shipped CRR-NN as a denoiser."""
    return RidgeDenoiser(ConvexRidgeRegularizer(pretrained=pretrained, **kwargs), tol=tol, max_iter=max_iter)


def wcrr_denoiser(pretrained=_WCRR_SHIPPED, tol: float = 1e-5, max_iter: int = 1000, **kwargs) -> RidgeDenoiser:
    """The prox of the shipped WCRR-NN as a denoiser."""
    return RidgeDenoiser(WeaklyConvexRidgeRegularizer(pretrained=pretrained, **kwargs), tol=tol, max_iter=max_iter)


_PROBLEMS = ("denoise", "deblur", "sr", "inpaint")

register(
    Component(
        name="crr",
        kind="prior",
        factory=ConvexRidgeRegularizer,
        description="convex ridge regulariser CRR-NN (Goujon et al. 2023), trained on BSD400; g_param = noise level",
        defaults={"pretrained": _CRR_SHIPPED},
        problems=("deblur", "sr", "inpaint"),
        channels=(1, 3),
        solver={"algorithm": "PGD", "lambda_reg": 1.0, "g_param": 0.02, "max_iter": 300},
        contract={"g_param": 0.05, "prox_gamma": 0.5, "lambda_reg": 1.0, "any_channels": True},
    )
)

register(
    Component(
        name="wcrr",
        kind="prior",
        factory=WeaklyConvexRidgeRegularizer,
        description="1-weakly convex ridge regulariser WCRR-NN (Goujon et al. 2024), BSD400; g_param = noise level",
        defaults={"pretrained": _WCRR_SHIPPED},
        problems=("deblur", "sr", "inpaint"),
        channels=(1, 3),
        solver={"algorithm": "PGD", "lambda_reg": 1.0, "g_param": 0.02, "max_iter": 300},
        contract={"g_param": 0.05, "prox_gamma": 0.5, "lambda_reg": 1.0, "any_channels": True},
    )
)

register(
    Component(
        name="crr-denoiser",
        kind="denoiser",
        factory=crr_denoiser,
        description="prox of the CRR-NN (firmly nonexpansive denoiser, one model for all noise levels)",
        defaults={"pretrained": _CRR_SHIPPED},
        problems=_PROBLEMS,
        channels=(1, 3),
        solver={"algorithm": "PGD", "lambda_reg": 1.0, "max_iter": 200},
        contract={"pnp_g_param": 0.05, "any_channels": True},
    )
)

register(
    Component(
        name="wcrr-denoiser",
        kind="denoiser",
        factory=wcrr_denoiser,
        description="prox of the WCRR-NN (denoising objective convex), one model for all noise levels",
        defaults={"pretrained": _WCRR_SHIPPED},
        problems=_PROBLEMS,
        channels=(1, 3),
        solver={"algorithm": "PGD", "lambda_reg": 1.0, "max_iter": 200},
        contract={"pnp_g_param": 0.05, "any_channels": True},
    )
)
