r"""
Learned ridge regularisers: denoising at several noise levels, potentials and filters
=====================================================================================

A convex ridge regulariser (CRR-NN) :footcite:t:`goujon2023neural` and a 1-weakly convex
one (WCRR-NN) :footcite:t:`goujon2024learning`,

.. math::

    R(x) = \sum_i \sum_k \psi_i\big((Wx)_{i,k}\big),

denoise by solving :math:`\min_x \tfrac12\|x-y\|^2 + R_\sigma(x)`: one model serves every
noise level :math:`\sigma` (tuned :math:`(\lambda, \mu)` for the CRR, a learned
conditioning :math:`s_i(\sigma)` for the WCRR). We denoise one image at three noise levels
and plot the learned potentials :math:`\psi_i` and filters of :math:`W`.
"""

# %%
# Models and data
# ---------------
# The shipped weights are loaded when present (``pretrained=True``); the registry picks
# this automatically.
import deepinv as dinv
import matplotlib.pyplot as plt
import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.models import RidgeDenoiser
from deepinv_pnn.registry import build

torch.manual_seed(0)
crr, wcrr = build("crr").eval(), build("wcrr").eval()
x = load_image("camera", size=128)

# %%
# Denoising at 5, 15 and 25 (/255) with one model each
# -------------------------------------------------------
psnr = dinv.metric.PSNR()
images, titles = [x], ["clean"]
for level in (5, 15, 25):
    sigma = level / 255
    y = x + sigma * torch.randn_like(x)
    with torch.no_grad():
        outputs = {name: RidgeDenoiser(prior, tol=1e-4)(y, sigma) for name, prior in (("CRR", crr), ("WCRR", wcrr))}
    images += [y] + list(outputs.values())
    titles += [f"noisy {level}: {psnr(y, x).item():.1f} dB"] + [
        f"{name} {psnr(out, x).item():.1f} dB" for name, out in outputs.items()
    ]
dinv.utils.plot(images[:4], titles=titles[:4])
dinv.utils.plot(images[4:], titles=titles[4:])

# %%
# The learned potentials and activations
# --------------------------------------
# CRR: :math:`\psi_i` convex, :math:`\varphi_i = \psi_i'` nondecreasing and clipped.
# WCRR: :math:`\psi = \mu\psi_+ - \psi_-` with :math:`\psi'' \ge -1`.
t = torch.linspace(-0.3, 0.3, 401).view(1, 1, -1)
with torch.no_grad():
    channels = crr.conv.channels[-1]
    z = t.expand(1, channels, -1)
    lmbda, mu = crr.parameters_for(torch.tensor([25 / 255]))
    psi_crr = crr.potential(z.unsqueeze(-1), torch.tensor([25 / 255]))[0, :, :, 0]
    zw = t.expand(1, wcrr.conv.channels[-1], -1).unsqueeze(-1)
    psi_wcrr = wcrr.potential(zw, torch.tensor([25 / 255]))[0, :, :, 0]
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
for i in range(0, channels, 4):
    axes[0].plot(t.flatten(), psi_crr[i])
for i in range(0, psi_wcrr.shape[0], 6):
    axes[1].plot(t.flatten(), psi_wcrr[i])
axes[0].set_title("CRR-NN potentials (sigma = 25/255)")
axes[1].set_title("WCRR-NN potentials (sigma = 25/255)")
plt.tight_layout()
plt.show()

# %%
# The filters of :math:`W` (impulse responses of the multi-convolution)
# ---------------------------------------------------------------------
with torch.no_grad():
    kernels = crr.conv.impulse_response()[:, 0]
order = torch.argsort(kernels.flatten(1).norm(dim=1), descending=True)
fig, axes = plt.subplots(2, 8, figsize=(10, 2.8))
for ax, k in zip(axes.flatten(), order[:16]):
    ax.imshow(kernels[k], cmap="gray")
    ax.axis("off")
fig.suptitle("CRR-NN filters (strongest 16)")
plt.show()

# %%
# :References:
#
# .. footbibliography::
