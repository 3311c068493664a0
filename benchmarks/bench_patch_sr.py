r"""x4 superresolution of the SiC material: every patch method against bicubic and TV.

Measures, on the whole held-out slice ``val_SiC.png`` (600x600; a 96x96 crop with ``--quick``,
a smoke test only: the SiC grains are 100-200 pixels wide, so a small crop's patch
distribution is far from the reference's and WPP then *must* fail), degraded by
the WPP papers' operator (:class:`deepinv_pnn.sr_physics.WPPSuperResolution`) with noise
0.01: PSNR of aligned bicubic, TV, WPP, patchNR, WPPNet and the WPPFlow sample mean (of 8
antithetic pairs, as ``WPPFlow.forward``, and of 16 independent samples); the correlation of
the pixel-wise std of the 16 independent samples with the absolute error of their mean and
their mean CRPS (:func:`deepinv_pnn.uncertainty.sample_crps`); and the inference time of
WPPNet against per-image WPP optimisation (ratio). Regularisation weights of TV, WPP and
patchNR are chosen on a 300x300 crop of a *training* slice (``SiC_slices/slice1.png``),
never on the validation slice (WPP's jointly with the TV denoising of its reference,
``reference_denoise``). The TV weight is per pixel (TV is a sum over pixels, the
data term and both patch priors are means), so it transfers between image sizes. TV, WPP
and patchNR share one Adam solver that returns the mean of its iterates after the first
third of the steps (``--average-from``).
WPP and patchNR use random patch subsets redrawn at every step (``resample``), which
keeps the cost per step independent of the image size.

Usage::

    python benchmarks/bench_patch_sr.py --data-dir ../shared/data/material [--quick] \
        [--weights-dir DIR] [--device cuda] [--json out.json]

Without the material data it falls back to scikit-image's "grass" texture (reference: the
left half, validation: the right half) and untrained networks are skipped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from deepinv_pnn.baselines import TVPrior
from deepinv_pnn.data import load_image
from deepinv_pnn.models import WPPFlow, WPPNet
from deepinv_pnn.optim import AdamPatchReconstructor, PatchNR, WassersteinPatchPrior
from deepinv_pnn.pretrained import WEIGHTS_DIR
from deepinv_pnn.sr_physics import WPPSuperResolution, aligned_upsample
from deepinv_pnn.training.train_wppnet import psnr
from deepinv_pnn.uncertainty import pearson_correlation as correlation
from deepinv_pnn.uncertainty import sample_crps

# data-only: Adam on the data term alone with the same steps (early stopping regularises)
WEIGHTS = {"patchnr": "patchnr_sic.safetensors", "wppnet": "wppnet_sic_x4.safetensors",
           "wppflow": "wppflow_sic_x4.safetensors"}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def observe(x, physics, seed):
    g = torch.Generator(device=x.device).manual_seed(seed)
    y = physics.A(x)
    return y + 0.01 * torch.randn(y.shape, generator=g, device=x.device, dtype=x.dtype)


def density(per_300x300: int, image: torch.Tensor) -> int:
    """Random patches per step for ``image``: ``per_300x300`` scaled by its area, so that every
    image size gets the same patch coverage per step (and a weight tuned on one size transfers)."""
    return max(1, round(per_300x300 * image.shape[-2] * image.shape[-1] / 300**2))


def tune(make, grid, x, physics, seed=5):
    """The weight of ``grid`` with the best PSNR on the tuning image ``x``."""
    y = observe(x, physics, seed)
    scores = {lam: psnr(make(lam)(y, physics, init=aligned_upsample(y)).cpu(), x.cpu()) for lam in grid}
    print(f"  tuning on a training slice: {scores}", flush=True)
    return max(scores, key=scores.get), {str(k): v for k, v in scores.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/material")
    parser.add_argument("--weights-dir", type=Path, default=None, help="default: the shipped weights")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="96x96 crops, few iterations (CPU, < 60 s)")
    parser.add_argument("--crop", type=int, default=None, help="validation crop size (default: whole image)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--skip", nargs="*", default=[], choices=["patchnr", "wppnet", "wppflow", "wpp"],
                        help="methods not to run (bicubic and TV always run: the table is relative to them)")
    parser.add_argument("--wpp-steps", type=int, default=90, help="Adam steps of WPP")
    parser.add_argument("--wpp-refs", type=int, default=10000, help="reference patches per scale")
    parser.add_argument("--wpp-patches", type=int, default=5000, help="patches of x per scale and step, per 300x300 pixels")
    parser.add_argument("--wpp-psi-iters", type=int, default=5)
    parser.add_argument("--wpp-ref-denoise", type=float, nargs="+", default=[0.0, 0.05],
                        help="TV weights of the reference denoising tried in WPP's tuning (0: raw reference)")
    parser.add_argument("--wpp-lambdas", type=float, nargs="+", default=[3e-3, 1e-2])
    parser.add_argument("--wpp-center", action="store_true", help="mean-centred patches in WPP")
    parser.add_argument("--nr-lambdas", type=float, nargs="+", default=[1e-5, 3e-5, 1e-4, 3e-4])
    parser.add_argument("--nr-steps", type=int, default=150)
    parser.add_argument("--nr-patches", type=int, default=8000, help="patchNR patches per step, per 300x300 pixels")
    parser.add_argument("--average-from", type=float, default=1 / 3,
                        help="every Adam reconstruction (TV, WPP, patchNR) returns the mean of its iterates after "
                             "this fraction of its steps; 1 returns the last iterate")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    quick = args.quick
    crop = args.crop or (96 if quick else None)
    have_data = (args.data_dir / "val_SiC.png").exists()
    if have_data:
        ref = load_image(args.data_dir / "ref_SiC.png")
        val = load_image(args.data_dir / "val_SiC.png")
        tune_img = load_image(args.data_dir / "SiC_slices" / "slice1.png")
    else:
        grass = load_image("grass")
        h, w = grass.shape[-2:]
        ref, val, tune_img = grass[..., : w // 2], grass[..., w // 2 :], grass[..., : h // 2, w // 4 : 3 * w // 4]
    if crop:
        val = val[..., :crop, :crop]
    tcrop = 64 if quick else 300
    t0 = 0 if quick else 150
    tune_img = tune_img[..., t0 : t0 + tcrop, t0 : t0 + tcrop].to(device)
    ref, val = ref.to(device), val.to(device)
    physics = WPPSuperResolution(factor=4).to(device)
    y = observe(val, physics, seed=0)
    n_ref = 1000 if quick else args.wpp_refs
    steps_wpp, steps_nr, steps_tv = (60, 60, 100) if quick else (args.wpp_steps, args.nr_steps, 300)
    rows, times, extra = {}, {}, {}

    def adam(prior, lam, steps, lr):  # the same solver and iterate averaging for every prior
        start = min(steps, max(1, round(args.average_from * steps) + 1)) if args.average_from < 1 else None
        return AdamPatchReconstructor(prior, lam, steps=steps, lr=lr, average_from=start)

    def report(name):
        print(f"  {name}: PSNR {rows[name]:.2f} dB, {times.get(name, 0.0):.2f} s", flush=True)

    rows["bicubic"] = psnr(aligned_upsample(y).cpu(), val.cpu())
    report("bicubic")
    x_ls = AdamPatchReconstructor(TVPrior(), 0.0, steps=steps_tv, lr=0.01)(y, physics, init=aligned_upsample(y))
    rows["data-only"] = psnr(x_ls.cpu(), val.cpu())  # Adam on ||Ax - y||^2 alone, early-stopped
    report("data-only")

    class MeanTV(TVPrior):  # TV per pixel, so that the weight transfers between image sizes
        def fn(self, x, *a, **k):
            return super().fn(x, *a, **k) / x[0].numel()

    def tv(lam):
        return adam(MeanTV(), lam, steps_tv, 0.01)

    lam_tv, extra["tv_tuning"] = tune(tv, [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], tune_img, physics)
    (x_tv), times["tv"] = timed(lambda: tv(lam_tv)(y, physics, init=aligned_upsample(y)), device)
    rows["tv"] = psnr(x_tv.cpu(), val.cpu())
    report("tv")
    extra["lambda"] = {"tv": lam_tv}

    wdir = args.weights_dir
    nets = {}
    for name in WEIGHTS:  # noqa: PLC0206
        path = (wdir or WEIGHTS_DIR) / WEIGHTS[name]
        if name in args.skip:
            continue
        try:
            if name == "patchnr":
                nets[name] = PatchNR(pretrained=path, n_patches=args.nr_patches, resample=True).to(device)
            elif name == "wppnet":
                nets[name] = WPPNet(pretrained=path).to(device).eval()
            else:
                nets[name] = WPPFlow(pretrained=path).to(device).eval()
        except (FileNotFoundError, ValueError) as err:
            extra[f"{name}_skipped"] = str(err)[:200]
    extra["weights"] = {k: str((wdir or WEIGHTS_DIR) / WEIGHTS[k]) for k in WEIGHTS}
    if "patchnr" in nets:
        def nr(lam, image):
            nets["patchnr"].n_patches = density(args.nr_patches, image)
            return adam(nets["patchnr"], lam, steps_nr, 0.03)

        lam_nr, extra["patchnr_tuning"] = tune(lambda lam: nr(lam, tune_img), args.nr_lambdas, tune_img, physics)
        extra["lambda"]["patchnr"] = lam_nr
        x_nr, times["patchnr"] = timed(lambda: nr(lam_nr, val)(y, physics, init=aligned_upsample(y)), device)
        rows["patchnr"] = psnr(x_nr.cpu(), val.cpu())
        report("patchnr")
    if "wppnet" in nets:
        with torch.no_grad():
            nets["wppnet"](y, physics)  # warm-up
            x_net, times["wppnet"] = timed(lambda: nets["wppnet"](y, physics), device)
        rows["wppnet"] = psnr(x_net.cpu(), val.cpu())
        extra["wppnet_data_residual_rms"] = round(float((physics.A(x_net) - y).pow(2).mean().sqrt()), 4)  # noise: 0.01
        report("wppnet")
    if "wppflow" in nets:
        # the estimate (WPPFlow.forward): the mean of 8 antithetic pairs (z, -z); the
        # uncertainty figures: 16 independent samples (WPPFlow.mean_std), whose mean is
        # reported too
        with torch.no_grad():
            g = torch.Generator(device=device).manual_seed(0)
            pairs, times["wppflow_16_samples"] = timed(
                lambda: nets["wppflow"].sample(y, physics, n=16, generator=g, antithetic=True), device)
            g = torch.Generator(device=device).manual_seed(0)
            samples = nets["wppflow"].sample(y, physics, n=16, generator=g)
        rows["wppflow_mean"] = psnr(pairs.mean(0).cpu(), val.cpu())
        report("wppflow_mean")
        mean, std = samples.mean(0), samples.std(0)
        rows["wppflow_mean_indep"] = psnr(mean.cpu(), val.cpu())
        report("wppflow_mean_indep")
        err = (mean.clamp(0, 1) - val).abs().cpu()
        # proper score of the samples (centre and spread together; the mean absolute error if no spread)
        extra["wppflow_crps"] = round(float(sample_crps(samples.cpu(), val.cpu()).mean()), 5)
        extra["wppflow_mean_abs_error"] = round(float(err.mean()), 5)
        extra["wppflow_corr_std_abs_error"] = correlation(std.cpu(), err)
        # the same on b x b block means: a pixel-wise correlation is dominated by the samples' grain
        pool = torch.nn.functional.avg_pool2d
        extra["wppflow_corr_std_abs_error_blocks"] = {
            b: round(correlation(pool(std.cpu(), b), pool(err, b)), 3) for b in (4, 8, 16, 32)}
    def wpp(lam, image, denoise=0.0):
        prior = WassersteinPatchPrior(ref.cpu(), n_reference_patches=n_ref, psi_iters=args.wpp_psi_iters, n_scales=2,
                                      n_patches=density(args.wpp_patches, image), resample=True,
                                      reference_denoise=denoise, center=args.wpp_center).to(device)
        return adam(prior, lam, steps_wpp, 0.01)

    if "wpp" not in args.skip:
        # (lambda, reference denoising) tuned jointly on the training crop, like TV's lambda
        grid = [(lam, g) for g in args.wpp_ref_denoise for lam in args.wpp_lambdas]
        (lam_wpp, g_wpp), extra["wpp_tuning"] = tune(lambda p: wpp(p[0], tune_img, p[1]), grid, tune_img, physics)
        x_wpp, times["wpp"] = timed(lambda: wpp(lam_wpp, val, g_wpp)(y, physics, init=aligned_upsample(y)), device)
        rows["wpp"] = psnr(x_wpp.cpu(), val.cpu())
        report("wpp")
        extra["lambda"]["wpp"] = lam_wpp
        extra["wpp_reference_denoise"] = g_wpp

    if "wpp" in times and "wppnet" in times:
        extra["wppnet_speedup_vs_wpp"] = times["wpp"] / times["wppnet"]

    size = tuple(val.shape[-2:])
    print(f"x4 SR, {'SiC val_SiC.png' if have_data else 'grass'} {size}, noise 0.01, device {device}")
    print(f"{'method':<14}{'PSNR dB':>9}{'- bicubic':>11}{'- TV':>8}{'time s':>10}")
    for name, value in rows.items():
        t = times.get(name, times.get("wppflow_16_samples") if name.startswith("wppflow_mean") else None)
        ts = f"{t:10.3f}" if t is not None else " " * 10
        print(f"{name:<14}{value:9.2f}{value - rows['bicubic']:11.2f}{value - rows['tv']:8.2f}{ts}")
    for key, value in extra.items():
        print(f"{key}: {value}")
    result = {"psnr": rows, "seconds": times, **extra, "image_size": size, "device": str(device), "quick": quick}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
