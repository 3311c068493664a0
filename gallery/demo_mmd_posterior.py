r"""
Posterior sampling with a conditional MMD flow
==============================================

The conditional MMD flow of :footcite:t:`hagemann2024posterior` runs the MMD flow of the
joint distribution of (image, observation) while keeping the observations fixed; its
networks then map noise to samples of the posterior :math:`P_{X | Y = y}`.

First, 8x8 digits with half of the pixels missing (:class:`deepinv.physics.Inpainting`,
the ``inpaint`` problem of :mod:`deepinv_pnn.problems`): the registered
``mmd-digits-posterior`` was trained for a few minutes on one CPU core. Then a problem
whose posterior is known in closed form, trained here.
"""

# %%
# Digits inpainting: samples, mean and standard deviation
# -------------------------------------------------------
# ``posterior(y, physics)`` returns ``samples`` (``[S, B, C, H, W]``), ``mean`` and ``std``.
# The latent points copy the observed pixels; the chain fills in the missing ones.

import deepinv as dinv
import matplotlib.pyplot as plt
import torch

from deepinv_pnn.problems import make_physics
from deepinv_pnn.registry import build
from deepinv_pnn.sampling import ConditionalMMDFlow, condition_features
from deepinv_pnn.sampling.digits import load_digits

model = build("mmd-digits-posterior")
x = load_digits("test")  # 597 held-out digits
physics = make_physics("inpaint", (1, 8, 8), noise_level=0.01)
y = physics(x)
with torch.no_grad():
    out = model.posterior(y, physics, n_samples=64, seed=0)

shown = [0, 1, 2, 3]
columns = {"truth": x, "observed": y + 0.5 * (1 - physics.mask)}
columns.update({f"sample {k + 1}": out["samples"][k] for k in range(3)})
columns.update({"mean": out["mean"], "std": out["std"], "|error|": (out["mean"] - x).abs()})
fig, axes = plt.subplots(len(shown), len(columns), figsize=(1.4 * len(columns), 1.5 * len(shown)))
for row, i in enumerate(shown):
    for col, (name, images) in enumerate(columns.items()):
        scale = (0, 0.5) if name in ("std", "|error|") else (0, 1)
        axes[row, col].imshow(images[i, 0].detach(), cmap="gray", vmin=scale[0], vmax=scale[1])
        axes[row, col].axis("off")
        if row == 0:
            axes[row, col].set_title(name, fontsize=9)
plt.tight_layout()
plt.show()

# %%
# On all held-out digits, the posterior mean against estimates that ignore the
# observation (the training mean) or use it naively (pseudo-inverse: zeros where
# missing; the training mean where missing), and how well the std predicts the error on
# the missing pixels:

psnr = lambda a: float(-10 * torch.log10((a - x).square().mean()))
train_mean = load_digits("train").mean(0, keepdim=True).expand_as(x)
completion = train_mean + physics.A_dagger(y - physics.A(train_mean))
missing = (physics.mask == 0).expand_as(x)
err = (out["mean"] - x).abs()
corr = float(torch.corrcoef(torch.stack([out["std"][missing], err[missing]]))[0, 1])
print(f"PSNR posterior mean {psnr(out['mean']):.2f} dB, training mean {psnr(train_mean):.2f} dB, "
      f"pseudo-inverse {psnr(physics.A_dagger(y)):.2f} dB, mean completion {psnr(completion):.2f} dB")
print(f"correlation of the std with the error (missing pixels): {corr:.2f}")

# %%
# A closed-form check: two correlated Gaussian pixels
# ---------------------------------------------------
# :math:`x \sim \mathcal N(0, \Sigma)`, :math:`\Sigma = \begin{pmatrix}1 & r\\ r & 1\end{pmatrix}`,
# of which an inpainting operator observes the first. The posterior of the missing pixel
# is :math:`\mathcal N(r y, 1 - r^2)`.

gen = torch.Generator().manual_seed(0)
r, n = 0.8, 2000
a, b = torch.randn(n, generator=gen), torch.randn(n, generator=gen)
x2 = torch.stack([a, r * a + (1 - r**2) ** 0.5 * b], 1).reshape(n, 1, 1, 2)
physics2 = dinv.physics.Inpainting(img_size=(1, 1, 2), mask=torch.tensor([[[[1.0, 0.0]]]]))
cond = condition_features(physics2.A(x2), physics2)  # = (x_1, -1/2): observed pixel, missing marker

toy = ConditionalMMDFlow((1, 1, 2), n_stages=3, hidden=64, latent_std=1.0)
history = toy.fit(x2, cond, flow_steps=40, train_iters=300, n_projections=32, seed=0)
print("joint MMD^2 after each stage:", [f"{h['mmd_after']:.1e}" for h in history])

y2 = torch.tensor([-1.5, 0.0, 1.0]).reshape(3, 1, 1, 1) * torch.tensor([1.0, 0.0]).reshape(1, 1, 1, 2)
with torch.no_grad():
    out2 = toy.posterior(y2, physics2, n_samples=2000, seed=1)
fig, axes = plt.subplots(1, 3, figsize=(12, 3))
grid = torch.linspace(-3, 3, 200)
for k, ax in enumerate(axes):
    y1 = float(y2[k, 0, 0, 0])
    samples = out2["samples"][:, k, 0, 0, 1]
    ax.hist(samples.numpy(), bins=50, density=True, alpha=0.6, label="flow samples")
    var = 1 - r**2
    ax.plot(grid, torch.exp(-((grid - r * y1) ** 2) / (2 * var)) / (2 * torch.pi * var) ** 0.5, label="true posterior")
    ax.set_title(f"y = {y1}: mean {float(out2['mean'][k, 0, 0, 1]):.2f} (true {r * y1:.2f}), "
                 f"std {float(out2['std'][k, 0, 0, 1]):.2f} (true {var ** 0.5:.2f})", fontsize=9)
axes[0].legend()
plt.tight_layout()
plt.show()

# %%
# :References:
#
# .. footbibliography::
