r"""Training recipe of the convex ridge regulariser (CRR-NN) on a folder of images.

The regulariser is trained as a *t-step denoiser* :footcite:t:`goujon2023neural`:
:math:`t` steps of gradient descent on :math:`\tfrac12\|x - y\|^2 + R(x)` from
:math:`x_0 = y`, with the step :math:`2/(2 + \operatorname{Lip}(\nabla R))`, applied to
noisy crops :math:`y = x + \sigma_0 n` of the training images, loss
:math:`\|x_t - x\|^2` (mean) plus a small :math:`\mathrm{TV}^{(2)}` penalty on the splines.
The paper's setting: :math:`\sigma_0 = 25/255`, :math:`t = 10`, 40x40 crops, channels
``(1, 8, 32)``, 7x7 kernels, 21 knots. The paper also reports that the proximal denoiser
of a model trained with :math:`t = 1` is within 0.1 dB of one trained with :math:`t = 10`
(BSD68, 25/255), at a tenth of the cost per crop: on a CPU budget ``--t-steps 1`` with more
crops is the better trade.

Split of the sorted folder: the last ``--val-count`` images (68 for BSD400) are the test
set, never used here; the ``--holdout`` images before them (8 by default) are the
validation set. After training, the pairs :math:`(\lambda(\sigma), \mu(\sigma))` of the
noise-level table are tuned coarse-to-fine on crops of the validation images
(:func:`deepinv_pnn.optim.ridge_solver.tune_coarse_to_fine`), which are then denoised with
the exact prox at 15/255 and 25/255 (mean PSNR written to ``PATH.json``). Test figures
come from ``benchmarks/bench_ridge_denoising.py``.

Data parallel and reproducible: the global batch of step :math:`k` depends only on
``(seed, k)``; under ``torchrun`` each rank takes a slice and gradients are averaged
with ``all_reduce``. ``--checkpoint`` is written atomically every ``--ckpt-every`` steps
and resumed with ``--resume``.

Command line::

    python -m deepinv_pnn.training.train_crr --data-dir ../shared/data/bsd400 \
        --out crr.safetensors --device cpu --minutes 5 --seed 0
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from deepinv_pnn.data import split_files, step_batch
from deepinv_pnn.optim.ridge import RidgeRegularizer
from deepinv_pnn.optim.ridge_convex import SIGMA_GRID, ConvexRidgeRegularizer
from deepinv_pnn.optim.ridge_solver import tune_coarse_to_fine
from deepinv_pnn.pretrained import save_weights
from deepinv_pnn.training.command_line import command_line
from deepinv_pnn.training.distributed import (
    average_gradients,
    init_distributed,
    load_stack,
    rank_slice,
    save_checkpoint,
    world,
)


# ----------------------------------------------------------------- shared helpers
def split_train_validation_test(data_dir, test_count: int, validation_count: int):
    """Sorted images: ``[train | validation | test]`` with the last ``test_count`` held out
    for testing and the ``validation_count`` before them held out for tuning and model
    selection (BSD400: train ``test_001..test_324``, validation ``test_325..test_332``,
    test ``test_333..test_400`` with the defaults 68 and 8)."""
    if test_count <= 0:
        raise ValueError(f"test_count must be positive, got {test_count}")
    train_files, test_files = split_files(data_dir, test_count)
    if not 0 <= validation_count < len(train_files):
        raise ValueError(f"validation_count must lie in [0, {len(train_files)}), got {validation_count}")
    if validation_count == 0:
        return train_files, [], test_files
    return train_files[:-validation_count], train_files[-validation_count:], test_files


def batch_of_step(images, step: int, seed: int, batch: int, patch: int):
    """Clean crops of the global batch of ``step`` and the generator that made them."""
    return step_batch(images, step, seed, batch, patch)


def psnr(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """PSNR (dB, peak 1) per batch element."""
    mse = (x - ref).reshape(x.shape[0], -1).pow(2).mean(-1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-20))


def noisy(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return x + sigma * torch.randn(x.shape, generator=g).to(x.device, x.dtype)


@torch.no_grad()
def denoise_psnr(
    prior: RidgeRegularizer, images, sigma: float, seed: int, tol: float = 1e-5, chunk: int = 34
) -> float:
    """Mean PSNR of the exact prox denoiser at noise level ``sigma`` over ``images``
    (images of equal size are denoised in batches of ``chunk``)."""
    values = []
    k = 0
    while k < len(images):
        group = [images[k]]
        while k + len(group) < len(images) and len(group) < chunk and images[k + len(group)].shape == images[k].shape:
            group.append(images[k + len(group)])
        x = torch.stack(group)
        y = torch.cat([noisy(im[None], sigma, seed + k + j) for j, im in enumerate(group)])
        out = prior.prox(y, sigma, gamma=1.0, tol=tol, max_iter=3000)
        values.extend(psnr(out, x).tolist())
        k += len(group)
    return sum(values) / len(values)


def make_optimizer(model: torch.nn.Module, lr_conv: float, lr_spline: float, lr_scalar: float,
                   lr_scaling: float | None = None):
    """Adam with one group per kind of parameter: convolutions (and a mask network), splines,
    scalars; with ``lr_scaling`` the parameters named ``scaling.*`` (the WCRR-NN's noise
    conditioning) get their own group and rate instead of the splines' rate."""
    groups = {"conv": [], "spline": [], "scaling": [], "scalar": []}
    for name, p in model.named_parameters():
        if name.startswith("conv.") or name.startswith("mask_net."):
            groups["conv"].append(p)
        elif p.dim() == 0:
            groups["scalar"].append(p)
        elif lr_scaling is not None and name.startswith("scaling."):
            groups["scaling"].append(p)
        else:
            groups["spline"].append(p)
    lrs = {"conv": lr_conv, "spline": lr_spline, "scaling": lr_scaling, "scalar": lr_scalar}
    return torch.optim.Adam(
        [{"params": v, "lr": lrs[k], "base_lr": lrs[k]} for k, v in groups.items() if v]
    )


def lr_factor(fraction: float, schedule: str = "cosine") -> float:
    """Learning-rate factor at ``fraction`` of the run: ``"cosine"`` decays to 10% over the
    run; ``"step"`` is the WCRR-NN reference's staircase, 0.75 per twelfth of the run (500 of its
    6000 steps) for the first ten twelfths (down to :math:`0.75^{10} \approx 0.056`)."""
    fraction = min(max(fraction, 0.0), 1.0)
    if schedule == "cosine":
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * fraction))
    if schedule == "step":
        return 0.75 ** min(math.floor(12 * fraction), 10)
    raise ValueError(f"schedule must be 'cosine' or 'step', got {schedule!r}")


def set_lr(optimizer, fraction: float, schedule: str = "cosine") -> None:
    """Sets each group's rate to its base rate times :func:`lr_factor`."""
    factor = lr_factor(fraction, schedule)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


# --------------------------------------------------------------- CRR specifics
def t_step_denoiser(prior: ConvexRidgeRegularizer, y: torch.Tensor, t: int) -> torch.Tensor:
    r""":math:`t` gradient steps on :math:`\tfrac12\|x-y\|^2 + R(x)` from ``y`` (differentiable).

    The step :math:`2/(2 + \operatorname{Lip}\nabla R)` is differentiated too (as in the
    reference implementation), so the learned :math:`\lambda, \mu` and spline slopes see
    their effect on the step; with a detached step the gradient of :math:`\lambda` ignores
    that a larger :math:`\lambda` also shortens the step.
    """
    lip = prior.activation_lipschitz(None).reshape(())
    step = 2.0 / (2.0 + lip)
    x = y
    for _ in range(t):
        x = x - step * (x - y + prior._grad(x, None))
    return x


def tune_table(prior: ConvexRidgeRegularizer, images, sigmas, seed: int, max_evals: int = 40, log=print) -> dict:
    r"""Tune (lambda, mu) per noise level on ``images`` (coarse-to-fine), store the table.

    The learned :math:`\lambda` is the strength of a *t-step* denoiser, not of the prox: for
    small :math:`t` the prox needs a much smaller one (one gradient step with gain
    :math:`g = 2\lambda/(2 + \lambda\mu L)` acts like a prox of strength about :math:`g`).
    So the search starts at :math:`\sqrt{g\lambda}` and first moves on a coarse grid
    (factor 3 per step, a third of the budget) before refining (factor 1.7 down to 1.1).
    """
    lm0, mu0 = float(prior.lmbda.detach()), float(prior.mu.detach())
    slope = float(prior.spline.slopes().max().detach().clamp_min(1e-6))
    gain = 2 * lm0 / (2 + lm0 * mu0 * slope)
    start_lm = math.sqrt(gain * lm0)
    s_train = float(prior.sigma_train) if torch.isfinite(prior.sigma_train) else 25 / 255
    results = {}
    saved = (prior.log_lmbda.data.clone(), prior.log_mu.data.clone())
    prior.lmbda_table.fill_(float("nan"))  # so that the prox uses the (lambda, mu) being scored
    prior.mu_table.fill_(float("nan"))
    coarse_evals = max(9, max_evals // 3)
    for s in sigmas:
        ratio = s / s_train

        def score(lm, mu):
            prior.log_lmbda.data.fill_(math.log(lm))
            prior.log_mu.data.fill_(math.log(mu))
            return denoise_psnr(prior, images, s, seed, tol=1e-4)  # noqa: B023 (called in this iteration)

        coarse, _ = tune_coarse_to_fine(score, (start_lm * ratio, mu0 / ratio), step=3.0, min_step=2.9,
                                        max_evals=coarse_evals)
        best, value = tune_coarse_to_fine(score, coarse, step=1.7, min_step=1.1,
                                          max_evals=max(max_evals - coarse_evals, 9))
        results[s] = (best[0], best[1], value)
        log(f"sigma {s * 255:.1f}: lambda {best[0]:.4g} mu {best[1]:.4g} psnr {value:.2f}")
    prior.log_lmbda.data.copy_(saved[0])
    prior.log_mu.data.copy_(saved[1])
    ss = sorted(results)
    prior.set_table(ss, [results[s][0] for s in ss], [results[s][1] for s in ss])
    return results


def parse_args(argv=None, description=__doc__):
    p = argparse.ArgumentParser(description=description.split("\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sigma", type=float, default=25.0, help="training noise level (/255)")
    p.add_argument("--t-steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--patch", type=int, default=40)
    p.add_argument("--val-count", type=int, default=68, help="last images of the folder held out for testing")
    p.add_argument("--holdout", type=int, default=8,
                   help="images before the test images held out for validation: (lambda, mu) tuning and "
                        "the final PSNR (0: use the test images, the behaviour of earlier runs)")
    p.add_argument("--val-images", type=int, default=68, help="held-out images used for the final PSNR")
    p.add_argument("--tune-images", type=int, default=4, help="held-out crops used to tune (lambda, mu)")
    p.add_argument("--tune-size", type=int, default=96)
    p.add_argument("--val-tol", type=float, default=1e-5, help="relative tolerance of the validation prox")
    p.add_argument("--tune-sigmas", type=float, nargs="+", default=list(SIGMA_GRID),
                   help="noise levels (/255) at which (lambda, mu) are tuned")
    p.add_argument("--tune-evals", type=int, default=40, help="evaluations per noise level")
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate of the convolutions")
    p.add_argument("--lr-spline", type=float, default=None, help="learning rate of the splines")
    p.add_argument("--lr-scalar", type=float, default=0.005, help="learning rate of log(lambda), log(mu)")
    p.add_argument("--tv2", type=float, default=1e-6)
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many steps (the time budget is then ignored)")
    p.add_argument("--schedule-steps", type=int, default=None,
                   help="length of the learning-rate schedule in steps, so that a run split over several "
                        "calls (--checkpoint, --resume) follows one schedule; each call still stops at its "
                        "time budget (default: the schedule spans this call's budget)")
    p.add_argument("--train-fraction", type=float, default=0.7, help="share of --minutes spent training")
    p.add_argument("--init", default=None, help="weights file to start from (warm start)")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--ckpt-every", type=int, default=200)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    return p.parse_args(argv)


def train(args, prior, loss_fn, kind: str, extra_metrics=None) -> dict:
    """Generic loop shared by the CRR and WCRR recipes.

    On CUDA, cuDNN's autotuner is switched on (``torch.backends.cudnn.benchmark``): the
    training crops keep one shape, and the inner solves apply the same few convolutions
    hundreds of times per step, so the fastest algorithm found once pays back (the choice may
    differ between machines, so GPU runs agree to rounding, not bit for bit).
    """
    start = time.time()
    device = args.device
    if str(device).startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    init_distributed(device)
    rank, size = world()
    torch.manual_seed(args.seed)
    train_files, holdout_files, test_files = split_train_validation_test(
        args.data_dir, args.val_count, getattr(args, "holdout", 0)
    )
    val_files = holdout_files or test_files
    images = load_stack(train_files, "cpu")
    if args.init:
        from deepinv_pnn.pretrained import load_state_dict

        prior.load_state_dict(load_state_dict(args.init))
    prior = prior.to(device).train()
    opt = make_optimizer(prior, args.lr, args.lr_spline or args.lr / 20, args.lr_scalar,
                         getattr(args, "lr_scaling", None))
    schedule = getattr(args, "schedule", "cosine")
    schedule_steps = getattr(args, "schedule_steps", None)
    step = 0
    if args.resume and args.checkpoint and Path(args.checkpoint).is_file():
        state = torch.load(args.checkpoint, map_location=device, weights_only=True)
        prior.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
    budget = args.minutes * 60 * args.train_fraction
    losses = []

    def checkpoint():
        if args.checkpoint and rank == 0:
            save_checkpoint(args.checkpoint, prior, opt, step, {"losses": losses[-1000:]})

    bar = tqdm(total=args.max_steps, disable=rank != 0, desc=f"train {kind}")
    while True:
        elapsed = time.time() - start
        if args.max_steps is not None and step >= args.max_steps:
            break
        if args.max_steps is None and elapsed >= budget:
            break
        if schedule_steps and step >= schedule_steps:
            break
        length = schedule_steps or args.max_steps  # the schedule spans steps, else this call's time
        set_lr(opt, step / length if length else elapsed / max(budget, 1e-9), schedule)
        x, g = batch_of_step(images, step, args.seed, args.batch, args.patch)
        x = rank_slice(x).to(device)
        with prior.conv.shared_scale():
            loss = loss_fn(prior, x, g, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(prior)
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / 50:.3e}")
        if rank == 0 and step % 500 == 0:
            print(f"step {step} {time.time() - start:.0f}s loss(500) {sum(losses[-500:]) / 500:.4e}", flush=True)
        if step % args.ckpt_every == 0:
            checkpoint()
    bar.close()
    if step % args.ckpt_every != 0:  # the last steps too, for --resume
        checkpoint()
    prior.eval()
    metrics = {"steps": step, "train_seconds": round(time.time() - start, 1),
               "validation_set": f"{val_files[0].name}..{val_files[-1].name}" if val_files else None,
               "final_loss": sum(losses[-50:]) / max(len(losses[-50:]), 1), "world_size": size}
    if rank == 0 and extra_metrics is not None:
        val_images = load_stack(val_files, device)
        metrics.update(extra_metrics(prior, val_images, start))
    metrics["total_seconds"] = round(time.time() - start, 1)
    return metrics


def finish(args, prior, metrics: dict, command: str) -> None:
    rank, _ = world()
    if rank == 0:
        prior = prior.cpu()
        save_weights(prior, args.out, metadata={"command": command, "seed": args.seed})
        Path(str(args.out).removesuffix(".safetensors") + ".json").write_text(json.dumps(metrics, indent=2))
        print(json.dumps(metrics, indent=2))
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    prior = ConvexRidgeRegularizer()
    sigma = args.sigma / 255
    prior.sigma_train.fill_(sigma)

    def loss_fn(prior, x, g, step):
        y = x + sigma * torch.randn(x.shape, generator=g).to(x.device)
        out = t_step_denoiser(prior, y, args.t_steps)
        return (out - x).pow(2).mean() + args.tv2 * prior.spline.tv2()

    def validate(prior, val_images, start):
        out = {}
        crops = [im[:, : args.tune_size, : args.tune_size] for im in val_images[: args.tune_images]]
        table = tune_table(prior, crops, [s / 255 for s in args.tune_sigmas], args.seed + 7, max_evals=args.tune_evals)
        out["tuned"] = {f"{s * 255:.0f}": [round(v, 5) for v in table[s]] for s in table}
        for s in (15, 25):
            out[f"val_psnr_sigma{s}"] = round(
                denoise_psnr(prior, val_images[: args.val_images], s / 255, 1000 + s, tol=args.val_tol), 3
            )
        out["val_images"] = min(args.val_images, len(val_images))
        out["lmbda"], out["mu"] = float(prior.lmbda.detach()), float(prior.mu.detach())
        return out

    metrics = train(args, prior, loss_fn, "crr", validate)
    metrics.update({"sigma_train": args.sigma, "t_steps": args.t_steps})
    finish(args, prior, metrics, command_line("deepinv_pnn.training.train_crr", args))


if __name__ == "__main__":
    main()
