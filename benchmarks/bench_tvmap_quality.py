"""Acceptance of the TV parameter-map networks: map TV vs the oracle-best scalar TV.

For each held-out BSD400 image (the last 68 of the sorted folder) and each problem
(denoising sigma=0.1; Gaussian blur std 1.6 with noise 0.01) it prints the PSNR of

- ``map-TV``: :class:`deepinv_pnn.models.TVParameterMapNet` (trained weights, T of training);
- ``oracle TV``: scalar TV with the best lambda for that image, found by a grid search
  against the ground truth (peer, measured in the same run);

their difference (target: mean >= 0.8 dB), and the scale stability: the PSNR change of
``model(10 y) / 10`` against ``model(y)`` (target < 0.1 dB).

    python benchmarks/bench_tvmap_quality.py [--quick] [--device cuda] [--json out.json]
        [--weights-denoise PATH] [--weights-deblur PATH] [--data-dir DIR]
        [--oracle-cache oracle.json] [--csv per_image.csv]

The oracle does not depend on the weights: ``--oracle-cache`` stores it per (problem,
image, oracle iterations) and reuses it when other weights are evaluated.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import deepinv as dinv
import torch

from deepinv_pnn.data import ImageFolderDataset
from deepinv_pnn.models.param_map import WEIGHTS, TVParameterMapNet
from deepinv_pnn.pretrained import WEIGHTS_DIR
from deepinv_pnn.training.scalar_tv_oracle import oracle_scalar_tv
from deepinv_pnn.training.train_param_map import (
    DEBLUR_NOISE,
    VAL_SIGMA,
    make_problem_physics,
    split_files,
)

ROOT = Path(__file__).resolve().parents[1]
DATA_CANDIDATES = (ROOT / ".dev/data/bsd400", ROOT.parent / "shared/data/bsd400", Path("/work/shared/data/bsd400"))


def load_model(path: str | None, problem: str, device) -> TVParameterMapNet:
    """The trained model of ``problem`` (its config, e.g. T and the map input, read from the
    file's metadata)."""
    path = Path(path) if path else WEIGHTS_DIR / WEIGHTS[problem]
    return TVParameterMapNet(pretrained=str(path), device=device).eval()


@torch.no_grad()
def run(problem: str, model, files, device, oracle_iter: int, cache: dict | None = None,
        ref_model=None, cache_path: Path | None = None, oracle_coarse: dict | None = None) -> list[dict]:
    oracle_coarse = oracle_coarse or {}
    psnr = dinv.metric.PSNR()
    sigma = VAL_SIGMA if problem == "denoise" else DEBLUR_NOISE
    rows = []
    for index, path in enumerate(files):
        x = ImageFolderDataset(files=[path], flips=False).image(0)[None].to(device)
        physics = make_problem_physics(problem, tuple(x.shape[1:]), sigma, device, seed=index)
        y = physics(x)
        out = model(y, physics)
        out10 = model(10 * y, physics) / 10
        p_map, p_map10 = float(psnr(out, x)), float(psnr(out10, x))
        coarse = oracle_coarse.get(problem, oracle_iter)
        key = f"{problem}/{Path(path).name}/{oracle_iter}" + (f"/{coarse}" if coarse != oracle_iter else "")
        if cache is not None and key in cache:
            p_oracle, lam = cache[key]
        else:
            p_oracle, lam = oracle_scalar_tv(y, physics, x, n_iter=oracle_iter, coarse_iter=coarse)
            if cache is not None:
                cache[key] = (p_oracle, lam)
                if cache_path:
                    cache_path.write_text(json.dumps(cache, indent=0))
        rows.append({
            "file": Path(path).name, "map_tv": p_map, "oracle_tv": p_oracle, "gain": p_map - p_oracle,
            "oracle_lambda": lam, "scale10_change": abs(p_map10 - p_map), "input": float(psnr(y, x)),
        })
        if ref_model is not None:  # other weights on the same measurements
            rows[-1]["map_tv_ref"] = float(psnr(ref_model(y, physics), x))
        print(f"{problem:8s} {rows[-1]['file']:14s} map-TV {p_map:6.2f}  oracle TV {p_oracle:6.2f} "
              f"(lambda {lam:.4f})  gain {p_map - p_oracle:+5.2f}  |dPSNR x10| {rows[-1]['scale10_change']:.1e}",
              flush=True)
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 images, cheaper oracle")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--n-images", type=int, default=68)
    parser.add_argument("--problems", nargs="+", default=["denoise", "deblur"])
    parser.add_argument("--weights-denoise", default=None)
    parser.add_argument("--weights-deblur", default=None)
    parser.add_argument("--oracle-iter", type=int, default=600)
    parser.add_argument("--json", default=None)
    parser.add_argument("--oracle-cache", default=None, help="JSON file of oracle results (read and updated)")
    parser.add_argument("--csv", default=None, help="write the per-image table here")
    parser.add_argument(
        "--oracle-coarse-iter-deblur", type=int, default=0,
        help="deblurring oracle: solver iterations of the coarse lambda grid (0: --oracle-iter)",
    )
    parser.add_argument("--ref-denoise", default=None, help="also evaluate these weights (column map_tv_ref)")
    parser.add_argument("--ref-deblur", default=None, help="also evaluate these weights (column map_tv_ref)")
    args = parser.parse_args(argv)
    data = Path(args.data_dir) if args.data_dir else next(p for p in DATA_CANDIDATES if p.is_dir())
    _, val_files = split_files(str(data), 68)
    n_images = 3 if args.quick else args.n_images
    oracle_iter = 150 if args.quick else args.oracle_iter
    report = {"command": "python benchmarks/bench_tvmap_quality.py " + " ".join(argv or []), "problems": {}}
    cache_path = Path(args.oracle_cache) if args.oracle_cache else None
    cache = json.loads(cache_path.read_text()) if cache_path and cache_path.is_file() else ({} if cache_path else None)
    for problem in args.problems:
        weights = getattr(args, f"weights_{problem}")
        model = load_model(weights, problem, args.device)
        start = time.time()
        ref = getattr(args, f"ref_{problem}")
        ref_model = load_model(ref, problem, args.device) if ref else None
        coarse = {"deblur": args.oracle_coarse_iter_deblur} if args.oracle_coarse_iter_deblur else {}
        rows = run(problem, model, val_files[:n_images], args.device, oracle_iter, cache, ref_model, cache_path,
                   coarse)
        if cache_path:
            cache_path.write_text(json.dumps(cache, indent=0))
        keys = ("map_tv", "oracle_tv", "gain", "input") + (("map_tv_ref",) if ref_model is not None else ())
        mean = {k: sum(r[k] for r in rows) / len(rows) for k in keys}
        worst_scale = max(r["scale10_change"] for r in rows)
        report["problems"][problem] = {"mean": mean, "max_scale10_change": worst_scale, "n_images": len(rows),
                                       "T": model.n_iter, "seconds": time.time() - start, "per_image": rows}
    print("\n| problem | images | T | map-TV PSNR | oracle scalar TV PSNR (peer) | mean gain (dB) | max |dPSNR| x10 |")
    print("|---|---|---|---|---|---|---|")
    for problem, r in report["problems"].items():
        m = r["mean"]
        print(f"| {problem} | {r['n_images']} | {r['T']} | {m['map_tv']:.2f} | {m['oracle_tv']:.2f} | "
              f"{m['gain']:+.2f} | {r['max_scale10_change']:.1e} |")
    for problem, r in report["problems"].items():
        if "map_tv_ref" in r["mean"]:
            print(f"{problem}: reference weights map-TV {r['mean']['map_tv_ref']:.2f} dB on the same measurements")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if args.csv:
        problems = list(report["problems"])
        head = ",".join(f"{p} input,{p} map-TV,{p} oracle TV,{p} oracle lambda,{p} gain" for p in problems)
        lines = ["image," + head]
        per = {p: {r["file"]: r for r in report["problems"][p]["per_image"]} for p in problems}
        for name in per[problems[0]]:
            cells = [name]
            for p in problems:
                r = per[p][name]
                cells += [f"{r['input']:.2f}", f"{r['map_tv']:.2f}", f"{r['oracle_tv']:.2f}",
                          f"{r['oracle_lambda']:.5f}", f"{r['gain']:+.2f}"]
            lines.append(",".join(cells))
        Path(args.csv).write_text("\n".join(lines) + "\n")
    return report


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
