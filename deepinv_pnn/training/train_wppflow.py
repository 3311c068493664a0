r"""Train a WPPFlow (conditional normalizing flow) for x4 superresolution with uncertainty.

Loss per batch (Altekrüger & Hertrich 2023):

.. math::

    \frac1{2B}\sum_b \|A T_\theta(z_b; y_b) - y_b\|^2 + \lambda W_2^2(\mu_{T_\theta(z; y)}, \nu)
    - \sigma^2 \frac1B \sum_b \log|\det \nabla_z T_\theta(z_b; y_b)|,

:math:`\lambda = 100`, :math:`z_b \sim \mathcal N(0, I)` and :math:`\sigma = 0.03` by default: the
paper's :math:`\sigma = 0.01` (the noise level) leaves a flow built on a WPPNet base with a
nearly uniform spread (its std map hardly correlates with the error, +0.03 on the validation
pairs in a 12-minute probe), three times that weight lets the spread follow the structure
(+0.15).

The flow's base network :math:`\hat x` (the WPPNet architecture) starts from
``--backbone-init`` (the shipped WPPNet by default; ``none`` for a random start) and is kept
fixed (``--backbone-lr-scale 0``; trained with the flow it drifts to a worse estimate while
the flow compensates). A fixed base is out of autograd: no backward pass through it, and the
gradient clipping (norm 1) sees only the flow's own gradients. With ``--centre-weight`` :math:`w > 0` (1 by default) half the batch's
observations are drawn twice, with :math:`z` and :math:`-z`, and

.. math::

    \frac{w}{2B'} \sum_b \big\|\tfrac12\big(T_\theta(z_b; y_b) + T_\theta(-z_b; y_b)\big) - \hat x(y_b)\big\|^2

is added: pushing the residuals of each antithetic pair to average to zero keeps the sample mean on
:math:`\hat x` while the spread grows (:math:`B' = B/2` pairs; without it the sample mean ends
about 1 dB below the base on the validation pairs).

Usage::

    python -m deepinv_pnn.training.train_wppflow --data-dir ../shared/data/material \
        --out wppflow_sic_x4.safetensors --device cuda --minutes 3 --seed 0

Validation (on ``val_*_x4.h5`` or ``val_*.png``) every ``--val-every`` steps: the mean CRPS of
the samples (:func:`~deepinv_pnn.uncertainty.sample_crps`, a proper scoring rule: it rewards an
accurate centre and a calibrated spread together), the PSNR of the sample mean and the Pearson
correlation between the pixel-wise sample standard deviation and the absolute error. The
weights of the best validation by ``--select`` (CRPS by default) are kept: the PSNR of the mean
alone prefers the earliest steps, before the spread has learned where the error is.
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
from deepinv_pnn.models.wppnet import WPPNet, shipped_weights
from deepinv_pnn.optim.wpp_loss import WassersteinPatchLoss
from deepinv_pnn.pretrained import WEIGHTS_DIR, save_weights
from deepinv_pnn.sr_physics import WPPSuperResolution
from deepinv_pnn.training.best_step import BestValidated
from deepinv_pnn.training.command_line import command_line
from deepinv_pnn.training.train_wppnet import find_reference, load_h5_patches, load_validation, psnr
from deepinv_pnn.uncertainty import pearson_correlation, sample_crps

# the validation score each --select keeps the best step by, as "higher is better"
SELECTION = {"crps": lambda results: -mean_of(results, "crps"), "psnr": lambda results: mean_of(results, "psnr_mean")}


@torch.no_grad()
def evaluate(flow: WPPFlow, physics, pairs, n_samples: int, device, seed: int = 0) -> list[dict]:
    """Per validation pair: PSNR of the sample mean, mean CRPS of the samples (lower is better) and
    the correlation of the std map with the absolute error of the mean."""
    out = []
    g = torch.Generator(device=device).manual_seed(seed)
    for gt, obs in pairs:
        samples = flow.sample(obs.to(device), physics, n=n_samples, generator=g).cpu()
        mean, std = samples.mean(0), samples.std(0)
        err = (mean.clamp(0, 1) - gt).abs()
        out.append({"psnr_mean": psnr(mean, gt), "crps": float(sample_crps(samples, gt).mean()),
                    "corr_std_abs_error": pearson_correlation(std, err), "mean_std": float(std.mean())})
    return out


def validated(flow: WPPFlow, physics, pairs, n_samples: int, device) -> list[dict]:
    """:func:`evaluate` in eval mode, the flow left in training mode."""
    flow.eval()
    results = evaluate(flow, physics, pairs, n_samples, device)
    flow.train()
    return results


def mean_of(results: list[dict], key: str) -> float:
    """Mean of ``key`` over the per-pair validation results (0 for none)."""
    return sum(r[key] for r in results) / max(len(results), 1)


def resolve_backbone(spec: str, factor: int, features: int, blocks: int) -> Path | None:
    """The WPPNet weights file that ``--backbone-init`` names (``shipped``: the package's file of this architecture)."""
    if spec == "none":
        return None
    if spec == "shipped":
        name = shipped_weights(1, factor, features, blocks)
        if name is None:
            raise ValueError(f"no shipped WPPNet for factor {factor}, features {features}, blocks {blocks}: "
                             "pass --backbone-init none or a file")
        return WEIGHTS_DIR / name
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"--backbone-init: {spec!r} is neither 'shipped', 'none' nor a file")
    return path


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
    parser.add_argument("--features", type=int, default=48, help="base network: width (LR grid)")
    parser.add_argument("--blocks", type=int, default=6, help="base network: residual blocks")
    parser.add_argument("--backbone-init", default="shipped",
                        help="WPPNet weights for the base network: 'shipped', 'none' or a file")
    parser.add_argument("--backbone-lr-scale", type=float, default=0.0,
                        help="learning rate of the base network relative to --lr (0: kept fixed)")
    parser.add_argument("--val-every", type=int, default=200, help="steps between validations (best weights kept)")
    parser.add_argument("--select", choices=sorted(SELECTION), default="crps",
                        help="validation score of the kept step: the samples' CRPS (proper: centre and spread) "
                             "or the PSNR of their mean")
    parser.add_argument("--centre-weight", type=float, default=1.0,
                        help="weight of a penalty on the mean of antithetic residual pairs (z, -z), which keeps "
                             "the sample mean on the base network's output (0: off)")
    parser.add_argument("--n-blocks", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--cond-features", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--lam", type=float, default=100.0)
    parser.add_argument("--sigma", type=float, default=0.03,
                        help="weight sigma^2 of the log-determinant (the paper: 0.01, the noise level; see the guide)")
    parser.add_argument("--n-reference-patches", type=int, default=10000)
    parser.add_argument("--psi-iters", type=int, default=10)
    parser.add_argument("--val-samples", type=int, default=16)
    parser.add_argument("--n-patches", type=int, default=None, help="random patches per image in the WPP loss (default all)")
    parser.add_argument("--max-steps", type=int, default=10**9)
    args = parser.parse_args(argv)

    if args.centre_weight < 0 or (args.centre_weight > 0 and args.batch_size < 2):
        parser.error("--centre-weight must be >= 0, and > 0 needs --batch-size >= 2 (antithetic pairs)")
    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True  # the patch-distance matrix products dominate; TF32 is ample for argmins
    device = torch.device(args.device)
    train_file = args.data_dir / args.train_file if args.train_file else min(args.data_dir.glob(f"train_*_x{args.factor}.h5"))
    lr_patches = load_h5_patches(train_file).to(device)
    reference_file = find_reference(args.data_dir, args.reference, train_file)
    reference = load_image(reference_file).to(device)
    physics = WPPSuperResolution(factor=args.factor).to(device)
    flow = WPPFlow(factor=args.factor, features=args.features, blocks=args.blocks, n_blocks=args.n_blocks,
                   hidden=args.hidden, cond_features=args.cond_features, seed=args.seed)
    backbone_file = resolve_backbone(args.backbone_init, args.factor, args.features, args.blocks)
    if backbone_file is not None:
        flow.load_backbone(WPPNet(factor=args.factor, features=args.features, blocks=args.blocks,
                                  pretrained=backbone_file))
    flow = flow.to(device)
    validation = load_validation(args.data_dir, args.factor)
    wloss = WassersteinPatchLoss(reference, patch_size=6, n_scales=1, n_reference_patches=args.n_reference_patches,
                                 psi_iters=args.psi_iters, center=True, seed=args.seed, n_patches=args.n_patches).to(device)
    backbone_params = list(flow.backbone.parameters())
    ids = {id(p) for p in backbone_params}
    groups = [{"params": [p for p in flow.parameters() if id(p) not in ids], "scale": 1.0}]
    if args.backbone_lr_scale > 0:
        groups.append({"params": backbone_params, "scale": args.backbone_lr_scale})
    else:  # a fixed base: no backward pass through it, and its gradients do not enter the clipping
        flow.backbone.requires_grad_(False)
    trainable = [p for group in groups for p in group["params"]]
    optimizer = torch.optim.Adam(groups, lr=args.lr)
    generator = torch.Generator(device=device).manual_seed(args.seed)

    from tqdm import tqdm

    budget = 60 * args.minutes
    start = time.monotonic()
    step, last, curve = 0, {}, []
    best = BestValidated()  # by the --select score
    bar = tqdm(desc="WPPFlow", unit="step")
    while time.monotonic() - start < budget and step < args.max_steps:
        frac = min(1.0, (time.monotonic() - start) / budget)
        for group in optimizer.param_groups:
            group["lr"] = group["scale"] * args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        idx = torch.randint(0, len(lr_patches), (args.batch_size,), device=device, generator=generator)
        y = lr_patches[idx]
        hr_shape = (y.shape[0], y.shape[1], args.factor * y.shape[2], args.factor * y.shape[3])
        z = torch.randn(hr_shape, device=device, generator=generator)
        centre = torch.zeros((), device=device)
        if args.centre_weight > 0:  # half the batch's observations, each with z and -z
            half = y.shape[0] // 2
            y = torch.cat([y[:half], y[:half]])
            pair, logdet, x_hat = flow.generate_antithetic(z[:half], y[:half], physics)
            # (x(z) + x(-z)) / 2 - x_hat = the mean of the residuals of the pair
            centre = (pair.mean(0) - x_hat).pow(2).sum() / (2 * half)
            x, logdet = pair.flatten(0, 1), logdet.flatten()
        else:
            x, logdet = flow.generate(z, y, physics)
        fidelity = ((physics.A(x) - y) ** 2).sum() / (2 * y.shape[0])
        wpp = wloss(x)
        loss = fidelity + args.lam * wpp - args.sigma**2 * logdet.mean() + args.centre_weight * centre
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        step += 1
        last = {"fidelity": float(fidelity.detach()), "wpp": float(wpp.detach()), "logdet": float(logdet.detach().mean()),
                "centre": float(centre.detach())}
        bar.update(1)
        bar.set_postfix(fid=f"{last['fidelity']:.3f}", wpp=f"{last['wpp']:.3f}", best=f"{best.value:.4g}")
        if step % args.val_every == 0:
            results = validated(flow, physics, validation, args.val_samples, device)
            curve.append((step, mean_of(results, "psnr_mean"), mean_of(results, "crps"),
                          mean_of(results, "corr_std_abs_error")))
            best.offer(SELECTION[args.select](results), flow, step, results)
    bar.close()

    final = validated(flow, physics, validation, args.val_samples, device)
    results, kept = best.keep(flow, SELECTION[args.select](final), final, step)
    flow.eval()
    metrics = {
        "component": "wppflow", "train_file": train_file.name, "reference": reference_file.name,
        "backbone_init": str(backbone_file), "steps": step, "kept_step": kept, "seconds": time.monotonic() - start,
        "final": last, "val": results, "val_curve": curve,
        "val_psnr_mean": mean_of(results, "psnr_mean"),
        "val_crps": mean_of(results, "crps"),
        "val_corr_std_abs_error": mean_of(results, "corr_std_abs_error"),
        "final_val_psnr_mean": mean_of(final, "psnr_mean"),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    save_weights(flow.cpu(), args.out, metadata={"component": "wppflow", "factor": args.factor,
                                                 "command": command_line("deepinv_pnn.training.train_wppflow", args)})
    args.out.with_suffix(".json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps({k: metrics[k] for k in ("steps", "kept_step", "val_psnr_mean", "val_crps", "val_corr_std_abs_error",
                                              "final_val_psnr_mean")}))
    return metrics


if __name__ == "__main__":
    main()
