r"""
Texture superresolution with the Wasserstein patch prior
========================================================

For a texture, a single high-resolution example fixes the statistics of its small patches.
The Wasserstein patch prior :footcite:p:`hertrich2022wpp` asks the reconstruction's patch
distribution to match the example's (centred patches here: only the texture, not the local
grey level, is imposed). No training is involved: the prior is built from the reference
image in a second.

This example degrades a 128x128 crop of a grass texture by the x4 operator of the WPP
papers (:class:`deepinv_pnn.sr_physics.WPPSuperResolution`) with noise 0.01 and compares
aligned bicubic interpolation, total variation and WPP. It uses the Kylberg grass texture of
``../shared/data/texture`` when present, else scikit-image's embedded "grass" image.
Runs on a CPU in about a minute.

On such a strongly blurred texture the fine grass blades are gone from the observation
and PSNR hardly separates the regularisers (measured with the Kylberg texture on a shared
CPU: bicubic 22.07, TV 23.81, WPP 23.81 dB); compare the images for the texture.
"""

# %%
from pathlib import Path

import deepinv as dinv
import torch

from deepinv_pnn.baselines import TVPrior
from deepinv_pnn.data import load_image
from deepinv_pnn.optim import AdamPatchReconstructor, WassersteinPatchPrior
from deepinv_pnn.sr_physics import WPPSuperResolution, aligned_upsample

torch.manual_seed(0)
candidates = [Path(p) / "shared" / "data" / "texture" / "ref_grass.png" for p in ("..", "../..")]
kylberg = next((c for c in candidates if c.exists()), None)
image = load_image(kylberg if kylberg is not None else "grass")
reference = image[..., :256, :]  # the top part: the example texture
x = image[..., 320:448, 200:328]  # a 128x128 test crop from the bottom part
print("texture:", "Kylberg grass" if kylberg is not None else "scikit-image grass")

# %%
# Observation
# -----------
physics = WPPSuperResolution(factor=4, noise_model=dinv.physics.GaussianNoise(0.01, rng=torch.Generator().manual_seed(0)))
y = physics(x)
bicubic = aligned_upsample(y, 4)

# %%
# Reconstructions by Adam from the aligned bicubic image
# ------------------------------------------------------
# :math:`\min_x \frac1m\|Ax - y\|^2 + \lambda g(x)`; the WPP uses 5000 random patches of
# :math:`x` per scale and step (redrawn each step) against 1500 reference patches.
results = {"bicubic": bicubic}
tv = TVPrior()
results["TV"] = AdamPatchReconstructor(tv, lambda_reg=3e-3 / x[0].numel(), steps=150)(y, physics, init=bicubic)
wpp = WassersteinPatchPrior(reference, n_reference_patches=1500, psi_iters=5, n_patches=5000, resample=True,
                            center=True)
results["WPP"] = AdamPatchReconstructor(wpp, lambda_reg=3e-3, steps=60)(y, physics, init=bicubic)

# %%
# Results
# -------
psnr = dinv.metric.PSNR()
for label, image in results.items():
    print(f"{label:>8}: {psnr(image.clamp(0, 1), x).item():6.2f} dB")
dinv.utils.plot([x, *[r.clamp(0, 1) for r in results.values()]], titles=["ground truth", *results],
                figsize=(10, 2.8))

# %%
# :References:
#
# .. footbibliography::
