"""Device check: does cuDNN's TF32 (on by default for convolutions on Ampere and later) change the ridge prox?

For the shipped WCRR-NN and CRR-NN, on 8 100x100 crops of test_325..332 at sigma 15 and 25 /255: the prox to
tol 1e-5 in float64 (reference), float32 with TF32 and float32 without; prints iterations, seconds, PSNR and the
largest deviation from the float64 result.
"""
import sys
import time

import torch

sys.path.insert(0, "benchmarks")
from bench_ridge_denoising import noisy_copies, psnr  # noqa: E402

from deepinv_pnn.data import load_image  # noqa: E402
from deepinv_pnn.optim import ConvexRidgeRegularizer, WeaklyConvexRidgeRegularizer  # noqa: E402
from deepinv_pnn.training.train_crr import split_train_validation_test  # noqa: E402

dev = sys.argv[1] if len(sys.argv) > 1 else "cuda"
sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
_, val_files, _ = split_train_validation_test(".dev/data/bsd400", 68, 8)
crops = [load_image(f)[..., 40:140, 40:140] for f in val_files]
clean = torch.cat(crops).to(dev)
for name, cls in (("wcrr", WeaklyConvexRidgeRegularizer), ("crr", ConvexRidgeRegularizer)):
    for s in (15, 25):
        noisy = torch.cat(noisy_copies(crops, s / 255, offset=20_000)).to(dev)
        ref = None
        for mode in ("float64", "tf32", "fp32"):
            torch.backends.cudnn.allow_tf32 = mode == "tf32"
            dt = torch.float64 if mode == "float64" else torch.float32
            prior = cls(pretrained=True).to(dev, dt).eval()
            sync()
            t0 = time.perf_counter()
            with torch.no_grad():
                out = prior.prox(noisy.to(dt), s / 255, tol=1e-5, max_iter=3000)
            sync()
            t = time.perf_counter() - t0
            if ref is None:
                ref = out.double()
            p = sum(psnr(o, c) for o, c in zip(out.double(), clean.double())) / len(crops)
            dev_max = (out.double() - ref).abs().max().item()
            print(f"{name} sigma {s:2d} {mode:7s} its {prior.last_prox_iterations:5d} {t:6.2f} s "
                  f"PSNR {p:.4f} max|x - x64| {dev_max:.2e}", flush=True)
