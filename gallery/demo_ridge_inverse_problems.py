r"""
Learned ridge regularisers for deblurring, CT and MRI
=====================================================

With a ridge regulariser the reconstruction is a (weakly) convex variational problem,

.. math::

    \hat x = \operatorname{argmin}_x \tfrac12\|Ax - y\|^2 + \lambda R_\sigma(x),

solved by FISTA with adaptive restart
(:class:`~deepinv_pnn.optim.ridge_solver.RidgeSolver`) for any
:class:`deepinv.physics.LinearPhysics` :footcite:t:`goujon2023neural`. The same
regulariser, trained once on denoising, serves deblurring, computed tomography
(:class:`deepinv.physics.Tomography` on the Shepp-Logan phantom) and MRI with a
subsampling mask; :math:`(\lambda, \sigma)` are tuned coarse-to-fine on the example itself
here (:func:`~deepinv_pnn.optim.ridge_solver.tune_coarse_to_fine`; use a separate
validation pair in practice).
"""

# %%
import deepinv as dinv
import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.optim.ridge_solver import RidgeSolver, tune_coarse_to_fine
from deepinv_pnn.registry import build

torch.manual_seed(0)
crr = build("crr").eval()
psnr = dinv.metric.PSNR()


def reconstruct(physics, y, x, box=(0, None), evals=6):
    """Tune (lambda, sigma) coarsely on the PSNR, then reconstruct to tolerance 1e-4."""

    def score(lam, sigma):
        solver = RidgeSolver(crr, lambda_reg=lam, g_param=sigma, tol=1e-3, max_iter=60, box=box)
        return psnr(solver(y, physics), x).item()

    (lam, sigma), _ = tune_coarse_to_fine(score, (1.0, 0.02), step=4.0, min_step=3.0, max_evals=evals)
    solver = RidgeSolver(crr, lambda_reg=lam, g_param=sigma, tol=1e-4, max_iter=300, box=box)
    return solver(y, physics), solver.iterations


# %%
# Deblurring
# ----------
x = load_image("camera", size=64)
physics = dinv.physics.BlurFFT(
    img_size=(1, 64, 64), filter=dinv.physics.functional.gaussian_blur(sigma=1.5),
    noise_model=dinv.physics.GaussianNoise(0.01),
)
y = physics(x)
out, its = reconstruct(physics, y, x)
dinv.utils.plot([x, y, out], titles=["clean", f"blurred {psnr(y, x).item():.1f} dB",
                                      f"CRR {psnr(out, x).item():.1f} dB ({its} its)"])

# %%
# Computed tomography: 30 angles on the Shepp-Logan phantom
# ---------------------------------------------------------
x = load_image("shepp_logan_phantom", size=64)
physics = dinv.physics.Tomography(angles=30, img_width=64, circle=False,
                                  noise_model=dinv.physics.GaussianNoise(0.5))
y = physics(x)
fbp = physics.A_dagger(y)
out, its = reconstruct(physics, y, x)
dinv.utils.plot([x, fbp, out], titles=["phantom", f"FBP {psnr(fbp, x).item():.1f} dB",
                                      f"CRR {psnr(out, x).item():.1f} dB ({its} its)"])

# %%
# MRI: 4x Cartesian subsampling (real and imaginary parts regularised separately)
# --------------------------------------------------------------------------------
x = load_image("brick", size=64)
x2 = torch.cat([x, torch.zeros_like(x)], dim=1)
mask = torch.zeros(1, 64, 64)
mask[..., torch.randperm(64)[:16]] = 1
mask[..., 28:36] = 1
physics = dinv.physics.MRI(mask=mask, img_size=(2, 64, 64), noise_model=dinv.physics.GaussianNoise(0.005))
y = physics(x2)
zero_filled = physics.A_adjoint(y)
out, its = reconstruct(physics, y, x2, box=None)
dinv.utils.plot([x, zero_filled[:, :1], out[:, :1]],
                titles=["clean", f"zero-filled {psnr(zero_filled, x2).item():.1f} dB",
                        f"CRR {psnr(out, x2).item():.1f} dB ({its} its)"])

# %%
# :References:
#
# .. footbibliography::
