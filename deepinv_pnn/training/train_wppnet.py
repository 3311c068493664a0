r"""Train a WPPNet for x4 superresolution from low-resolution patches and one reference image.

Loss (Altekrüger & Hertrich 2023): :math:`\operatorname{MSE}(A G_\theta(y), y) + \lambda W_2^2(\mu_{G_\theta(y)}, \nu)`,
with the patches of the whole batch pooled into one empirical measure and the reference
patch measure :math:`\nu` drawn from ``ref_<material>.png``. No high-resolution training image is used.
Every ``--val-every`` steps the network is measured on the validation pairs and the best
weights so far are kept (the paper's code keeps its minimum-validation-error epoch); the
validation pairs are other slices than the benchmark's held-out ``val_SiC.png``.

Usage::

    python -m deepinv_pnn.training.train_wppnet --data-dir ../shared/data/material \
        --out wppnet_sic_x4.safetensors --device cuda --minutes 3 --seed 0

``--data-dir`` holds ``ref_SiC.png`` (reference), ``train_SiC_x4.h5`` (low-resolution patches,
one dataset or group per patch) and ``val_SiC_x4.h5`` (pairs ``gt``/``obs``) or ``val_SiC.png``.
Writes the weights (safetensors, atomically) and ``OUT.json`` with the validation metrics.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from pathlib import Path

import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.models.wppnet import WPPNet
from deepinv_pnn.optim.wpp_loss import WassersteinPatchLoss
from deepinv_pnn.pretrained import save_weights
from deepinv_pnn.sr_physics import WPPSuperResolution
from deepinv_pnn.training.best_step import BestValidated
from deepinv_pnn.training.command_line import command_line


def load_h5_patches(path: str | Path) -> torch.Tensor:
    """All low-resolution patches of an HDF5 file as ``[N, C, h, w]`` (datasets or groups with ``obs``)."""
    import h5py

    out = []
    with h5py.File(path, "r") as f:
        for key in sorted(f.keys(), key=lambda k: (len(k), k)):
            item = f[key]
            array = item["obs"][()] if hasattr(item, "keys") else item[()]
            t = torch.as_tensor(array, dtype=torch.float32)
            out.append(t.reshape((-1,) + tuple(t.shape[-3:])) if t.dim() >= 3 else t[None, None])
    return torch.cat(out)


def load_validation(data_dir: Path, factor: int, noise: float = 0.01, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Held-out ``(gt, obs)`` pairs: ``val_*_x{factor}.h5`` if present, else ``val_*.png`` degraded here."""
    import h5py

    files = sorted(data_dir.glob(f"val_*_x{factor}.h5"))
    pairs = []
    if files:
        with h5py.File(files[0], "r") as f:
            for key in sorted(f.keys()):
                pairs.append((torch.as_tensor(f[key]["gt"][()]).float(), torch.as_tensor(f[key]["obs"][()]).float()))
        return pairs
    physics = WPPSuperResolution(factor=factor)
    g = torch.Generator().manual_seed(seed)
    for path in sorted(data_dir.glob("val_*.png")):
        gt = load_image(path)
        obs = physics.A(gt)
        pairs.append((gt, obs + noise * torch.randn(obs.shape, generator=g)))
    return pairs


def psnr(x: torch.Tensor, gt: torch.Tensor) -> float:
    """PSNR in dB for images in [0, 1] (the estimate is clipped to [0, 1])."""
    mse = float(((x.clamp(0, 1) - gt) ** 2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def find_reference(data_dir: Path, name: str | None, train_file: Path | None = None) -> Path:
    """The reference image: ``data_dir/name``; else ``ref_<material>.png`` for a training file
    ``train_<material>_x<f>.h5``; else the only ``ref_*.png`` of ``data_dir``.

    The material folder holds two references (``ref_FS.png``, sandstone, sorts before
    ``ref_SiC.png``): taking the first one silently trained SiC networks on the sandstone's
    patches, so several candidates without a match are refused.
    """
    if name is not None:
        return data_dir / name
    if train_file is not None:
        match = re.fullmatch(r"train_(.+)_x\d+\.h5", Path(train_file).name)
        if match and (data_dir / f"ref_{match.group(1)}.png").is_file():
            return data_dir / f"ref_{match.group(1)}.png"
    refs = sorted(data_dir.glob("ref_*.png"))
    if not refs:
        raise FileNotFoundError(f"no ref_*.png in {data_dir}")
    if len(refs) > 1:
        raise ValueError(f"several reference images in {data_dir} ({', '.join(r.name for r in refs)}) and none named "
                         f"after the training file {Path(train_file).name if train_file else None}: pass --reference")
    return refs[0]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--reference", default=None,
                        help="reference image file in data-dir (default: ref_<material>.png of train_<material>_x<f>.h5)")
    parser.add_argument("--train-file", default=None, help="LR patches (default train_*_x{factor}.h5)")
    parser.add_argument("--features", type=int, default=48, help="width on the low-resolution grid")
    parser.add_argument("--blocks", type=int, default=6, help="residual blocks on the low-resolution grid")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--lam", type=float, default=0.02, help="weight of the Wasserstein patch loss")
    parser.add_argument("--n-reference-patches", type=int, default=10000)
    parser.add_argument("--psi-iters", type=int, default=10, help="ascent steps on psi per batch (paper: 20)")
    parser.add_argument("--n-patches", type=int, default=None, help="random patches per image in the WPP loss (default all)")
    parser.add_argument("--max-steps", type=int, default=10**9)
    parser.add_argument("--center", action="store_true",
                        help="subtract each patch's mean in the WPP loss (the WPPNets code's default)")
    parser.add_argument("--init", type=Path, default=None, help="start from these weights (same architecture)")
    parser.add_argument("--val-every", type=int, default=100, help="steps between validations (best weights kept)")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True  # the patch-distance matrix products dominate; TF32 is ample for argmins
    device = torch.device(args.device)
    data_dir = args.data_dir
    train_file = data_dir / args.train_file if args.train_file else min(data_dir.glob(f"train_*_x{args.factor}.h5"))
    lr_patches = load_h5_patches(train_file).to(device)
    reference_file = find_reference(data_dir, args.reference, train_file)
    reference = load_image(reference_file).to(device)
    physics = WPPSuperResolution(factor=args.factor).to(device)
    net = WPPNet(factor=args.factor, features=args.features, blocks=args.blocks,
                 pretrained=args.init or False).to(device)
    validation = [(gt, obs.to(device)) for gt, obs in load_validation(data_dir, args.factor)]
    wloss = WassersteinPatchLoss(reference, patch_size=6, n_scales=1, n_reference_patches=args.n_reference_patches,
                                 psi_iters=args.psi_iters, seed=args.seed, n_patches=args.n_patches,
                                 center=args.center).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    generator = torch.Generator(device=device).manual_seed(args.seed)

    from tqdm import tqdm

    def validate() -> list[dict]:
        net.eval()
        results = []
        with torch.no_grad():
            for gt, obs in validation:
                t0 = time.monotonic()
                pred = net(obs, physics)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                results.append({"psnr": psnr(pred.cpu(), gt), "seconds": time.monotonic() - t0})
        net.train()
        return results

    def mean_psnr(results: list[dict]) -> float:
        return sum(r["psnr"] for r in results) / max(len(results), 1)

    budget = 60 * args.minutes
    start = time.monotonic()
    step, history, curve = 0, [], []
    best = BestValidated()
    bar = tqdm(desc="WPPNet", unit="step")
    while time.monotonic() - start < budget and step < args.max_steps:
        frac = min(1.0, (time.monotonic() - start) / budget)
        for group in optimizer.param_groups:  # cosine decay over the wall-clock budget
            group["lr"] = args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        idx = torch.randint(0, len(lr_patches), (args.batch_size,), device=device, generator=generator)
        y = lr_patches[idx]
        # flips keep the LR/HR grids aligned (a symmetric kernel, periodic boundaries, a shift by whole LR pixels)
        flips = torch.rand(2, device=device, generator=generator) < 0.5
        y = y.flip(-1) if flips[0] else y
        y = y.flip(-2) if flips[1] else y
        pred = net(y, physics)
        mse = ((physics.A(pred) - y) ** 2).mean()
        wpp = wloss(pred)
        loss = mse + args.lam * wpp
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        step += 1
        history.append((float(mse.detach()), float(wpp.detach())))
        bar.update(1)
        bar.set_postfix(mse=f"{history[-1][0]:.2e}", wpp=f"{history[-1][1]:.3f}", best=f"{best.value:.2f}")
        if step % args.val_every == 0:
            results = validate()
            curve.append((step, mean_psnr(results)))
            best.offer(curve[-1][1], net, step, results)
    bar.close()

    final = validate()
    results, kept = best.keep(net, mean_psnr(final), final, step)
    metrics = {
        "component": "wppnet", "train_file": train_file.name, "reference": reference_file.name,
        "steps": step, "seconds": time.monotonic() - start,
        "final_mse": history[-1][0] if history else None, "final_wpp": history[-1][1] if history else None,
        "val_psnr": [r["psnr"] for r in results], "val_psnr_mean": mean_psnr(results), "kept_step": kept,
        "final_val_psnr_mean": mean_psnr(final), "val_curve": curve,
        "inference_seconds": [r["seconds"] for r in results], "args": {k: str(v) for k, v in vars(args).items()},
    }
    save_weights(net.cpu(), args.out, metadata={"component": "wppnet", "features": args.features,
                                                "blocks": args.blocks, "factor": args.factor,
                                                "command": command_line("deepinv_pnn.training.train_wppnet", args)})
    args.out.with_suffix(".json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps({k: metrics[k] for k in ("steps", "kept_step", "val_psnr_mean", "final_val_psnr_mean",
                                              "final_mse", "final_wpp")}))
    return metrics


if __name__ == "__main__":
    main()
