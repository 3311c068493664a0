r"""
Quick start: registered components in deepinv solvers
=====================================================

Every component of deepinv-pnn is registered by name. This example degrades an embedded
image with a standard problem, reconstructs it with the total-variation baselines through
``deepinv.optim`` and compares methods with :func:`deepinv_pnn.compare.compare_methods`,
which is what ``deepinv-pnn demo`` runs.
"""

# %%
# Load an embedded image and build a deblurring problem
# ------------------------------------------------------
# The default images are scikit-image's bundled images: nothing is downloaded.

import deepinv as dinv
import torch

import deepinv_pnn
from deepinv_pnn.problems import make_physics

torch.manual_seed(0)
x = deepinv_pnn.load_image("camera", size=96)
physics = make_physics("deblur", tuple(x.shape[1:]), noise_level=0.01)
y = physics(x)

# %%
# A registered prior inside a deepinv optimiser
# ---------------------------------------------
# ``deepinv_pnn.build(name)`` returns a real deepinv object: here the TV prior, minimised
# by proximal gradient descent.

prior = deepinv_pnn.build("tv-prior")
solver = dinv.optim.PGD(
    data_fidelity=dinv.optim.L2(), prior=prior, lambda_reg=0.02, stepsize=1.0, max_iter=60
)
x_tv = solver(y, physics)
psnr = dinv.metric.PSNR()
print(f"observation {float(psnr(y, x)):.2f} dB, TV {float(psnr(x_tv, x)):.2f} dB")

dinv.utils.plot([x, y, x_tv], titles=["ground truth", "observation", "TV (PGD)"])

# %%
# Compare every registered method that applies
# --------------------------------------------
# The registry knows which problems each component solves and how to plug it into a
# solver; the table lists PSNR, SSIM and run time.

from deepinv_pnn.compare import compare_methods, format_table

_, results = compare_methods(x, "deblur", 0.01, methods=["tv-denoiser", "tv-prior"], progress=False)
print(format_table(results))
