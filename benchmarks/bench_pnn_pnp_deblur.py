"""PnP-FBS with the small-sigma ConvPNN against TV with the best lambda: Gaussian deblurring.

Problem (the package's ``deblur``): circular Gaussian blur of std 1.6 pixels
(:class:`deepinv.physics.BlurFFT`, the same circular boundary as the ConvPNN's Parseval
convolutions and as the TV below), Gaussian noise 0.01, seeded per image (seed = image
index); the same measurement ``y`` goes to both methods. Images: the embedded
scikit-image images of the package's benchmarks (``camera, coins, moon, brick, text, clock,
page, grass``), gray, centre-cropped and resized to ``--size`` (default 128: the ConvPNN
costs about 0.2 s per 128x128 forward on one shared CPU thread and PnP needs hundreds of
them per knob value; 256x256 is 4x dearer, ``--size 256`` runs it).

Peers, measured in the same run with the same grid protocol (an oracle: each image's knob is
chosen against its ground truth, for both methods):

- **TV**: :math:`\\min_x \\tfrac12\\|Ax-y\\|^2 + \\lambda\\,\\mathrm{TV}(x)` (isotropic, circular
  differences), solved by ADMM with the exact FFT x-update to a relative change of
  ``--tv-tol`` (float64). Knob :math:`\\lambda`: 16 log-spaced values in
  :math:`[10^{-4}, 10^{-1}]`, refined by 4 values at :math:`10^{\\pm0.05}, 10^{\\pm0.1}` around
  the best.
- **PnP-FBS**: :math:`x_{k+1} = D_\\sigma(x_k - \\gamma A^\\top(Ax_k - y))`, :math:`x_0 = y`,
  with the shipped ``ConvPNN(sigma0=0.01, pretrained=True)`` (``--weights`` to evaluate
  another file), :math:`\\gamma` = ``--gamma`` / L inside :math:`(0, 2/L)`
  (checked by :func:`deepinv_pnn.optim.pnp_steps.pnp_parameters`). Knob: the denoiser's
  strength :math:`\\sigma` (the scaling trick): 3 values :math:`0.008\\cdot 2^{k/2}`, :math:`|k| \\le 1`,
  refined by 2 values at :math:`2^{\\pm1/4}` around the best (extended when the best is at an
  end). The grid search runs in float32 with ``--max-iter`` iterations (stopping when
  :math:`\\|x_{k+1}-x_k\\| \\le` ``--tol`` :math:`\\|x_1 - x_0\\|`); the chosen :math:`\\sigma`
  is rerun in float64 to the same criterion: its PSNR is reported and its residuals
  :math:`r_k = \\|x_{k+1}-x_k\\|` are checked for monotonicity (:math:`r_{k+1} \\le r_k`
  for every k, float64 rounding aside: tolerance :math:`10^{-12}\\|x_k\\|`).

    python benchmarks/bench_pnn_pnp_deblur.py [--size 128] [--images camera coins ...]
        [--gamma 1.98] [--weights FILE] [--json out.json]
    python benchmarks/bench_pnn_pnp_deblur.py --quick      # 2 images at 64x64, fewer iterations
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from deepinv_pnn.data import load_image
from deepinv_pnn.models.pnn import ConvPNN
from deepinv_pnn.optim.pnp_steps import pnp_parameters
from deepinv_pnn.problems import make_physics

EMBEDDED = ("camera", "coins", "moon", "brick", "text", "clock", "page", "grass")
NOISE = 0.01
TV_GRID = torch.logspace(-4, -1, 16, dtype=torch.float64)
PNP_GRID = [0.008 * 2 ** (k / 2) for k in (-1, 0, 1)]


def psnr(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """PSNR per batch element (peak 1, no clipping)."""
    mse = (x.double() - ref.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse)


def _grad(x: torch.Tensor) -> torch.Tensor:
    return torch.stack((torch.roll(x, -1, -2) - x, torch.roll(x, -1, -1) - x), -1)


def _grad_adjoint(p: torch.Tensor) -> torch.Tensor:
    px, py = p[..., 0], p[..., 1]
    return (torch.roll(px, 1, -2) - px) + (torch.roll(py, 1, -1) - py)


@torch.no_grad()
def tv_deblur(y: torch.Tensor, kernel_f: torch.Tensor, lambdas: torch.Tensor, tol: float = 1e-7,
              max_iter: int = 20000) -> tuple[torch.Tensor, int]:
    r"""TV deblurring for several :math:`\lambda` at once (float64), by ADMM on :math:`z = \nabla x`.

    The x-update :math:`(A^\top A + \rho\nabla^\top\nabla)^{-1}(\cdot)` is exact in Fourier
    (circular blur and circular differences), the z-update is the group soft-shrinkage;
    :math:`\rho = 5\lambda`. Stops when every relative change is below ``tol``.

    :return: ``([G, 1, H, W] minimisers, iterations used)``.
    """
    y = y.double()
    lam = lambdas.double().view(-1, 1, 1, 1)
    rho = 5 * lam
    ys = y.expand(len(lambdas), *y.shape[1:])
    delta = torch.zeros_like(y)
    delta[..., 0, 0] = 1
    lap_f = torch.fft.fft2(_grad_adjoint(_grad(delta))).real
    aty_f = kernel_f.conj() * torch.fft.fft2(ys)
    denom = kernel_f.abs() ** 2 + rho * lap_f
    x = ys.clone()
    z = _grad(x)
    u = torch.zeros_like(z)
    for it in range(1, max_iter + 1):
        x_new = torch.fft.ifft2((aty_f + rho * torch.fft.fft2(_grad_adjoint(z - u))) / denom).real
        gx = _grad(x_new)
        v = gx + u
        shrink = (1 - (lam / rho).unsqueeze(-1) / v.norm(dim=-1, keepdim=True).clamp_min(1e-30)).clamp_min(0)
        z = v * shrink
        u = u + gx - z
        change = (x_new - x).flatten(1).norm(dim=1) / x_new.flatten(1).norm(dim=1)
        x = x_new
        if float(change.max()) < tol:
            break
    return x, it


def best_tv(y, x, physics, tol) -> dict:
    """Grid search of lambda (coarse, then refined around the best) against the ground truth."""
    delta = torch.zeros_like(x)
    delta[..., 0, 0] = 1
    kernel_f = torch.fft.fft2(physics.A(delta).double())
    out, iters = tv_deblur(y, kernel_f, TV_GRID, tol)
    scores = psnr(out, x)
    best = float(TV_GRID[int(scores.argmax())])
    fine = torch.tensor([best * 10 ** e for e in (-0.1, -0.05, 0.05, 0.1)], dtype=torch.float64)
    out_f, iters_f = tv_deblur(y, kernel_f, fine, tol)
    lambdas = torch.cat((TV_GRID, fine))
    scores = torch.cat((scores, psnr(out_f, x)))
    k = int(scores.argmax())
    return {"psnr": float(scores[k]), "lambda": float(lambdas[k]), "evaluations": len(lambdas),
            "iterations": max(iters, iters_f), "at_grid_end": k in (0, len(TV_GRID) - 1)}


@torch.no_grad()
def pnp_fbs(denoiser, physics, y, sigmas, stepsize, max_iter, tol, dtype=torch.float32):
    r"""PnP forward-backward for several :math:`\sigma` at once (batch), :math:`x_0 = y`.

    Stops when every :math:`r_k \le` ``tol`` :math:`r_0`.

    :return: ``(x [G, 1, H, W], residuals [iterations, G])``.
    """
    y = y.to(dtype)
    sig = torch.tensor(sigmas, dtype=dtype)
    x = y.expand(len(sigmas), *y.shape[1:]).clone()
    residuals = []
    for _ in range(max_iter):
        x_new = denoiser(x - stepsize * physics.A_adjoint(physics.A(x) - y), sig)
        residuals.append((x_new - x).flatten(1).norm(dim=1).double())
        x = x_new
        if bool((residuals[-1] <= tol * residuals[0]).all()):
            break
    return x, torch.stack(residuals)


def best_pnp(denoiser, physics, y, x, stepsize, max_iter, tol) -> dict:
    """Grid search of the denoiser strength sigma (coarse, refined, extended at an end)."""
    tried: dict[float, float] = {}

    def evaluate(sigmas):
        sigmas = [s for s in sigmas if round(s, 8) not in tried]
        if sigmas:
            out, _ = pnp_fbs(denoiser, physics, y, sigmas, stepsize, max_iter, tol)
            for s, p in zip(sigmas, psnr(out, x).tolist()):
                tried[round(s, 8)] = p

    evaluate(PNP_GRID)
    for _ in range(3):  # extend the grid while the best value is at an end
        best = max(tried, key=tried.get)
        if best == min(tried):
            evaluate([best / 2 ** 0.5])
        elif best == max(tried):
            evaluate([best * 2 ** 0.5])
        else:
            break
    best = max(tried, key=tried.get)
    evaluate([best * 2 ** -0.25, best * 2 ** 0.25])
    best = max(tried, key=tried.get)
    # the chosen knob, rerun in float64: reported PSNR and the monotonicity check
    denoiser64 = denoiser.double()
    out, residuals = pnp_fbs(denoiser64, physics.double() if hasattr(physics, "double") else physics,
                             y, [best], stepsize, max_iter, tol, dtype=torch.float64)
    denoiser.float()
    r = residuals[:, 0]
    norm = float(out.norm())
    increases = (r[1:] - r[:-1]).clamp_min(0)
    return {"psnr": float(psnr(out, x)[0]), "psnr_float32": tried[best], "sigma": best,
            "evaluations": len(tried), "iterations": len(r), "final_residual_rel": float(r[-1] / r[0]),
            "monotone": bool((increases <= 1e-12 * norm).all()), "max_increase": float(increases.max()) if len(r) > 1 else 0.0}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 images at 64x64, 80 iterations (about a minute)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--images", nargs="+", default=list(EMBEDDED))
    parser.add_argument("--gamma", type=float, default=1.98, help="step as a multiple of 1/L, in (0, 2)")
    parser.add_argument("--max-iter", type=int, default=150)
    parser.add_argument("--tol", type=float, default=1e-4, help="stop when r_k <= tol r_0")
    parser.add_argument("--tv-tol", type=float, default=1e-7, help="relative change that stops TV's ADMM")
    parser.add_argument("--weights", default=None, help="weights of the small-sigma ConvPNN (default: shipped)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--json", default=None)
    parser.add_argument("--seed-offset", type=int, default=0,
                        help="noise seed of image k is k + offset (split a run: --images text clock page grass --seed-offset 4)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.size, args.images, args.max_iter = 64, args.images[:2], 80

    model = ConvPNN(sigma0=NOISE, pretrained=args.weights or True).eval()
    denoiser = model
    shape = (1, args.size, args.size)
    physics0 = make_physics("deblur", shape, NOISE, seed=0)
    params = pnp_parameters(denoiser, physics0, shape, "PGD", NOISE, stepsize=None)
    stepsize = args.gamma / params["lipschitz"]
    pnp_parameters(denoiser, physics0, shape, "PGD", NOISE, stepsize=stepsize)  # refuses gamma >= 2/L
    print(f"size {args.size}x{args.size}, blur std 1.6 (circular), noise {NOISE}; PnP-FBS step "
          f"{stepsize:.4f} = {args.gamma}/L (L = {params['lipschitz']:.4f}), averaged constant of D "
          f"{denoiser.averaged_constant():.3f}")
    print(f"{'image':8s} {'obs':>6s} {'TV':>6s} {'lambda':>8s} {'PnP':>6s} {'sigma':>7s} {'gain':>6s} "
          f"{'iters':>5s} {'r_K/r_0':>8s} monotone  time")
    rows = []
    for index, name in enumerate(args.images):
        start = time.perf_counter()
        x = load_image(name, size=args.size)
        physics = make_physics("deblur", shape, NOISE, seed=index + args.seed_offset)
        y = physics(x)
        tv = best_tv(y, x, physics, args.tv_tol)
        pnp = best_pnp(denoiser, physics, y, x, stepsize, args.max_iter, args.tol)
        row = {"image": name, "observation": float(psnr(y, x)[0]), "tv": tv, "pnp": pnp,
               "gain": pnp["psnr"] - tv["psnr"], "seconds": time.perf_counter() - start}
        rows.append(row)
        print(f"{name:8s} {row['observation']:6.2f} {tv['psnr']:6.2f} {tv['lambda']:8.2e} {pnp['psnr']:6.2f} "
              f"{pnp['sigma']:7.4f} {row['gain']:+6.2f} {pnp['iterations']:5d} {pnp['final_residual_rel']:8.1e} "
              f"{str(pnp['monotone']):8s} {row['seconds']:5.0f}s", flush=True)
    mean = {key: sum(r[key] if key in r else r[key.split('_')[0]]["psnr"] for r in rows) / len(rows)
            for key in ("observation", "tv_psnr", "pnp_psnr", "gain")}
    print(f"{'mean':8s} {mean['observation']:6.2f} {mean['tv_psnr']:6.2f} {'':8s} {mean['pnp_psnr']:6.2f} "
          f"{'':7s} {mean['gain']:+6.2f}   all monotone: {all(r['pnp']['monotone'] for r in rows)}")
    result = {"args": vars(args), "rows": rows, "mean": mean}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
