r"""Training recipe of :class:`~deepinv_pnn.models.pnn.ConvPNN` on a folder of images.

Supervised denoising at one noise level :math:`\sigma_0`: random :math:`p\times p` crops
(with flips / rotations) of the training images, :math:`y = x + \sigma_0 n`, loss
:math:`\|D(y) - x\|^2` (mean). The last ``val_count`` images of the sorted folder are held
out for validation (full images, seeded noise, mean PSNR).

Data parallel and reproducible: the *global* batch of step :math:`k` depends only on
``(seed, k)``; under ``torchrun --nproc_per_node=P`` rank :math:`r` takes its slice of it
and the gradients are averaged with ``torch.distributed.all_reduce`` (gloo on CPU,
NCCL on CUDA), so 1 and P processes follow the same loss curve (to rounding).
Checkpoints (model, optimiser, step, losses) are written atomically and resumed with
``--resume``.

Problem-aware fine-tuning (``--objective pnp-deblur``): the loss is that of the PnP-FBS
fixed point on the package's ``deblur`` problem (circular Gaussian blur of std 1.6, noise
``--pnp-noise``) with the denoiser at ``--pnp-sigma``, by Jacobian-free backpropagation
(:mod:`deepinv_pnn.training.pnp_objective`); the network stays averaged by construction, so
PnP with it still converges. Validation is then the PnP deblurring PSNR after
``--pnp-val-iter`` iterations.

Command line::

    python -m deepinv_pnn.training.train_convpnn --data-dir ../shared/data/bsd400 \
        --out convpnn.safetensors --device cpu --minutes 5 --seed 0
    torchrun --nproc_per_node=2 -m deepinv_pnn.training.train_convpnn ... --max-steps 20
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from deepinv_pnn.data import split_files, step_batch
from deepinv_pnn.models.pnn import ConvPNN
from deepinv_pnn.optim.pnp_steps import pnp_parameters
from deepinv_pnn.pretrained import save_weights
from deepinv_pnn.problems import make_physics
from deepinv_pnn.training.command_line import command_line
from deepinv_pnn.training.distributed import (
    average_gradients,
    global_mean,
    load_stack,
    rank_slice,
    save_checkpoint,
    world,
)
from deepinv_pnn.training.pnn_optimizers import OPTIMIZERS, make_optimizer
from deepinv_pnn.training.pnp_objective import fixed_point_loss, pnp_deblur_psnr, tikhonov_start

OBJECTIVES = ("denoise", "pnp-deblur")


def global_batch(
    images: list[torch.Tensor], step: int, seed: int, batch: int, patch: int, sigma: float
):
    """The clean and noisy global batch of step ``step`` (depends only on ``(seed, step)``)."""
    x, g = step_batch(images, step, seed, batch, patch)
    noise = torch.randn(x.shape, generator=g).to(x.device)
    return x, x + sigma * noise


@torch.no_grad()
def validate(model: ConvPNN, images: list[torch.Tensor], sigma: float, seed: int = 1234) -> float:
    """Mean PSNR (dB, peak 1) of ``model`` on ``images`` with seeded Gaussian noise."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    psnrs = []
    for im in images:
        x = im[None]
        y = x + sigma * torch.randn(x.shape, generator=g).to(x.device)
        mse = float(((model(y, sigma) - x) ** 2).mean())
        psnrs.append(10 * math.log10(1.0 / max(mse, 1e-20)))
    model.train()
    return sum(psnrs) / max(len(psnrs), 1)


def train_convpnn(
    data_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    sigma: float = 25 / 255,
    minutes: float = 1.0,
    max_steps: int | None = None,
    batch_size: int = 16,
    patch_size: int = 48,
    optimizer: str = "cayley-adam",
    lr: float = 2e-3,
    lr_stiefel: float = 2e-2,
    val_count: int = 68,
    val_images: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    resume: bool = False,
    device: str | torch.device = "cpu",
    seed: int = 0,
    model_kwargs: dict | None = None,
    progress: bool = True,
    init: str | os.PathLike | None = None,
    warmup: int = 200,
    stop_at: int | None = None,
    objective: str = "denoise",
    pnp_sigma: float = 0.008,
    pnp_noise: float = 0.01,
    pnp_stepsize: float = 1.98,
    pnp_iter: int = 15,
    pnp_val_iter: int = 100,
    pnp_start: str = "tikhonov",
    command: str | None = None,
) -> dict:
    r"""Train a gray :class:`ConvPNN` at noise level ``sigma``; return the metrics.

    :param data_dir: folder of training images (sorted; the last ``val_count`` are held out).
    :param out: ``.safetensors`` path of the weights (``None``: not saved); ``out + ".json"``
        gets the metrics.
    :param float sigma: training noise level :math:`\sigma_0` (also the model's scaling level).
    :param float minutes: wall-clock budget (the learning rate follows a cosine over it).
    :param int max_steps: stop after this many steps; then the schedule is step-based and
        runs are reproducible to rounding (used for the DDP equality check).
    :param int batch_size: global batch size (divisible by the number of processes).
    :param int patch_size: side of the training crops.
    :param str optimizer: one of ``cayley-adam``, ``cayley-sgd``, ``ispalm``, ``adam``.
    :param float lr: learning rate of the Euclidean parameters (thresholds, biases, t).
    :param float lr_stiefel: learning rate on the Stiefel manifold.
    :param int val_count: held-out images at the end of the sorted folder.
    :param int val_images: validate on only the first this many held-out images.
    :param checkpoint: path of the resumable checkpoint (written atomically).
    :param int checkpoint_every: steps between checkpoints.
    :param bool resume: continue from ``checkpoint`` if it exists.
    :param device: training device.
    :param int seed: seed of the initialisation, the crops and the noise.
    :param dict model_kwargs: extra :class:`ConvPNN` arguments.
    :param bool progress: show a tqdm bar (rank 0).
    :param init: weights file to start from (fine-tuning), e.g. shipped weights.
    :param int warmup: steps of linear learning-rate warm-up.
    :param int stop_at: stop after this step although the schedule runs to ``max_steps``
        (an interruption; continue with ``resume=True``).
    :param str objective: ``denoise`` (supervised denoising at ``sigma``) or ``pnp-deblur``
        (the PnP-FBS fixed-point loss on the ``deblur`` problem; ``sigma`` is then only the
        model's scaling level).
    :param float pnp_sigma: the denoiser's noise level inside PnP (``pnp-deblur``).
    :param float pnp_noise: measurement noise of the deblurring problem.
    :param float pnp_stepsize: the PnP step :math:`\gamma`, checked against :math:`2/\|A\|^2`.
    :param int pnp_iter: PnP iterations without a graph before the differentiable one.
    :param int pnp_val_iter: PnP iterations of the validation.
    :param str pnp_start: first PnP iterate of the training loss: ``tikhonov``
        (:func:`~deepinv_pnn.training.pnp_objective.tikhonov_start`, closer to the fixed point)
        or ``measurement`` (:math:`y`). Validation always starts from :math:`y`, as users do.
    :param str command: the command line of the run, kept in the weights' metadata.
    :return: dict with ``losses`` (global mean per step), ``val_psnr``, ``steps``, ``seconds``.
    """
    rank, n_procs = world()
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if batch_size % n_procs:
        raise ValueError(
            f"batch_size {batch_size} must be divisible by the number of processes {n_procs}"
        )
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if pnp_start not in ("tikhonov", "measurement"):
        raise ValueError(f"pnp_start must be 'tikhonov' or 'measurement', got {pnp_start!r}")
    device = torch.device(device)
    train_files, val_files = split_files(data_dir, val_count)
    images = load_stack(train_files, device)
    model_kwargs = dict(model_kwargs or {})
    if optimizer == "adam":  # a Euclidean optimiser needs the constraint as a parametrisation
        model_kwargs.setdefault("parametrization", "cayley")
    model = ConvPNN(channels=1, sigma0=sigma, seed=seed, pretrained=init or False, **model_kwargs)
    model = model.to(device).train()
    opt = make_optimizer(model, optimizer, lr, lr_stiefel)
    physics = None
    if objective == "pnp-deblur":
        physics = make_physics("deblur", (1, patch_size, patch_size), noise_level=0.0, device=device)
        # refuses a step that voids the convergence of PnP-FBS (gamma >= 2/L)
        pnp_parameters(model, physics, (1, patch_size, patch_size), "PGD", pnp_sigma, pnp_stepsize)
    base_lrs = [group["lr"] for group in opt.param_groups]
    losses: list[float] = []
    start_step = 0
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None and resume and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_step, losses = int(state["step"]), list(state["losses"])
    budget = 60.0 * minutes
    t0 = time.time()
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=max_steps, desc=f"convpnn sigma={sigma:.4g}", initial=start_step, mininterval=20
        )
    step = start_step
    while True:
        if max_steps is not None:
            fraction = step / max_steps
            stop = step >= max_steps or (stop_at is not None and step >= stop_at)
        else:
            fraction = (time.time() - t0) / budget
            flag = torch.tensor([fraction], dtype=torch.float64)
            if n_procs > 1:
                dist.broadcast(flag, src=0)
            fraction = float(flag)
            stop = fraction >= 1.0
        if stop:
            break
        # cosine decay after a linear warm-up (Adam's first steps are sign-like: a shock to
        # a pretrained network's biases without it)
        factor = 0.5 * (1 + math.cos(math.pi * min(fraction, 1.0))) * min(1.0, (step + 1) / warmup)
        for group, base in zip(opt.param_groups, base_lrs):
            group["lr"] = base * (0.05 + 0.95 * factor)
        noise_level = sigma if physics is None else pnp_noise
        x, y = global_batch(images, step, seed, batch_size, patch_size, noise_level)
        if physics is not None:  # the same noise draw, added to the blurred crops
            y = physics.A(x) + (y - x)
        x, y = rank_slice(x), rank_slice(y)

        def closure(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            if physics is None:
                loss = torch.mean((model(y, sigma) - x) ** 2)
            else:
                start = tikhonov_start(y, physics) if pnp_start == "tikhonov" else None
                loss = fixed_point_loss(model, x, y, physics, pnp_sigma, pnp_stepsize, pnp_iter, start)
            loss.backward()
            average_gradients(model)
            return loss

        if optimizer == "ispalm":
            loss = opt.step(closure, model)
        else:
            loss = closure()
            opt.step()
        losses.append(global_mean(loss))
        step += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3e}")
        if ckpt is not None and rank == 0 and step % checkpoint_every == 0:
            save_checkpoint(ckpt, model, opt, step, {"losses": losses})
    if bar is not None:
        bar.close()
    seconds = time.time() - t0
    if ckpt is not None and rank == 0:
        save_checkpoint(ckpt, model, opt, step, {"losses": losses})
    metrics = {
        "steps": step,
        "seconds": round(seconds, 2),
        "losses": losses,
        "sigma": sigma,
        "optimizer": optimizer,
        "objective": objective,
    }
    if physics is not None:
        metrics.update(
            pnp_sigma=pnp_sigma, pnp_noise=pnp_noise, pnp_stepsize=pnp_stepsize, pnp_iter=pnp_iter, pnp_start=pnp_start
        )
    if rank == 0:
        held_out = load_stack(val_files[:val_images] if val_images else val_files, device)
        if not held_out:
            val_psnr = float("nan")
        elif physics is None:
            val_psnr = validate(model, held_out, sigma)
        else:
            val_psnr = pnp_deblur_psnr(model, held_out, pnp_sigma, pnp_stepsize, pnp_val_iter, pnp_noise)
        metrics.update(
            val_psnr=val_psnr,
            val_images=len(held_out),
            val_files=f"{val_files[0].name}..{val_files[-1].name}" if val_files else "",
            orthogonality_error=model.orthogonality_error(),
            lipschitz_bound=model.lipschitz_bound(),
            averaged_constant=model.averaged_constant(),
            t=model.t,
        )
        if out is not None:
            meta = {"sigma0": sigma, "val_psnr": metrics["val_psnr"], "objective": objective}
            save_weights(model, out, metadata=meta if command is None else meta | {"command": command})
            tmp = Path(str(out) + ".json.tmp")
            tmp.write_text(
                json.dumps(
                    {k: v for k, v in metrics.items() if k != "losses"}
                    | {"losses_tail": losses[-20:]},
                    indent=1,
                )
            )
            os.replace(tmp, str(out) + ".json")
    return metrics


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sigma", type=float, default=25 / 255)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=48)
    parser.add_argument("--optimizer", default="cayley-adam", choices=OPTIMIZERS)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--lr-stiefel", type=float, default=2e-2)
    parser.add_argument("--val-count", type=int, default=68)
    parser.add_argument("--val-images", type=int, default=None)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument(
        "--losses-out", default=None, help="write the per-step global losses (JSON) here"
    )
    parser.add_argument("--init", default=None, help="weights file to start from")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--n-layers", type=int, default=8)
    parser.add_argument("--objective", default="denoise", choices=OBJECTIVES)
    parser.add_argument("--pnp-sigma", type=float, default=0.008)
    parser.add_argument("--pnp-noise", type=float, default=0.01)
    parser.add_argument("--pnp-stepsize", type=float, default=1.98)
    parser.add_argument("--pnp-iter", type=int, default=15)
    parser.add_argument("--pnp-start", default="tikhonov", choices=("tikhonov", "measurement"))
    parser.add_argument("--pnp-val-iter", type=int, default=100)
    args = parser.parse_args(argv)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        backend = "nccl" if str(args.device).startswith("cuda") else "gloo"
        dist.init_process_group(backend)
        if str(args.device).startswith("cuda"):
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        metrics = train_convpnn(
            args.data_dir,
            args.out,
            sigma=args.sigma,
            minutes=args.minutes,
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            patch_size=args.patch_size,
            optimizer=args.optimizer,
            lr=args.lr,
            lr_stiefel=args.lr_stiefel,
            val_count=args.val_count,
            val_images=args.val_images,
            checkpoint=args.checkpoint,
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
            device=args.device,
            seed=args.seed,
            init=args.init,
            warmup=args.warmup,
            model_kwargs={"width": args.width, "n_layers": args.n_layers},
            objective=args.objective,
            pnp_sigma=args.pnp_sigma,
            pnp_noise=args.pnp_noise,
            pnp_stepsize=args.pnp_stepsize,
            pnp_iter=args.pnp_iter,
            pnp_val_iter=args.pnp_val_iter,
            pnp_start=args.pnp_start,
            command=command_line("deepinv_pnn.training.train_convpnn", args),
        )
        rank, _ = world()
        if rank == 0:
            if args.losses_out:
                Path(args.losses_out).write_text(json.dumps(metrics["losses"]))
            print(json.dumps({k: v for k, v in metrics.items() if k != "losses"}))
    finally:
        if distributed:
            dist.destroy_process_group()
    return metrics


if __name__ == "__main__":
    main()
