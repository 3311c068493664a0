r"""Train a WPPFlow (conditional normalizing flow) for x4 superresolution with uncertainty.

Loss per batch (Altekrüger & Hertrich 2023, the reference code's weights):

.. math::

    \frac1{2B}\sum_b \|A T_\theta(z_b; y_b) - y_b\|^2 + \lambda W_2^2(\mu_{T_\theta(z; y)}, \nu)
    - \sigma^2 \frac1B \sum_b \log|\det \nabla_z T_\theta(z_b; y_b)|,

:math:`\lambda = 100`, :math:`\sigma = 0.01` (the noise level), :math:`z_b \sim \mathcal N(0, I)`.

Usage::

    python -m deepinv_pnn.training.train_wppflow --data-dir ../shared/data/material \
        --out wppflow_sic_x4.safetensors --device cuda --minutes 3 --seed 0

Validation (on ``val_*_x4.h5`` or ``val_*.png``): PSNR of the sample mean, and the Pearson
correlation between the pixel-wise sample standard deviation and the absolute error.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.models.wppflow import WPPFlow
from deepinv_pnn.optim.wpp import WassersteinPatchLoss
from deepinv_pnn.pretrained import save_weights
from deepinv_pnn.sr_physics import WPPSuperResolution
from deepinv_pnn.training.train_wppnet import find_reference, load_h5_patches, load_validation, psnr


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two tensors (flattened)."""
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-30))


@torch.no_grad()
def evaluate(flow: WPPFlow, physics, pairs, n_samples: int, device, seed: int = 0) -> list[dict]:
    """PSNR of the sample mean and the correlation of the std map with the absolute error, per validation pair."""
    out = []
    g = torch.Generator(device=device).manual_seed(seed)
    for gt, obs in pairs:
        mean, std = flow.mean_std(obs.to(device), physics, n=n_samples, generator=g)
        err = (mean.clamp(0, 1).cpu() - gt).abs()
        out.append({"psnr_mean": psnr(mean.cpu(), gt), "corr_std_abs_error": correlation(std.cpu(), err),
                    "mean_std": float(std.mean())})
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--reference", default=None, help="as in train_wppnet: ref_<material>.png by default")
    parser.add_argument("--train-file", default=None)
    parser.add_argument("--n-blocks", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--cond-features", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--lam", type=float, default=100.0)
    parser.add_argument("--sigma", type=float, default=0.01, help="weight sigma^2 of the log-determinant")
    parser.add_argument("--n-reference-patches", type=int, default=10000)
    parser.add_argument("--psi-iters", type=int, default=10)
    parser.add_argument("--val-samples", type=int, default=16)
    parser.add_argument("--n-patches", type=int, default=None, help="random patches per image in the WPP loss (default all)")
    parser.add_argument("--max-steps", type=int, default=10**9)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True  # the patch-distance matrix products dominate; TF32 is ample for argmins
    device = torch.device(args.device)
    train_file = args.data_dir / args.train_file if args.train_file else min(args.data_dir.glob(f"train_*_x{args.factor}.h5"))
    lr_patches = load_h5_patches(train_file).to(device)
    reference_file = find_reference(args.data_dir, args.reference, train_file)
    reference = load_image(reference_file).to(device)
    physics = WPPSuperResolution(factor=args.factor).to(device)
    flow = WPPFlow(n_blocks=args.n_blocks, hidden=args.hidden, cond_features=args.cond_features, seed=args.seed).to(device)
    wloss = WassersteinPatchLoss(reference, patch_size=6, n_scales=1, n_reference_patches=args.n_reference_patches,
                                 psi_iters=args.psi_iters, center=True, seed=args.seed, n_patches=args.n_patches).to(device)
    optimizer = torch.optim.Adam(flow.parameters(), lr=args.lr)
    generator = torch.Generator(device=device).manual_seed(args.seed)

    from tqdm import tqdm

    budget = 60 * args.minutes
    start = time.monotonic()
    step, last = 0, {}
    bar = tqdm(desc="WPPFlow", unit="step")
    while time.monotonic() - start < budget and step < args.max_steps:
        frac = min(1.0, (time.monotonic() - start) / budget)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        idx = torch.randint(0, len(lr_patches), (args.batch_size,), device=device, generator=generator)
        y = lr_patches[idx]
        hr_shape = (y.shape[0], y.shape[1], args.factor * y.shape[2], args.factor * y.shape[3])
        z = torch.randn(hr_shape, device=device, generator=generator)
        x, logdet = flow.generate(z, y, physics)
        fidelity = ((physics.A(x) - y) ** 2).sum() / (2 * y.shape[0])
        wpp = wloss(x)
        loss = fidelity + args.lam * wpp - args.sigma**2 * logdet.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 1.0)
        optimizer.step()
        step += 1
        last = {"fidelity": float(fidelity), "wpp": float(wpp), "logdet": float(logdet.mean())}
        bar.update(1)
        bar.set_postfix(fid=f"{last['fidelity']:.3f}", wpp=f"{last['wpp']:.3f}")
    bar.close()

    flow.eval()
    results = evaluate(flow, physics, load_validation(args.data_dir, args.factor), args.val_samples, device)
    metrics = {
        "component": "wppflow", "train_file": train_file.name, "reference": reference_file.name,
        "steps": step, "seconds": time.monotonic() - start,
        "final": last, "val": results,
        "val_psnr_mean": sum(r["psnr_mean"] for r in results) / max(len(results), 1),
        "val_corr_std_abs_error": sum(r["corr_std_abs_error"] for r in results) / max(len(results), 1),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    save_weights(flow.cpu(), args.out, metadata={"component": "wppflow", "factor": args.factor})
    args.out.with_suffix(".json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps({k: metrics[k] for k in ("steps", "val_psnr_mean", "val_corr_std_abs_error")}))
    return metrics


if __name__ == "__main__":
    main()
