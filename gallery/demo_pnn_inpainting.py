r"""
Proximal neural networks: convergent plug-and-play inpainting
=============================================================

Half of the pixels are missing (at random) and the rest carry Gaussian noise 0.01
(:class:`deepinv.physics.Inpainting`, the package's ``inpaint`` problem). Plug-and-play
forward-backward with the small-sigma :class:`~deepinv_pnn.models.pnn.ConvPNN`,

.. math::

    x_{k+1} = D_\sigma\big(x_k - \gamma M^\top(Mx_k - y)\big), \qquad 0 < \gamma < 2/\|M\|^2 = 2,

converges because :math:`D_\sigma` is averaged for every :math:`\sigma`
:footcite:p:`hertrich2021convolutional`; the residual :math:`\|x_{k+1}-x_k\|` is
nonincreasing. The peer is TV inpainting,
:math:`\min_x \tfrac12\|Mx-y\|^2 + \lambda\,\mathrm{TV}(x)`, solved by the primal-dual
algorithm of Chambolle and Pock. Both knobs (:math:`\sigma`, :math:`\lambda`) are picked on
a small grid against the ground truth (an oracle, the same for both methods); both
methods start from the same normalised-convolution fill of the missing pixels.
"""

# %%
import deepinv as dinv
import matplotlib.pyplot as plt
import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.models.pnn import ConvPNN
from deepinv_pnn.optim.pnp_steps import pnp_parameters
from deepinv_pnn.problems import make_physics

torch.manual_seed(0)
size = 96
x = load_image("camera", size=size)
physics = make_physics("inpaint", (1, size, size), noise_level=0.01, seed=0)
y = physics(x)
mask = physics.mask


def psnr(a):
    return (-10 * torch.log10(((a - x) ** 2).flatten(1).mean(1))).tolist()


# the same start for both methods: a Gaussian-weighted average of the known pixels
smooth = dinv.physics.BlurFFT(img_size=(1, size, size), filter=dinv.physics.functional.gaussian_blur(sigma=2.0))
x0 = mask * y + (1 - mask) * smooth.A(y) / smooth.A(mask.expand_as(y)).clamp_min(1e-3)

# %%
# TV inpainting (Chambolle-Pock, several lambdas at once)
# -------------------------------------------------------


def nabla(u):
    return torch.stack((u.roll(-1, -2) - u, u.roll(-1, -1) - u), -1)


def nabla_adjoint(p):
    return (p[..., 0].roll(1, -2) - p[..., 0]) + (p[..., 1].roll(1, -1) - p[..., 1])


lambdas = torch.tensor([0.0015, 0.003, 0.006, 0.012]).view(-1, 1, 1, 1, 1)
x_tv = x0.expand(len(lambdas), -1, -1, -1).clone()
x_bar, q = x_tv.clone(), torch.zeros(*x_tv.shape, 2)
tau = 0.99 / 8**0.5  # tau * s * ||nabla||^2 < 1
for _ in range(1000):
    q = q + tau * nabla(x_bar)
    q = q / (q.norm(dim=-1, keepdim=True) / lambdas).clamp_min(1)  # projection on |q| <= lambda
    x_new = (x_tv - tau * nabla_adjoint(q) + tau * mask * y) / (1 + tau * mask)  # prox of the data term
    x_bar, x_tv = 2 * x_new - x_tv, x_new
tv_scores = psnr(x_tv)
best_tv = max(range(len(lambdas)), key=lambda k: tv_scores[k])
print("TV:", {f"{float(lam):.4f}": round(p, 2) for lam, p in zip(lambdas.flatten(), tv_scores)})

# %%
# PnP-FBS with the ConvPNN (several sigmas at once, in the batch)
# ---------------------------------------------------------------
# :func:`~deepinv_pnn.optim.pnp_steps.pnp_parameters` estimates :math:`L = \|M\|^2` by
# Hessian-vector products and refuses a step outside :math:`(0, 2/L)`.
denoiser = ConvPNN(sigma0=0.01, pretrained=True).eval()
stepsize = pnp_parameters(denoiser, physics, (1, size, size), "PGD", sigma=0.02, stepsize=1.9)["stepsize"]
sigmas = torch.tensor([0.02, 0.03])
x_pnp, residuals = x0.expand(len(sigmas), -1, -1, -1).clone(), []
with torch.no_grad():
    for _ in range(150):
        x_new = denoiser(x_pnp - stepsize * mask * (x_pnp - y), sigmas)
        residuals.append((x_new - x_pnp).flatten(1).norm(dim=1))
        x_pnp = x_new
residuals = torch.stack(residuals)
pnp_scores = psnr(x_pnp)
best_pnp = max(range(len(sigmas)), key=lambda k: pnp_scores[k])
print("PnP:", {f"{float(s):.3f}": round(p, 2) for s, p in zip(sigmas, pnp_scores)})
r = residuals[:, best_pnp]
print(f"residual nonincreasing: {bool((r[1:] <= r[:-1] * (1 + 1e-5)).all())}, r_150 / r_1 = {float(r[-1] / r[0]):.1e}")

dinv.utils.plot(
    [x, y, x0, x_tv[best_tv : best_tv + 1], x_pnp[best_pnp : best_pnp + 1]],
    titles=[
        "clean",
        f"observed {psnr(y)[0]:.2f}",
        f"fill {psnr(x0)[0]:.2f}",
        f"TV {tv_scores[best_tv]:.2f}",
        f"ConvPNN PnP {pnp_scores[best_pnp]:.2f}",
    ],
)

# %%
# The residual of PnP-FBS
# -----------------------
plt.figure(figsize=(5, 3.5))
plt.semilogy(r / r[0])
plt.xlabel("iteration k")
plt.ylabel(r"$\|x_{k+1}-x_k\| / \|x_1-x_0\|$")
plt.title(f"PnP-FBS inpainting, sigma = {float(sigmas[best_pnp]):.2f}")
plt.tight_layout()
plt.show()

# %%
# :References:
#
# .. footbibliography::
