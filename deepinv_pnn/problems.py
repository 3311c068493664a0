"""Standard test problems: the forward operators used by the CLI, the demo and the tests.

Each problem is a :class:`deepinv.physics.LinearPhysics` with Gaussian noise:

- ``denoise``: identity.
- ``deblur``: circular Gaussian blur of standard deviation 1.6 pixels (FFT based).
- ``sr``: x2 downsampling after a Gaussian anti-aliasing filter, circular boundary.
- ``inpaint``: half of the pixels missing, at random (seeded).
"""

from __future__ import annotations

import deepinv as dinv
import torch

from deepinv_pnn.registry import PROBLEMS
from deepinv_pnn.validation import check_positive

BLUR_STD = 1.6
SR_FACTOR = 2
INPAINT_KEEP = 0.5


def make_physics(
    problem: str,
    img_size: tuple[int, int, int],
    noise_level: float = 0.01,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> dinv.physics.LinearPhysics:
    r"""Build the forward operator of a standard problem.

    :param str problem: ``denoise``, ``deblur``, ``sr`` or ``inpaint``.
    :param tuple img_size: ``(C, H, W)`` of the unknown image.
    :param float noise_level: standard deviation of the Gaussian noise.
    :param device: the device of the operator.
    :param int seed: seed of the noise and of the inpainting mask.
    :return: the physics, with a seeded Gaussian noise model.

    :Examples:

    >>> from deepinv_pnn.problems import make_physics
    >>> physics = make_physics("deblur", (1, 32, 32), noise_level=0.01)
    >>> physics.A(torch.ones(1, 1, 32, 32)).shape
    torch.Size([1, 1, 32, 32])
    """
    if problem not in PROBLEMS:
        raise ValueError(f"problem must be one of {PROBLEMS}, got {problem!r}")
    noise_level = check_positive(noise_level, "noise_level", allow_zero=True)
    if len(img_size) != 3:
        raise ValueError(f"img_size must be (C, H, W), got {img_size}")
    rng = torch.Generator(device=device).manual_seed(seed)
    noise = dinv.physics.GaussianNoise(sigma=noise_level, rng=rng)
    if problem == "denoise":
        physics = dinv.physics.Denoising(noise_model=noise, device=device)
    elif problem == "deblur":
        kernel = dinv.physics.functional.gaussian_blur(sigma=BLUR_STD)
        physics = dinv.physics.BlurFFT(
            img_size=tuple(img_size), filter=kernel, noise_model=noise, device=device
        )
    elif problem == "sr":
        physics = dinv.physics.Downsampling(
            img_size=tuple(img_size),
            filter="gaussian",
            factor=SR_FACTOR,
            padding="circular",
            noise_model=noise,
            device=device,
        )
    else:
        mask_rng = torch.Generator().manual_seed(seed)
        mask = (torch.rand((1, 1) + tuple(img_size[1:]), generator=mask_rng) < INPAINT_KEEP).float()
        physics = dinv.physics.Inpainting(
            img_size=tuple(img_size), mask=mask.to(device), noise_model=noise, device=device
        )
    return physics


def noise_level_of(physics: dinv.physics.Physics) -> float:
    """The Gaussian noise standard deviation of a physics (0 when it has none)."""
    sigma = getattr(getattr(physics, "noise_model", None), "sigma", None)
    if sigma is None:
        return 0.0
    return float(torch.as_tensor(sigma).max())
