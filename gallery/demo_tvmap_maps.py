r"""
Learned TV regularisation maps
==============================

Total variation with one regularisation parameter smooths textures as much as flat
regions. :footcite:t:`kofler2023parametermaps` let a small U-Net predict a pixel-wise map
:math:`\Lambda_\Theta(y)` and reconstruct with

.. math::

    \hat x = \operatorname*{argmin}_x \tfrac12\|Ax - y\|_2^2 + \|\Lambda_\Theta(y) \odot \nabla x\|_1,

approximated by :math:`T` unrolled primal-dual iterations and trained end to end
(:class:`deepinv_pnn.models.TVParameterMapNet`). Here we compare the learned map with
the *oracle* scalar TV, whose single :math:`\lambda` is tuned on the ground truth of
each test image, and look at what happens when :math:`T` grows beyond its training value.
"""

# %%
# Denoising: the map next to the image
# ------------------------------------
# The shipped weights were trained on BSD400 crops with noise levels between 0.05 and
# 0.15. The map is small on edges and textures and large in flat regions.

import deepinv as dinv
import matplotlib.pyplot as plt
import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.registry import build
from deepinv_pnn.training.scalar_tv_oracle import oracle_scalar_tv
from deepinv_pnn.training.train_param_map import make_problem_physics

torch.manual_seed(0)
psnr = dinv.metric.PSNR()
x = load_image("camera", size=96)
physics = make_problem_physics("denoise", (1, 96, 96), sigma=0.1, device="cpu")
y = physics(x)
model = build("tv-param-map").eval()
with torch.no_grad():
    x_map, lam = model(y, physics, return_map=True)
p_oracle, lam_oracle = oracle_scalar_tv(y, physics, x, n_iter=300)

dinv.utils.plot(
    [y, lam / lam.max(), x_map, x],
    titles=[
        f"noisy {psnr(y, x).item():.2f} dB",
        f"map (max {lam.max().item():.3f})",
        f"map TV {psnr(x_map, x).item():.2f} dB",
        "ground truth",
    ],
)
print(f"oracle scalar TV: {p_oracle:.2f} dB at lambda = {lam_oracle:.4f}")

# %%
# Deblurring
# ----------
# Gaussian blur of standard deviation 1.6 and noise 0.01, with the weights trained for it.

physics_blur = make_problem_physics("deblur", (1, 96, 96), sigma=0.01, device="cpu")
y_blur = physics_blur(x)
model_blur = build("tv-param-map-deblur").eval()
with torch.no_grad():
    x_blur, lam_blur = model_blur(y_blur, physics_blur, return_map=True)
p_oracle_blur, lam_oracle_blur = oracle_scalar_tv(y_blur, physics_blur, x, n_iter=300)
dinv.utils.plot(
    [y_blur, lam_blur / lam_blur.max(), x_blur],
    titles=[
        f"blurred {psnr(y_blur, x).item():.2f} dB",
        "map",
        f"map TV {psnr(x_blur, x).item():.2f} dB",
    ],
)
print(f"oracle scalar TV: {p_oracle_blur:.2f} dB at lambda = {lam_oracle_blur:.4f}")

# %%
# Behaviour as T grows
# --------------------
# The step sizes do not depend on the iteration and satisfy the convergence condition
# of the primal-dual algorithm by construction, so the network can run more iterations
# than it was trained with. With more iterations the output approaches the minimiser of
# the weighted-TV problem with the learned map; the map was tuned for the training
# :math:`T`, so the quality can move a little away from its value at that :math:`T`.

iterations = [4, 8, 16, 32, 64, 128, 256, 512]
with torch.no_grad():
    curve = [psnr(model(y, physics, n_iter=t), x).item() for t in iterations]
    curve_blur = [psnr(model_blur(y_blur, physics_blur, n_iter=t), x).item() for t in iterations]
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
for ax, values, oracle, title, trained in (
    (axes[0], curve, p_oracle, "denoising", model.n_iter),
    (axes[1], curve_blur, p_oracle_blur, "deblurring", model_blur.n_iter),
):
    ax.semilogx(iterations, values, "o-", label="map TV")
    ax.axhline(oracle, color="k", ls="--", label="oracle scalar TV")
    ax.axvline(trained, color="gray", ls=":", label="training T")
    ax.set_xlabel("iterations T")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title)
    ax.legend()
plt.tight_layout()
plt.show()

# %%
# :References:
#
# .. footbibliography::
