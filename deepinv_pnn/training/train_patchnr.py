r"""Train an image-level PatchNR on the patches of one (or a few) reference images.

Usage::

    python -m deepinv_pnn.training.train_patchnr --data-dir ../shared/data/material \
        --out patchnr_sic.safetensors --device cuda --minutes 2 --seed 0

``--data-dir`` holds the training image(s) (``--images``, default ``ref_SiC.png``: the
material folder also holds a sandstone reference, ``ref_FS.png``, that a SiC prior must not
see) and a held-out image (``--val``, default ``val_SiC.png``). Validation reports the mean patch
negative log-likelihood on the held-out image (and on the training image, to show the
generalisation gap). For a folder of natural images (``--images '*.png'``) the first 90 %
train and the rest validate.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.nn.patches import extract_patches
from deepinv_pnn.optim.patchnr import PatchNR
from deepinv_pnn.training.command_line import command_line


@torch.no_grad()
def mean_nll(prior: PatchNR, images: list[torch.Tensor], max_patches: int = 50000, seed: int = 0) -> float:
    """Mean negative log-likelihood per patch over (a random subset of) all patches of ``images``."""
    patches = torch.cat([extract_patches(im, prior.patch_size).reshape(-1, prior.dim) for im in images])
    g = torch.Generator().manual_seed(seed)
    if len(patches) > max_patches:
        patches = patches[torch.randperm(len(patches), generator=g)[:max_patches].to(patches.device)]
    return float(torch.cat([prior.nll(c) for c in patches.split(8192)]).mean())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", default="ref_SiC.png", help="glob of training images in data-dir")
    parser.add_argument("--val", default="val_SiC.png", help="glob of held-out images in data-dir")
    parser.add_argument("--patch-size", type=int, default=6)
    parser.add_argument("--n-blocks", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=20000, help="cosine schedule length (stops earlier at --minutes)")
    parser.add_argument("--dequantize", type=float, default=1.0 / 255,
                        help="width of the uniform noise added to every training patch: 1/255 dequantises 8-bit "
                             "data; a wider one fits a smoothed patch density, a better regulariser (patch guide)")
    parser.add_argument("--save-dtype", choices=["float32", "float16"], default="float32",
                        help="storage dtype of the weights file: float16 halves it (the weights load back into float32)")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True  # the patch-distance matrix products dominate; TF32 is ample for argmins
    train_files = sorted(args.data_dir.glob(args.images))
    val_files = sorted(args.data_dir.glob(args.val))
    if not train_files:
        raise FileNotFoundError(f"no {args.images} in {args.data_dir}")
    if not val_files or set(val_files) == set(train_files):
        cut = max(1, int(0.9 * len(train_files)))
        train_files, val_files = train_files[:cut], train_files[cut:] or train_files[-1:]
    elif leaked := sorted(f.name for f in set(train_files) & set(val_files)):
        raise ValueError(
            f"--images {args.images!r} also matches the held-out {', '.join(leaked)} (--val {args.val!r}); "
            "choose a training glob that excludes it"
        )
    device = torch.device(args.device)
    train = [load_image(f).to(device) for f in train_files]
    val = [load_image(f).to(device) for f in val_files]
    prior = PatchNR(patch_size=args.patch_size, n_blocks=args.n_blocks, hidden=args.hidden, seed=args.seed)
    start = time.monotonic()
    history = prior.fit(train, steps=args.steps, batch_size=args.batch_size, lr=args.lr, minutes=args.minutes,
                        device=device, seed=args.seed, progress=True, dequantize=args.dequantize)
    metrics = {
        "component": "patchnr", "train_images": [f.name for f in train_files], "val_images": [f.name for f in val_files],
        "steps": len(history), "seconds": time.monotonic() - start, "final_train_loss": history[-1],
        "train_nll_per_patch": mean_nll(prior, train), "val_nll_per_patch": mean_nll(prior, val),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    prior.cpu().save(args.out, dtype=getattr(torch, args.save_dtype),
                     command=command_line("deepinv_pnn.training.train_patchnr", args))
    args.out.with_suffix(".json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps({k: metrics[k] for k in ("steps", "train_nll_per_patch", "val_nll_per_patch")}))
    return metrics


if __name__ == "__main__":
    main()
