r"""
Posterior sampling with a conditional MMD flow
==============================================

The conditional MMD flow of :footcite:t:`hagemann2024posterior` runs the MMD flow of the
joint distribution of (image, observation) while keeping the observations fixed; its
networks then map noise to samples of the posterior :math:`P_{X | Y = y}`. We use an
inverse problem whose posterior is known in closed form: two correlated Gaussian pixels
:math:`x \sim \mathcal N(0, \Sigma)`, :math:`\Sigma = \begin{pmatrix}1 & r\\ r & 1\end{pmatrix}`,
of which a :class:`deepinv.physics.Inpainting` operator observes the first. The posterior
of the missing pixel is :math:`\mathcal N(r y, 1 - r^2)`.
"""

# %%
# Training pairs and the conditional flow
# ---------------------------------------

import deepinv as dinv
import matplotlib.pyplot as plt
import torch

from deepinv_pnn.sampling import ConditionalMMDFlow, condition_features

gen = torch.Generator().manual_seed(0)
r, n = 0.8, 2000
a, b = torch.randn(n, generator=gen), torch.randn(n, generator=gen)
x = torch.stack([a, r * a + (1 - r**2) ** 0.5 * b], 1).reshape(n, 1, 1, 2)
physics = dinv.physics.Inpainting(img_size=(1, 1, 2), mask=torch.tensor([[[[1.0, 0.0]]]]))
cond = condition_features(physics.A(x), physics)  # = (x_1, -1/2): observed pixel, missing marker

model = ConditionalMMDFlow((1, 1, 2), n_stages=3, hidden=64, latent_std=1.0)
history = model.fit(x, cond, flow_steps=40, train_iters=300, n_projections=32, seed=0)
print("joint MMD^2 after each stage:", [f"{h['mmd_after']:.1e}" for h in history])

# %%
# Posterior samples, mean and standard deviation
# ----------------------------------------------
# ``posterior(y, physics)`` returns ``samples`` (``[S, B, C, H, W]``), ``mean`` and ``std``.

y = torch.tensor([-1.5, 0.0, 1.0]).reshape(3, 1, 1, 1) * torch.tensor([1.0, 0.0]).reshape(1, 1, 1, 2)
with torch.no_grad():
    out = model.posterior(y, physics, n_samples=2000, seed=1)
fig, axes = plt.subplots(1, 3, figsize=(12, 3))
grid = torch.linspace(-3, 3, 200)
for k, ax in enumerate(axes):
    y1 = float(y[k, 0, 0, 0])
    samples = out["samples"][:, k, 0, 0, 1].detach()
    ax.hist(samples.numpy(), bins=50, density=True, alpha=0.6, label="flow samples")
    var = 1 - r**2
    ax.plot(grid, torch.exp(-((grid - r * y1) ** 2) / (2 * var)) / (2 * torch.pi * var) ** 0.5, label="true posterior")
    ax.set_title(f"y = {y1}: mean {float(out['mean'][k, 0, 0, 1]):.2f} (true {r * y1:.2f}), "
                 f"std {float(out['std'][k, 0, 0, 1]):.2f} (true {var ** 0.5:.2f})", fontsize=9)
axes[0].legend()
plt.tight_layout()
plt.show()

# %%
# The observed pixel is reproduced, with a small spread:

print("missing pixel: mean", out["mean"][:, 0, 0, 1].numpy().round(2), "std", out["std"][:, 0, 0, 1].numpy().round(2))
print("observed pixel: mean", out["mean"][:, 0, 0, 0].detach().numpy().round(2),
      "std", out["std"][:, 0, 0, 0].detach().numpy().round(2))

# %%
# :References:
#
# .. footbibliography::
