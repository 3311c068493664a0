r"""
Generative sliced MMD flow on 8x8 digits
========================================

A generative MMD flow :footcite:p:`hertrich2024slicedmmd` is a chain of small networks,
each trained to reproduce the displacement of particles under the sliced MMD flow toward
the data. The shipped model ``mmd-digits`` was trained for a few minutes on one CPU core on
1200 of scikit-learn's bundled digits (recipe :mod:`deepinv_pnn.training.train_mmd_flow`).
We compare its samples with a Gaussian fit of the data by the energy distance to the 597
held-out digits, and check that it does not copy training images.
"""

# %%
# Sample from the shipped model
# -----------------------------

import matplotlib.pyplot as plt
import torch

import deepinv_pnn
from deepinv_pnn.sampling.digits import evaluate_samples, gaussian_fit_sample, load_digits

model = deepinv_pnn.build("mmd-digits")
train, held_out = load_digits("train"), load_digits("test")
samples = model.sample(2000, seed=1)
gauss = gaussian_fit_sample(train, 2000, seed=1)


def grid(images, title, ax):
    tiles = images[:64, 0].clamp(0, 1).reshape(8, 8, 8, 8).permute(0, 2, 1, 3).reshape(64, 64)
    ax.imshow(tiles, cmap="gray", vmin=0, vmax=1)
    ax.set_title(title)
    ax.axis("off")


fig, axes = plt.subplots(1, 3, figsize=(12, 4))
grid(held_out, "held-out digits", axes[0])
grid(samples, "generative MMD flow", axes[1])
grid(gauss, "Gaussian fit", axes[2])
plt.tight_layout()
plt.show()

# %%
# Energy distance and memorisation
# --------------------------------
# The energy distance is :math:`\mathrm{MMD}^2` with the Riesz kernel (unbiased U-statistic
# here). The nearest-neighbour ratio compares the median distance of generated digits to
# the training set with that of held-out digits: near 0 means copying, about 1 or more
# means no memorisation.

metrics = evaluate_samples(samples, train, held_out)
for key, value in metrics.items():
    print(f"{key:32s} {value:.5f}")

# %%
# The generated digit nearest to each of a few training digits
# ------------------------------------------------------------

flat_s, flat_t = samples.reshape(len(samples), -1), train.reshape(len(train), -1)
nearest = torch.cdist(flat_t[:8], flat_s).argmin(1)
fig, axes = plt.subplots(2, 8, figsize=(10, 2.8))
for k in range(8):
    axes[0, k].imshow(train[k, 0], cmap="gray", vmin=0, vmax=1)
    axes[1, k].imshow(samples[nearest[k], 0].clamp(0, 1), cmap="gray", vmin=0, vmax=1)
    axes[0, k].axis("off")
    axes[1, k].axis("off")
axes[0, 0].set_title("train", loc="left")
axes[1, 0].set_title("nearest sample", loc="left")
plt.show()

# %%
# :References:
#
# .. footbibliography::
