r"""
x4 superresolution with patch priors: WPP, patchNR, WPPNet, WPPFlow
===================================================================

When a single high-resolution image of a material (or texture) is known, the statistics of
its small patches can regularise superresolution of other images of the same material
:footcite:p:`hertrich2022wpp,altekruger2023wppnets,altekruger2023patchnr`.

This example degrades an image by the operator of these papers
(:class:`deepinv_pnn.sr_physics.WPPSuperResolution`: 16x16 Gaussian blur, stride 4,
periodic) with noise 0.01 and compares

- bicubic interpolation, *aligned* with the operator (its low-resolution pixel ``i`` sits at
  high-resolution coordinate ``4 i + 7.5``: a naive bicubic is 6 pixels off),
- total variation (:class:`deepinv_pnn.baselines.TVPrior`),
- the Wasserstein patch prior (:class:`deepinv_pnn.optim.WassersteinPatchPrior`),
- patchNR (:class:`deepinv_pnn.optim.PatchNR`), trained here in a few seconds on the
  reference,
- WPPNet and WPPFlow (mean and pixel-wise std) when their shipped weights exist.

It uses the SiC micro-CT slices when ``../shared/data/material`` exists, else the embedded
"grass" texture (reference: its left half, test: a crop of its right half). Everything runs
on a CPU in about a minute on crops of 96x96 pixels. Such a crop is smaller than the SiC
grains (100-200 pixels), so its patch distribution differs from the reference's and the
WPP, which imposes the reference's, is handicapped; ``benchmarks/bench_patch_sr.py``
measures all methods on the whole 600x600 held-out slice.
"""

# %%
from pathlib import Path

import deepinv as dinv
import torch

from deepinv_pnn.baselines import TVPrior
from deepinv_pnn.data import load_image
from deepinv_pnn.optim import AdamPatchReconstructor, PatchNR, WassersteinPatchPrior
from deepinv_pnn.sr_physics import WPPSuperResolution, aligned_upsample

torch.manual_seed(0)
candidates = [Path(p) / "shared" / "data" / "material" for p in ("..", "../..")]
data = next((c for c in candidates if (c / "val_SiC.png").exists()), None)
if data is not None:
    reference = load_image(data / "ref_SiC.png")[..., :300, :300]
    x = load_image(data / "val_SiC.png")[..., 200:296, 200:296]
    name = "SiC"
else:
    grass = load_image("grass")
    reference, x = grass[..., :256, :256], grass[..., 300:396, 300:396]
    name = "grass"

# %%
# The forward operator and the observation
# ----------------------------------------
physics = WPPSuperResolution(factor=4, noise_model=dinv.physics.GaussianNoise(0.01, rng=torch.Generator().manual_seed(0)))
y = physics(x)
bicubic = aligned_upsample(y, 4)
naive = torch.nn.functional.interpolate(y, scale_factor=4, mode="bicubic")
psnr = dinv.metric.PSNR()
print(f"{name}: aligned bicubic {psnr(bicubic.clamp(0, 1), x).item():.2f} dB, "
      f"naive bicubic {psnr(naive.clamp(0, 1), x).item():.2f} dB")

# %%
# Variational reconstructions
# ---------------------------
# :math:`\min_x \frac1m\|Ax-y\|^2 + \lambda g(x)` by Adam from the aligned bicubic image,
# the papers' solver. The WPP dual potentials are warm-started from one Adam step to the next.
results = {"bicubic": bicubic}
tv = AdamPatchReconstructor(TVPrior(), lambda_reg=1e-6, steps=150, lr=0.01)
results["TV"] = tv(y, physics, init=bicubic)
# The reference is TV-denoised first (``reference_denoise``): its pixel-level grain cannot be
# recovered from the observation, and the Wasserstein distance would otherwise reward
# copying it; the iterates are averaged after the first 30 steps.
wpp = WassersteinPatchPrior(reference, n_reference_patches=1500, psi_iters=5, reference_denoise=0.05)
results["WPP"] = AdamPatchReconstructor(wpp, lambda_reg=1e-3, steps=80, lr=0.01, average_from=30)(
    y, physics, init=bicubic)

# %%
# patchNR trained on the reference's patches (a short fit; the shipped SiC weights are
# loaded by ``PatchNR(pretrained=True)``)
patchnr = PatchNR(patch_size=6, n_blocks=3, hidden=64, n_patches=3000, resample=True)
history = patchnr.fit(reference, steps=150, batch_size=512, lr=2e-3)
print(f"patchNR training NLL per patch: {history[0]:.1f} -> {history[-1]:.1f}")
results["patchNR"] = AdamPatchReconstructor(patchnr, lambda_reg=2e-5, steps=80, lr=0.03)(y, physics, init=bicubic)

# %%
# Networks trained with the Wasserstein patch loss (shipped weights, if any)
from deepinv_pnn.models import WPPFlow, WPPNet

std = None
for cls, label in ((WPPNet, "WPPNet"), (WPPFlow, "WPPFlow mean")):
    try:
        net = cls(pretrained=True).eval()
    except (FileNotFoundError, ValueError) as err:
        print(f"{label}: no shipped weights ({str(err)[:60]}...)")
        continue
    with torch.no_grad():
        if cls is WPPFlow:
            results[label], std = net.mean_std(y, physics, n=8, generator=torch.Generator().manual_seed(0))
        else:
            results[label] = net(y, physics)

# %%
# Results
# -------
for label, image in results.items():
    print(f"{label:>14}: {psnr(image.clamp(0, 1), x).item():6.2f} dB")
images = [x, *[r.clamp(0, 1) for r in results.values()]]
titles = ["ground truth", *results]
if std is not None:
    images.append(std / std.max())
    titles.append("WPPFlow std")
dinv.utils.plot(images, titles=titles, figsize=(2.2 * len(images), 2.6))

# %%
# :References:
#
# .. footbibliography::
