r"""
MMD particle flows with the Riesz kernel in 1D and 2D
=====================================================

The maximum mean discrepancy with the negative distance (Riesz) kernel
:math:`K(x, y) = -\|x - y\|` can be computed, with its gradient, from one sort of the
projected points :footcite:p:`hertrich2024slicedmmd`. This example runs the sliced MMD
particle flow of :class:`deepinv_pnn.sampling.MMDParticleFlow` toward a bimodal target in
1D and a ring in 2D, and shows the particles as frames.
"""

# %%
# A 1D flow: from a Gaussian to a mixture
# ---------------------------------------
# In 1D the sliced MMD is exact (one projection). The particles follow
# :math:`-N \nabla_x \mathrm{MMD}^2`, with momentum.

import matplotlib.pyplot as plt
import torch

from deepinv_pnn.sampling import MMDParticleFlow, mmd_riesz, sliced_mmd_riesz

gen = torch.Generator().manual_seed(0)
target = torch.cat([torch.randn(500, 1, generator=gen) * 0.3 - 2, torch.randn(500, 1, generator=gen) * 0.5 + 1.5])
x = torch.randn(1000, 1, generator=gen)
flow = MMDParticleFlow(target, n_projections=1, step_size=1.0, momentum=0.5)

frames, values = {0: x}, [float(sliced_mmd_riesz(x, target, n_projections=1))]
keep = (5, 20, 100)


def store(k, xk):
    values.append(float(sliced_mmd_riesz(xk, target, n_projections=1)))
    if k + 1 in keep:
        frames[k + 1] = xk


flow.run(x, n_steps=100, callback=store)
fig, axes = plt.subplots(1, 5, figsize=(16, 3))
for ax, (step, xk) in zip(axes, frames.items()):
    ax.hist(target[:, 0].numpy(), bins=60, density=True, alpha=0.4, label="target")
    ax.hist(xk[:, 0].numpy(), bins=60, density=True, alpha=0.6, label="particles")
    ax.set_title(f"step {step}")
axes[0].legend()
axes[-1].semilogy(values)
axes[-1].set_title(r"MMD$^2$ vs step")
plt.tight_layout()
plt.show()

# %%
# A 2D flow: from a Gaussian to a ring
# ------------------------------------
# In 2D the gradient is averaged over random directions; with
# :math:`c_2 = \pi / 2` the sliced value is an unbiased estimate of the exact one.

angle = 2 * torch.pi * torch.rand(1500, generator=gen)
ring = torch.stack([angle.cos(), angle.sin()], 1) * 2 + 0.1 * torch.randn(1500, 2, generator=gen)
x = torch.randn(1500, 2, generator=gen) * 0.5
flow = MMDParticleFlow(ring, n_projections=64, step_size=1.0, momentum=0.5, seed=1)
snapshots = {0: x}
flow.run(x, n_steps=150, callback=lambda k, xk: snapshots.update({k + 1: xk}) if k + 1 in (10, 40, 150) else None)
fig, axes = plt.subplots(1, 4, figsize=(14, 3.5))
for ax, (step, xk) in zip(axes, snapshots.items()):
    ax.scatter(*ring.T.numpy(), s=1, alpha=0.3, label="target")
    ax.scatter(*xk.T.numpy(), s=1, label="particles")
    ax.set_title(f"step {step}: MMD$^2$ = {float(mmd_riesz(xk, ring)):.1e}")
    ax.set_aspect("equal")
axes[0].legend(markerscale=8)
plt.tight_layout()
plt.show()

# %%
# :References:
#
# .. footbibliography::
