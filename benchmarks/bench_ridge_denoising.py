"""Denoising PSNR of the CRR-NN and WCRR-NN at sigma = 15 and 25 (/255), tuned on validation images only.

Split of the BSD400 folder (``--data-dir``, sorted, as the training recipes use it):
``test_001..test_324`` training, ``test_325..test_332`` validation (held out from the
training of the shipped CRR-NN), ``test_333..test_400`` test (68 images, the first ``--n``
are used). A second test set: embedded scikit-image images (128x128).

Protocol: for each model and noise level, free parameters are tuned on ``--val-crops``
64x64 centre crops of the validation images, never on a test image: the CRR-NN's
:math:`(\\lambda, \\mu)` by the coarse-to-fine search from the stored table
(``--no-retune`` uses the stored table as is), the TV denoiser's threshold likewise. The
WCRR-NN is conditioned on the noise level and uses the calibration table stored with its
weights (noise factor :math:`c(\\sigma)` and convex-part factor :math:`m(\\sigma)`, made
with ``--models wcrr --save-tuned``; none in the file: both 1). The test images are
then denoised with the exact prox solved to the relative tolerance ``--tol``. Noise is
seeded per image. The published BSD68 means (Goujon et al.) are printed for reference
only: BSD68 is a different test set (481x321 images). ``--models bm3d`` adds BM3D (the
``bm3d`` package from PyPI, not a dependency of the package; its published BSD68 means,
31.07 / 28.57 dB, are from Zhang et al., DnCNN, 2017) as a fixed reference: its figure
here minus its published one estimates how much harder this test split is than BSD68.

    python benchmarks/bench_ridge_denoising.py --data-dir ../shared/data/bsd400 --n 68 \\
        [--models crr wcrr tv] [--crr-weights FILE] [--json out.json]
    python benchmarks/bench_ridge_denoising.py --data-dir ../shared/data/bsd400 --models crr \\
        --save-tuned crr_tuned.safetensors   # re-tune the stored table on validation crops
    python benchmarks/bench_ridge_denoising.py --data-dir ../shared/data/bsd400 --models wcrr \\
        --val-crops 8 --save-tuned wcrr_tuned.safetensors   # tune the WCRR-NN calibration table
    python benchmarks/bench_ridge_denoising.py --quick
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch
from safetensors import safe_open

from deepinv_pnn.baselines import TVDenoiser
from deepinv_pnn.data import load_image
from deepinv_pnn.models import RidgeDenoiser
from deepinv_pnn.optim import ConvexRidgeRegularizer, WeaklyConvexRidgeRegularizer
from deepinv_pnn.optim.ridge_convex import CRR_WEIGHTS, SIGMA_GRID
from deepinv_pnn.optim.ridge_solver import tune_coarse_to_fine
from deepinv_pnn.optim.ridge_weakly_convex import WCRR_WEIGHTS
from deepinv_pnn.pretrained import save_weights, shipped_path
from deepinv_pnn.training.train_crr import split_train_validation_test

PUBLISHED = {"CRR-NN": (30.55, 28.10), "WCRR-NN": (31.21, 28.68), "BM3D": (31.07, 28.57)}
EMBEDDED = ("camera", "coins", "moon", "brick", "text", "clock", "page", "grass")
TEST_COUNT, VALIDATION_COUNT = 68, 8


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (x - ref).pow(2).mean()))


def noisy_copies(images, sigma: float, offset: int = 0):
    """Noisy copies, the noise drawn on the CPU (the same on every device), seeded per image."""
    return [x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(offset + k)).to(x.device)
            for k, x in enumerate(images)]


def set_crr_parameters(prior: ConvexRidgeRegularizer, sigma: float, lmbda: float, mu: float) -> None:
    """Write (lambda, mu) into the table at the grid point ``sigma`` (exact there)."""
    index = int(torch.argmin((prior.sigma_grid - sigma).abs()))
    if abs(float(prior.sigma_grid[index]) - sigma) > 1e-6:
        raise ValueError(f"sigma {sigma * 255:.1f}/255 is not a grid point of the table")
    prior.lmbda_table[index] = lmbda
    prior.mu_table[index] = mu


def psnrs(denoise, images, noisy, sigma: float) -> list[float]:
    with torch.no_grad():
        return [psnr(denoise(y, sigma), x) for x, y in zip(images, noisy)]


def mean_psnr(denoise, images, noisy, sigma: float) -> float:
    values = psnrs(denoise, images, noisy, sigma)
    return sum(values) / len(values)


def tune_crr(prior: ConvexRidgeRegularizer, crops, sigma: float, evals: int) -> tuple[float, float, float]:
    """Coarse-to-fine (lambda, mu) on the validation crops, from the stored table."""
    noisy = torch.cat(noisy_copies(crops, sigma, offset=10_000))
    clean = torch.cat(crops)
    index = int(torch.argmin((prior.sigma_grid - sigma).abs()))
    start = (float(prior.lmbda_table[index]), float(prior.mu_table[index]))

    def score(lmbda, mu):
        set_crr_parameters(prior, sigma, lmbda, mu)
        with torch.no_grad():
            out = prior.prox(noisy, sigma, tol=1e-4, max_iter=3000)
        return sum(psnr(o, c) for o, c in zip(out, clean)) / len(crops)

    (lmbda, mu), value = tune_coarse_to_fine(score, start, step=1.6, min_step=1.1, max_evals=evals)
    set_crr_parameters(prior, sigma, lmbda, mu)
    return lmbda, mu, value


def tune_wcrr(prior: WeaklyConvexRidgeRegularizer, crops, sigma: float, evals: int,
              starts=((1.0, 1.0),), step: float = 1.4) -> tuple[float, float, float]:
    """Coarse-to-fine calibration factors (c, m) of the WCRR-NN at one noise level on the
    validation crops, from each pair of ``starts`` (``evals`` evaluations each, first
    multiplicative ``step``; the landscape has more than one local maximum); leaves the
    table constant at the best pair."""
    noisy = torch.cat(noisy_copies(crops, sigma, offset=10_000))
    clean = torch.cat(crops)

    def score(factor, mu_factor):
        prior.set_table([sigma], [factor], [mu_factor])
        with torch.no_grad():
            out = prior.prox(noisy, sigma, tol=1e-4, max_iter=3000)
        return sum(psnr(o, c) for o, c in zip(out, clean)) / len(crops)

    runs = [tune_coarse_to_fine(score, start, step=step, min_step=1.05, max_evals=evals)
            for start in dict.fromkeys(starts)]
    (factor, mu_factor), value = max(runs, key=lambda run: run[1])
    prior.set_table([sigma], [factor], [mu_factor])
    return factor, mu_factor, value


def bm3d_denoiser():
    """BM3D (``pip install bm3d``) at the true noise level, as ``denoise(y, sigma)``."""
    try:
        import bm3d
    except ImportError:  # optional reference peer
        raise SystemExit("--models bm3d needs the bm3d package: pip install bm3d") from None

    def denoise(y: torch.Tensor, sigma: float) -> torch.Tensor:
        out = bm3d.bm3d(y[0, 0].double().cpu().numpy(), sigma_psd=sigma)
        return torch.from_numpy(out).to(y.dtype).to(y.device).view_as(y)

    return denoise


def tune_tv(crops, sigma: float) -> float:
    noisy = noisy_copies(crops, sigma, offset=10_000)
    (scale,), _ = tune_coarse_to_fine(
        lambda s: mean_psnr(TVDenoiser(scale=s).to(crops[0].device), crops, noisy, sigma), (1.0,), step=2.0, min_step=1.05, max_evals=15
    )
    return scale


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 embedded 64x64 images, stored tables, no BSD400")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--n", type=int, default=68, help="test images used (of the 68)")
    parser.add_argument("--tol", type=float, default=1e-5, help="relative tolerance of the test prox")
    parser.add_argument("--models", nargs="+", default=["crr", "wcrr", "tv"], choices=["crr", "wcrr", "tv", "bm3d"])
    parser.add_argument("--crr-weights", default=None, help="CRR-NN weights file (default: the shipped ones)")
    parser.add_argument("--wcrr-weights", default=None, help="WCRR-NN weights file (default: the shipped ones)")
    parser.add_argument("--val-crops", type=int, default=4, help="validation crops used for tuning")
    parser.add_argument("--tune-evals", type=int, default=18)
    parser.add_argument("--no-retune", action="store_true", help="use the stored (lambda, mu) table")
    parser.add_argument("--no-embedded", action="store_true")
    parser.add_argument("--json", default=None, help="write the results to this file")
    parser.add_argument("--save-tuned", default=None,
                        help="tune the table of the one model of --models (CRR-NN: (lambda, mu); WCRR-NN: "
                             "calibration factors) at --tune-sigmas on the validation crops, save the weights "
                             "with it to this file and stop (no test)")
    parser.add_argument("--tune-sigmas", type=float, nargs="+", default=[5, 15, 25, 50])
    parser.add_argument("--tune-from-stored", action="store_true",
                        help="WCRR-NN --save-tuned: start each level from the stored table's pair (step 1.2) "
                             "instead of from (1, 1) and the previous level's pair (step 1.4), and keep the "
                             "stored pairs at the grid levels not in --tune-sigmas; for weights trained "
                             "with the table in place")
    parser.add_argument("--levels", type=int, nargs="+", default=[15, 25], help="test noise levels (/255)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu",
                        help="device of the models and images (cuda: tuning and test in a GPU session; cuDNN's "
                             "TF32 is switched off there, so the figures are float32's)")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="the models' prox replays its iterations as a CUDA graph (prox_cuda_graph)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False

    sets, crops = {}, []
    if args.quick:
        sets["embedded 64x64"] = [load_image(n, size=64) for n in EMBEDDED[:3]]
        args.no_retune = True
    else:
        if not args.no_embedded:
            sets["embedded 128x128"] = [load_image(n, size=128) for n in EMBEDDED]
        if args.data_dir:
            _, val_files, test_files = split_train_validation_test(args.data_dir, TEST_COUNT, VALIDATION_COUNT)
            test_files = test_files[: args.n]
            sets[f"BSD400 test ({test_files[0].stem}..{test_files[-1].stem})"] = [load_image(f) for f in test_files]
            crops = [load_image(f)[..., 58:122, 58:122] for f in val_files[: args.val_crops]]
    sets = {name: [image.to(device) for image in images] for name, images in sets.items()}
    crops = [crop.to(device) for crop in crops]
    if not crops and not args.no_retune:
        raise SystemExit("tuning needs --data-dir (validation images); or pass --no-retune")

    models = {}
    if "crr" in args.models:
        models["CRR-NN"] = ConvexRidgeRegularizer(pretrained=args.crr_weights or True).eval().to(device)
    if "wcrr" in args.models:
        models["WCRR-NN"] = WeaklyConvexRidgeRegularizer(pretrained=args.wcrr_weights or True).eval().to(device)
    for prior in models.values():
        prior.prox_cuda_graph = args.cuda_graph
    if args.save_tuned:
        if len(models) != 1:
            raise SystemExit("--save-tuned needs exactly one model in --models (crr or wcrr)")
        (name, prior), = models.items()
        tune, labels = (tune_crr, ("lambda", "mu")) if name == "CRR-NN" else (tune_wcrr, ("c", "m"))
        tuned = {}
        stored = {}  # the stored pairs, read before tuning rewrites the table
        if name == "WCRR-NN" and args.tune_from_stored:
            if not prior.tuned():
                raise SystemExit("--tune-from-stored needs weights with a calibration table")
            for level in sorted({*args.tune_sigmas, *SIGMA_GRID}):
                c, m = prior.calibration(torch.tensor([level / 255]))
                stored[level] = (float(c), float(m))
        for level in args.tune_sigmas:
            if stored:
                tuned[level] = tune(prior, crops, level / 255, args.tune_evals, starts=[stored[level]], step=1.2)
            elif name == "CRR-NN":
                tuned[level] = tune(prior, crops, level / 255, args.tune_evals)
            else:  # from (1, 1) and from the previous level's pair
                previous = [tuple(tuned[k][:2]) for k in tuned][-1:]
                tuned[level] = tune(prior, crops, level / 255, args.tune_evals, starts=[(1.0, 1.0), *previous])
            print(f"{name} sigma {level:g}: {labels[0]} {tuned[level][0]:.4g} {labels[1]} {tuned[level][1]:.4g} "
                  f"validation {tuned[level][2]:.2f} dB", flush=True)
        pairs = {**stored, **{level: value[:2] for level, value in tuned.items()}}  # stored: --tune-from-stored
        levels = sorted(pairs)
        prior.set_table([s / 255 for s in levels], [pairs[s][0] for s in levels], [pairs[s][1] for s in levels])
        # the source file's metadata (its training command) is kept; the tuning command is added
        source = (args.crr_weights or shipped_path(CRR_WEIGHTS)) if name == "CRR-NN" else (
            args.wcrr_weights or shipped_path(WCRR_WEIGHTS))
        with safe_open(str(source), "pt") as handle:
            metadata = dict(handle.metadata() or {})
        metadata["table_command"] = "python benchmarks/bench_ridge_denoising.py " + " ".join(
            argv if argv is not None else sys.argv[1:])
        save_weights(prior.cpu(), args.save_tuned, metadata=metadata)
        return
    results = {"tol": args.tol, "validation_crops": args.val_crops, "tuned": {}, "psnr": {}, "per_image": {}}
    for level in args.levels:
        sigma = level / 255
        denoisers = {}
        if "tv" in args.models:
            scale = tune_tv(crops, sigma) if crops else 1.0
            results["tuned"][f"TV sigma{level}"] = scale
            denoisers["TV"] = TVDenoiser(scale=scale).to(device)
        if "bm3d" in args.models:
            denoisers["BM3D"] = bm3d_denoiser()
        for name, prior in models.items():
            if name == "CRR-NN" and not args.no_retune:
                start = time.perf_counter()
                lmbda, mu, value = tune_crr(prior, crops, sigma, args.tune_evals)
                results["tuned"][f"CRR-NN sigma{level}"] = [lmbda, mu, value]
                print(f"tuned CRR-NN sigma {level}: lambda {lmbda:.4g} mu {mu:.4g} "
                      f"(validation {value:.2f} dB, {time.perf_counter() - start:.0f} s)", flush=True)
            denoisers[name] = RidgeDenoiser(prior, tol=args.tol, max_iter=5000)
        for set_name, images in sets.items():
            noisy = noisy_copies(images, sigma)
            for method, denoiser in denoisers.items():
                start = time.perf_counter()
                values = psnrs(denoiser, images, noisy, sigma)
                value = sum(values) / len(values)
                seconds = time.perf_counter() - start
                published = dict(zip((15, 25), PUBLISHED.get(method, ()))).get(level, math.nan)
                results["psnr"][f"{set_name} | sigma {level} | {method}"] = round(value, 3)
                results["per_image"][f"{set_name} | sigma {level} | {method}"] = [round(v, 3) for v in values]
                print(f"{set_name:<34} {level:>5} {method:<8} {value:>7.2f} dB {seconds:>7.1f} s"
                      f"   published BSD68 {published:.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
