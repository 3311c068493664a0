"""Masked (data-dependent) vs unmasked CRR-NN on Gaussian deblurring.

Unmasked: ``1/2||Ax-y||^2 + lambda R_sigma(x)``, (lambda, sigma) tuned coarse-to-fine on
the validation images. Masked: the same with ``R`` weighted by an :class:`EdgeMask` of
``A^T y`` (``M = m0 + (1-m0)/(1+|grad(G*A^T y)|^2/kappa^2)``), (lambda, kappa) tuned on the
same validation images (sigma from the unmasked tuning, m0 = 0.2). Both are then run on
the test images (embedded scikit-image images, or the held-out BSD400 images with
``--data-dir``); mean PSNR, same run.

    python benchmarks/bench_ridge_mask.py [--quick] [--data-dir .../bsd400]
"""

from __future__ import annotations

import argparse

import deepinv as dinv
import torch

from deepinv_pnn.data import list_images, load_image
from deepinv_pnn.optim import ConvexRidgeRegularizer
from deepinv_pnn.optim.ridge_mask import EdgeMask
from deepinv_pnn.optim.ridge_solver import RidgeSolver, tune_coarse_to_fine
from deepinv_pnn.pretrained import WEIGHTS_DIR

EMBEDDED = ("camera", "coins", "moon", "brick", "text", "clock", "page", "grass")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-dir", default=None, help="use the last 68 images of this folder")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--val", type=int, default=2)
    parser.add_argument("--test", type=int, default=6)
    args = parser.parse_args(argv)
    size, evals = (48, 10) if args.quick else (args.size, 24)
    n_val, n_test = (1, 3) if args.quick else (args.val, args.test)
    sources = list_images(args.data_dir)[-68:] if args.data_dir else EMBEDDED
    images = [load_image(s, size=size) for s in sources[: n_val + n_test]]
    shipped = (WEIGHTS_DIR / "crr_bsd400.safetensors").is_file()
    prior = ConvexRidgeRegularizer(pretrained=shipped).eval()
    physics = dinv.physics.BlurFFT(
        img_size=(1, size, size), filter=dinv.physics.functional.gaussian_blur(sigma=2.0),
        noise_model=dinv.physics.GaussianNoise(0.01, rng=torch.Generator().manual_seed(0)),
    )
    pairs = [(x, physics(x)) for x in images]
    psnr = dinv.metric.PSNR()
    mask_net = EdgeMask(kappa=0.05, floor=0.2)

    def run(pair, lam, sigma, kappa=None, tol=1e-4):
        x, y = pair
        if kappa is None:
            prior.set_mask(None)
        else:
            with torch.no_grad():
                mask_net.log_kappa.fill_(float(torch.log(torch.tensor(kappa))))
                prior.set_mask(mask_net(physics.A_adjoint(y)))
        solver = RidgeSolver(prior, lambda_reg=lam, g_param=sigma, tol=tol, max_iter=500, box=(0, None))
        out = solver(y, physics)
        prior.set_mask(None)
        return psnr(out, x).item()

    val, test = pairs[:n_val], pairs[n_val:]
    (lam, sigma), v0 = tune_coarse_to_fine(
        lambda a, s: sum(run(p, a, s) for p in val) / len(val), (1.0, 0.02), step=4.0, min_step=1.3, max_evals=evals
    )
    (lam_m, kappa), v1 = tune_coarse_to_fine(
        lambda a, k: sum(run(p, a, sigma, k) for p in val) / len(val), (lam, 0.05), step=4.0, min_step=1.3,
        max_evals=evals,
    )
    plain = [run(p, lam, sigma, tol=1e-5) for p in test]
    masked = [run(p, lam_m, sigma, kappa, tol=1e-5) for p in test]
    print(f"deblurring {size}x{size}, blur 2.0, noise 0.01; CRR {'shipped' if shipped else 'UNTRAINED'};"
          f" {n_val} validation / {n_test} test images ({'BSD400 held-out' if args.data_dir else 'embedded'})")
    print(f"{'variant':<30} {'tuned':<32} {'val PSNR':>9} {'test PSNR':>10}")
    print(f"{'unmasked':<30} {f'lambda={lam:.3g} sigma={sigma:.3g}':<32} {v0:>9.2f} {sum(plain) / len(plain):>10.2f}")
    print(f"{'masked (EdgeMask of A^T y)':<30} {f'lambda={lam_m:.3g} kappa={kappa:.3g}':<32} {v1:>9.2f}"
          f" {sum(masked) / len(masked):>10.2f}")
    gain = sum(m - p for m, p in zip(masked, plain)) / len(plain)
    print(f"mean gain of the mask on the test images: {gain:+.2f} dB "
          f"({sum(m > p for m, p in zip(masked, plain))}/{len(plain)} images improved)")


if __name__ == "__main__":
    main()
