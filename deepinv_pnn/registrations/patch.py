"""Registry entries of the patch-prior family (issue 5): WPP, patchNR, WPPNet, WPPFlow.

The priors are built on an embedded scikit-image texture (no data needed at run time);
for a material pass ``reference_images=`` (WPP) or ``pretrained=True`` (patchNR, the
shipped SiC weights).
"""

from __future__ import annotations

from deepinv_pnn.data import load_image
from deepinv_pnn.pretrained import WEIGHTS_DIR
from deepinv_pnn.problems import SR_FACTOR
from deepinv_pnn.registry import Component, register


def build_wpp(reference: str = "grass", reference_size: int = 96, **kwargs):
    """WassersteinPatchPrior on an embedded image (``reference``) unless ``reference_images`` is given."""
    from deepinv_pnn.optim.wpp import WassersteinPatchPrior

    images = kwargs.pop("reference_images", None)
    if images is None:
        images = load_image(reference, size=reference_size)
    return WassersteinPatchPrior(images, **kwargs)


def build_patchnr(pretrained: bool | str | None = None, **kwargs):
    """PatchNR with the shipped SiC weights when they exist (``pretrained=None``), else untrained."""
    from deepinv_pnn.optim.patchnr import PRETRAINED, PatchNR

    if pretrained is None:
        pretrained = (WEIGHTS_DIR / PRETRAINED[kwargs.get("dataset", "material")]).is_file()
    return PatchNR(pretrained=pretrained, **kwargs)


def build_wppnet(pretrained: bool | str | None = None, **kwargs):
    """WPPNet with the shipped SiC x4 weights when they exist (``pretrained=None``)."""
    from deepinv_pnn.models.wppnet import WPPNet, shipped_weights

    if pretrained is None:
        shipped = shipped_weights(**{k: kwargs[k] for k in ("channels", "factor", "features", "blocks") if k in kwargs})
        pretrained = shipped is not None and (WEIGHTS_DIR / shipped).is_file()
    return WPPNet(pretrained=pretrained, **kwargs)


def build_wppflow(pretrained: bool | str | None = None, **kwargs):
    """WPPFlow with the shipped SiC x4 weights when they exist (``pretrained=None``)."""
    from deepinv_pnn.models.wppflow import WPPFlow

    if pretrained is None:  # the shipped file fits the default architecture only (the registry's x2 problem gets none)
        default = {"channels": 1, "factor": 4, "features": 48, "blocks": 6, "n_blocks": 6, "hidden": 64,
                   "cond_features": 32}
        pretrained = (WEIGHTS_DIR / "wppflow_sic_x4.safetensors").is_file() and all(
            kwargs.get(k, v) == v for k, v in default.items())
    return WPPFlow(pretrained=pretrained, **kwargs)


register(
    Component(
        name="wpp",
        kind="prior",
        factory=build_wpp,
        description="Wasserstein patch prior (multiscale semi-dual W2^2 to a reference's patches; Hertrich et al. 2022)",
        defaults={"reference": "grass", "n_reference_patches": 2000, "n_scales": 2, "psi_iters": 10},
        problems=("sr", "deblur"),
        channels=(1,),
        # g is the mean over ~700 patches of squared distances: its gradient is O(1/N), so a
        # useful weight is large; the prior is a minimum of quadratics (nonsmooth).
        solver={"algorithm": "PGD", "lambda_reg": 50.0, "max_iter": 100, "stepsize": 1.0},
        contract={"grad_smooth": False, "lambda_reg": 1.0},
        # a PGD reconstruction re-solves the semi-dual problem at every step: minutes on a CPU
        in_demo=False,
    )
)

register(
    Component(
        name="patchnr",
        kind="prior",
        factory=build_patchnr,
        description="image-level patch normalizing-flow prior, trainable (shipped SiC weights when present)",
        defaults={"patch_size": 6, "n_patches": 10000},
        problems=("sr", "deblur", "denoise"),
        channels=(1,),
        solver={"algorithm": "PGD", "lambda_reg": 0.001, "max_iter": 50, "stepsize": 1.0},
        # g is smooth (SiLU couplings) but a trained flow is sharply peaked: the L-BFGS prox
        # is checked at a small gamma.
        contract={"prox_gamma": 1e-3, "lambda_reg": 1e-4, "slow": True},
        # its L-BFGS prox makes a PGD reconstruction take minutes on a CPU
        in_demo=False,
    )
)

register(
    Component(
        name="wppnet",
        kind="reconstructor",
        factory=build_wppnet,
        description="WPPNet: superresolution network trained from LR data + one reference (Altekrueger & Hertrich 2023);"
        " built for the sr problem's x2, untrained there (WPPNet(pretrained=True): the shipped SiC x4 network)",
        defaults={"factor": SR_FACTOR},
        problems=("sr",),
        channels=(1,),
    )
)

register(
    Component(
        name="wppflow",
        kind="reconstructor",
        factory=build_wppflow,
        description="WPPFlow: conditional normalizing flow for SR; forward = mean of 8 samples, mean_std() for uncertainty",
        defaults={"factor": SR_FACTOR},
        problems=("sr",),
        channels=(1,),
    )
)
