r"""
Proximal neural networks: denoising and convergent plug-and-play
=================================================================

A :class:`~deepinv_pnn.models.pnn.ConvPNN` is a composition of layers
:math:`x \mapsto T^\top S_\lambda(Tx + b)` whose convolutions :math:`T` are exactly
Parseval (:math:`T^\top T = I`) by construction. The denoiser
:math:`D = (1-t)\,\mathrm{Id} + t\,\Phi` is averaged for every noise level, so
plug-and-play forward-backward (PnP-PGD) converges
:footcite:p:`hasannasab2020parseval,hertrich2021convolutional`.

This example denoises an image with the shipped ConvPNN and compares it with TV (and
BM3D when the optional ``bm3d`` package is installed), then runs PnP-PGD deblurring and
shows the residual curves of the certified network next to the same network with its
orthogonality broken (weights scaled by 1.3, i.e. an unconstrained network of the same size).
"""

# %%
# Denoising at sigma = 25/255
# ---------------------------
import math

import deepinv as dinv
import matplotlib.pyplot as plt
import torch

from deepinv_pnn.baselines import TVDenoiser
from deepinv_pnn.data import load_image
from deepinv_pnn.models.pnn import ConvPNN
from deepinv_pnn.optim.pnp_steps import pnp_parameters
from deepinv_pnn.problems import make_physics

torch.manual_seed(0)
sigma = 25 / 255
x = load_image("camera", size=96)
y = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
model = ConvPNN(pretrained=True).eval()


def psnr(a):
    return -10 * math.log10(float(((a.clamp(0, 1) - x) ** 2).mean()))


with torch.no_grad():
    x_pnn = model(y, sigma)
    best_tv = max(
        ((TVDenoiser(scale=s)(y, sigma), s) for s in (0.5, 1.0, 1.5)), key=lambda r: psnr(r[0])
    )[0]
images, titles = (
    [x, y, best_tv, x_pnn],
    ["clean", f"noisy {psnr(y):.2f}", f"TV {psnr(best_tv):.2f}", f"ConvPNN {psnr(x_pnn):.2f}"],
)
try:
    import bm3d

    x_bm3d = torch.from_numpy(bm3d.bm3d(y[0, 0].numpy(), sigma)).float()[None, None]
    images.append(x_bm3d)
    titles.append(f"BM3D {psnr(x_bm3d):.2f}")
except ImportError:
    pass
dinv.utils.plot(images, titles=titles)
print(
    "certificate: Lipschitz bound",
    model.lipschitz_bound(),
    "averaged constant",
    model.averaged_constant(),
)

# %%
# Plug-and-play deblurring: residuals
# -----------------------------------
# Gaussian blur of standard deviation 1.6, noise 0.01, the small-sigma model; the step
# size comes from :func:`~deepinv_pnn.optim.pnp_steps.pnp_parameters` (``0.99/L`` with
# :math:`L = \|A\|^2` estimated by Hessian-vector products).
size = 48
x = load_image("coins", size=size)
physics = make_physics("deblur", (1, size, size), noise_level=0.01)
y = physics(x)
certified = ConvPNN(pretrained=True, sigma0=0.01).eval()
broken = ConvPNN(pretrained=True, sigma0=0.01).eval()
with torch.no_grad():
    for conv in broken.convs:
        conv.first.mul_(1.3)
params = pnp_parameters(certified, physics, (1, size, size), "PGD", sigma=0.007)
curves = {}
for name, den in (("ConvPNN (Parseval)", certified), ("same net, ||T||=1.3", broken)):
    z, res = physics.A_adjoint(y), []
    with torch.no_grad():
        for _ in range(60):
            new = den(z - params["stepsize"] * physics.A_adjoint(physics.A(z) - y), 0.007)
            res.append(float((new - z).norm() / z.norm()))
            z = new
            if not torch.isfinite(z).all() or res[-1] > 1e3:  # the unconstrained net blows up
                break
    curves[name] = res
    final = (
        -10 * math.log10(float(((z.clamp(0, 1) - x) ** 2).mean()))
        if torch.isfinite(z).all()
        else float("nan")
    )
    print(f"{name}: {len(res)} iterations, last residual {res[-1]:.1e}, PSNR {final:.2f} dB")
plt.figure(figsize=(5, 3.5))
for name, res in curves.items():
    plt.semilogy(res, label=name)
plt.xlabel("iteration")
plt.ylabel(r"$\|x_{k+1}-x_k\| / \|x_k\|$")
plt.legend()
plt.title("PnP-PGD residuals")
plt.tight_layout()
plt.show()

# %%
# :References:
#
# .. footbibliography::
