"""How much can ANY pixel-wise TV map gain over the best scalar lambda? A per-image ceiling.

For each of the first ``--n-images`` held-out BSD400 images (the last 68 of the sorted folder,
as in ``bench_tvmap_quality.py``) and each problem (denoising sigma = 0.1; Gaussian blur std 1.6
with noise 0.01), it prints the PSNR of

- ``oracle scalar TV``: the best single lambda for that image (grid search against the ground
  truth; peer, same solver as the training recipe's oracle);
- ``learned map``: :class:`deepinv_pnn.models.TVParameterMapNet` with the shipped weights;
- ``ceiling map``: a free pixel-wise map fitted to the ground truth of that very image
  (``log Lambda`` optimised with Adam through the same unrolled PDHG, started from the
  learned map): no network can do better than this with the same solver and T.

The gap ``ceiling - oracle`` bounds what parameter-map TV can gain on these images; the gap
``ceiling - learned`` is what a better map network could still gain.

    python benchmarks/bench_tvmap_ceiling.py --data-dir ../shared/data/bsd400 [--n-images 6]
        [--steps 150] [--problems denoise deblur] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import deepinv as dinv
import torch
from tqdm import tqdm

from deepinv_pnn.data import ImageFolderDataset
from deepinv_pnn.models.param_map import TVParameterMapNet
from deepinv_pnn.training.scalar_tv_oracle import oracle_scalar_tv
from deepinv_pnn.training.train_param_map import (
    DEBLUR_NOISE,
    VAL_SIGMA,
    make_problem_physics,
    split_files,
)


def ceiling_map(model, y, physics, x, steps: int, lr: float) -> tuple[float, float]:
    """PSNR of the learned map and of a per-image map fitted to the ground truth ``x``."""
    psnr = dinv.metric.PSNR()
    with torch.no_grad():
        x0, sqnorm = model._initial(y, physics)
        learned = model.lambda_map(y, physics)
        learned_psnr = float(psnr(model.pdhg(y, physics, learned, x_init=x0, op_sqnorm=sqnorm), x))
    log_map = learned.clamp_min(1e-8).log().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([log_map], lr=lr)
    best = learned_psnr
    for _ in range(steps):
        out = model.pdhg(y, physics, log_map.exp(), x_init=x0, op_sqnorm=sqnorm)
        loss = (out - x).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        best = max(best, float(-10 * torch.log10(loss.detach())))
    with torch.no_grad():
        final = float(psnr(model.pdhg(y, physics, log_map.exp(), x_init=x0, op_sqnorm=sqnorm), x))
    return learned_psnr, max(best, final)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data/bsd400")
    parser.add_argument("--n-images", type=int, default=6)
    parser.add_argument("--problems", nargs="+", default=["denoise", "deblur"])
    parser.add_argument("--steps", type=int, default=150, help="Adam steps on the per-image map")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--oracle-iter", type=int, default=600)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device("cpu")
    _, held_out = split_files(args.data_dir, 68)
    held_out = held_out[: args.n_images]
    results = {}
    for problem in args.problems:
        model = TVParameterMapNet(pretrained=True, problem=problem).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        rows = []
        print(f"\n## {problem} (T = {model.n_iter}), {args.steps} Adam steps per image map")
        print(f"{'image':>14} {'oracle scalar':>14} {'learned map':>12} {'ceiling map':>12}")
        for index, path in enumerate(tqdm(held_out, desc=problem, leave=False)):
            x = ImageFolderDataset(files=[path], flips=False).image(0)[None]
            sigma = VAL_SIGMA if problem == "denoise" else DEBLUR_NOISE
            physics = make_problem_physics(problem, tuple(x.shape[1:]), sigma, device, index)
            y = physics(x)
            start = time.time()
            oracle, _ = oracle_scalar_tv(y, physics, x, n_iter=args.oracle_iter)
            learned, ceiling = ceiling_map(model, y, physics, x, args.steps, args.lr)
            rows.append({"file": path.name, "oracle": oracle, "learned": learned, "ceiling": ceiling,
                         "seconds": round(time.time() - start, 1)})
            print(f"{path.name:>14} {oracle:14.2f} {learned:12.2f} {ceiling:12.2f}", flush=True)
        mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("oracle", "learned", "ceiling")}
        print(f"{'mean':>14} {mean['oracle']:14.2f} {mean['learned']:12.2f} {mean['ceiling']:12.2f}"
              f"   ceiling - oracle {mean['ceiling'] - mean['oracle']:+.2f} dB,"
              f" learned - oracle {mean['learned'] - mean['oracle']:+.2f} dB")
        results[problem] = {"per_image": rows, "mean": mean}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
