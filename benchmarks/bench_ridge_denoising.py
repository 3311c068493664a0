"""Denoising PSNR of the shipped CRR-NN and WCRR-NN at sigma = 15 and 25 (/255).

Test sets: the held-out BSD400 images (the last ``--n`` of the 68 held out by the training
recipes, with ``--data-dir``) and embedded scikit-image images (128x128). Peer measured in
the same run: the TV denoiser (``tv-denoiser``, threshold tuned per noise level on the first
image). The published BSD68 means (Goujon et al.) are printed for reference only; BSD68 is
a different test set.

    python benchmarks/bench_ridge_denoising.py [--quick] [--data-dir .../bsd400] [--n 68]
"""

from __future__ import annotations

import argparse
import time

import torch

from deepinv_pnn.baselines import TVDenoiser
from deepinv_pnn.data import list_images, load_image
from deepinv_pnn.models import RidgeDenoiser
from deepinv_pnn.optim import ConvexRidgeRegularizer, WeaklyConvexRidgeRegularizer
from deepinv_pnn.optim.ridge_solver import tune_coarse_to_fine

PUBLISHED = {"CRR-NN": (30.55, 28.10), "WCRR-NN": (31.21, 28.68)}
EMBEDDED = ("camera", "coins", "moon", "brick", "text", "clock", "page", "grass")


def psnr(x, ref):
    return float(10 * torch.log10(1 / (x - ref).pow(2).mean()))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 embedded 64x64 images only")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--n", type=int, default=68)
    parser.add_argument("--tol", type=float, default=1e-4)
    args = parser.parse_args(argv)
    sets = {}
    if args.quick:
        sets["embedded 64x64"] = [load_image(n, size=64) for n in EMBEDDED[:3]]
    else:
        sets["embedded 128x128"] = [load_image(n, size=128) for n in EMBEDDED]
        if args.data_dir:
            files = list_images(args.data_dir)[-68:][: args.n]
            sets[f"BSD400 held-out ({len(files)})"] = [load_image(f) for f in files]
    models = {
        "CRR-NN": RidgeDenoiser(ConvexRidgeRegularizer(pretrained=True).eval(), tol=args.tol, max_iter=3000),
        "WCRR-NN": RidgeDenoiser(WeaklyConvexRidgeRegularizer(pretrained=True).eval(), tol=args.tol, max_iter=3000),
    }
    print(f"{'test set':<24} {'sigma':>5} {'method':<10} {'PSNR':>7} {'seconds':>8} {'published BSD68':>16}")
    for set_name, images in sets.items():
        for level in (15, 25):
            sigma = level / 255
            noisy = [x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(k)) for k, x in enumerate(images)]
            x0, y0 = images[0], noisy[0]
            (scale,), _ = tune_coarse_to_fine(
                lambda s: psnr(TVDenoiser(scale=s)(y0, sigma), x0), (1.0,), step=2.0, min_step=1.1, max_evals=15  # noqa: B023
            )
            rows = {"TV": (TVDenoiser(scale=scale), None)}
            rows.update({k: (v, PUBLISHED[k][0 if level == 15 else 1]) for k, v in models.items()})
            for method, (model, published) in rows.items():
                start = time.perf_counter()
                with torch.no_grad():
                    values = [psnr(model(y, sigma), x) for x, y in zip(images, noisy)]
                seconds = time.perf_counter() - start
                ref = f"{published:.2f}" if published else "-"
                print(f"{set_name:<24} {level:>5} {method:<10} {sum(values) / len(values):>7.2f} {seconds:>8.1f} {ref:>16}")


if __name__ == "__main__":
    main()
