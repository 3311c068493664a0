"""Reconstruction time of ridge regularisers vs PnP-ADMM with DRUNet, on Gaussian deblurring.

Ridge: :class:`~deepinv_pnn.optim.ridge_solver.RidgeSolver` (FISTA with restart) on
``1/2||Ax - y||^2 + R_sigma(x)`` run to a relative tolerance of 1e-5, for the CRR-NN and the
WCRR-NN (shipped weights when present, else the initialisation: architecture timing).
Peer: deepinv's PnP-ADMM with ``DRUNet(pretrained=None)`` (architecture timing, no weights)
for 100 iterations, the count it typically needs. Both are timed in the same run on the same
device; the DRUNet time is measured over ``--drunet-measure`` iterations and scaled to 100
(printed as such) to keep the run short.

    python benchmarks/bench_ridge_speed.py [--quick] [--size 256] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import deepinv as dinv
import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.optim import ConvexRidgeRegularizer, WeaklyConvexRidgeRegularizer
from deepinv_pnn.optim.ridge_solver import RidgeSolver
from deepinv_pnn.pretrained import WEIGHTS_DIR


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="64x64, 3 DRUNet iterations (< 60 s)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--drunet-measure", type=int, default=5, help="DRUNet iterations actually timed")
    parser.add_argument("--tol", type=float, default=1e-5)
    args = parser.parse_args(argv)
    size = 64 if args.quick else args.size
    measure = 3 if args.quick else args.drunet_measure
    device = args.device
    torch.manual_seed(0)
    x = load_image("camera", size=size, device=device)
    noise = 0.01
    physics = dinv.physics.BlurFFT(
        img_size=(1, size, size), filter=dinv.physics.functional.gaussian_blur(sigma=2.0),
        noise_model=dinv.physics.GaussianNoise(noise, rng=torch.Generator(device).manual_seed(0)), device=device,
    )
    y = physics(x)
    rows = []
    for name, cls, fname in (
        ("CRR-NN", ConvexRidgeRegularizer, "crr_bsd400.safetensors"),
        ("WCRR-NN", WeaklyConvexRidgeRegularizer, "wcrr_bsd400.safetensors"),
    ):
        shipped = (WEIGHTS_DIR / fname).is_file()
        prior = cls(pretrained=shipped).to(device).eval()
        for fast in (False, True):
            solver = RidgeSolver(prior, lambda_reg=1.0, g_param=2 * noise, tol=args.tol, max_iter=5000,
                                 box=(0, None), fast=fast)
            solver(y, physics)  # warm-up (norm estimate of A is cached per physics)
            _sync(device)
            start = time.perf_counter()
            out = solver(y, physics)
            _sync(device)
            seconds = time.perf_counter() - start
            psnr = float(dinv.metric.PSNR()(out, x))
            label = f"{name} FISTA-restart tol {args.tol:g}" + (" fast" if fast else "")
            rows.append((label + ("" if shipped else " (untrained)"), solver.iterations, seconds, psnr))

    drunet = dinv.models.DRUNet(in_channels=1, out_channels=1, pretrained=None, device=device).eval()
    admm = dinv.optim.ADMM(
        data_fidelity=dinv.optim.L2(), prior=dinv.optim.PnP(drunet), stepsize=1.0, lambda_reg=1.0,
        g_param=0.02, max_iter=measure, early_stop=False,
    )
    with torch.no_grad():
        admm(y, physics)  # warm-up
        _sync(device)
        start = time.perf_counter()
        admm(y, physics)
        _sync(device)
    per_iter = (time.perf_counter() - start) / measure
    peer = per_iter * 100
    rows.append((f"PnP-ADMM DRUNet (untrained), 100 its ({measure} timed, x{100 / measure:g})", 100, peer, float("nan")))

    print(f"deblurring {size}x{size}, Gaussian blur 2.0, noise {noise}, device {device}")
    print(f"{'method':<62} {'iters':>6} {'seconds':>9} {'PSNR':>7} {'speed-up vs DRUNet':>19}")
    for label, iters, seconds, psnr in rows:
        print(f"{label:<62} {iters:>6} {seconds:>9.3f} {psnr:>7.2f} {peer / seconds:>18.1f}x")


if __name__ == "__main__":
    main()
