r"""Training recipe of :class:`~deepinv_pnn.models.param_map.TVParameterMapNet` on BSD400 crops.

End-to-end supervised training (MSE) of the map network and the step sizes of the
unrolled PDHG with :class:`deepinv.Trainer`, within a wall-clock budget, for

- ``denoise``: Gaussian noise with :math:`\sigma \sim U[\sigma_{\min}, \sigma_{\max}]`
  per image (:class:`deepinv.physics.generator.SigmaGenerator`);
- ``deblur``: Gaussian blur of std 1.6 (circular, :class:`deepinv.physics.BlurFFT`),
  noise 0.01.

The last ``--val-count`` images of the (sorted) folder are held out; the weights are
validated on them (whole images, :math:`\sigma = 0.1` for denoising) and the metrics go
to ``OUT.json``. Runs under ``torchrun`` (DDP, gloo on CPU, nccl on CUDA)::

    python -m deepinv_pnn.training.train_param_map --data-dir ../shared/data/bsd400 \
        --problem denoise --out tvmap_denoise.safetensors --device cpu --minutes 5 --seed 0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import deepinv as dinv
import torch
import torch.distributed as dist

from deepinv_pnn.data import ImageFolderDataset, list_images
from deepinv_pnn.models.param_map import TVParameterMapNet
from deepinv_pnn.pretrained import save_weights
from deepinv_pnn.problems import BLUR_STD

VAL_SIGMA = 0.1
DEBLUR_NOISE = 0.01


def make_problem_physics(problem: str, img_size: tuple, sigma: float, device, seed: int = 0):
    """The physics of a training/validation problem (seeded noise)."""
    noise = dinv.physics.GaussianNoise(sigma=sigma, rng=torch.Generator(device).manual_seed(seed))
    if problem == "denoise":
        return dinv.physics.Denoising(noise_model=noise, device=device)
    if problem == "deblur":
        kernel = dinv.physics.functional.gaussian_blur(sigma=BLUR_STD)
        return dinv.physics.BlurFFT(img_size=tuple(img_size), filter=kernel, noise_model=noise, device=device)
    raise ValueError(f"problem must be 'denoise' or 'deblur', got {problem!r}")


def split_files(data_dir: str, val_count: int) -> tuple[list, list]:
    """Sorted images of ``data_dir``: all but the last ``val_count`` for training, those for validation."""
    files = list_images(data_dir)
    if val_count >= len(files):
        raise ValueError(f"val_count={val_count} leaves no training image among {len(files)}")
    return files[:-val_count], files[-val_count:]


@torch.no_grad()
def evaluate(model, files, problem: str, device, n_iter: int | None = None, sigma: float | None = None, seed: int = 0):
    """PSNR of ``model`` on whole images (noise seeded per image).

    :return: list of dicts ``{"file", "psnr", "psnr_input"}``.
    """
    sigma = (VAL_SIGMA if problem == "denoise" else DEBLUR_NOISE) if sigma is None else sigma
    psnr = dinv.metric.PSNR()
    results = []
    model.eval()
    for index, path in enumerate(files):
        x = ImageFolderDataset(files=[path], flips=False).image(0)[None].to(device)
        physics = make_problem_physics(problem, tuple(x.shape[1:]), sigma, device, seed + index)
        y = physics(x)
        out = model(y, physics, n_iter=n_iter)
        results.append(
            {"file": Path(path).name, "psnr": float(psnr(out, x)), "psnr_input": float(psnr(y, x))}
        )
    return results


class BudgetTrainer(dinv.Trainer):
    """A :class:`deepinv.Trainer` that stops after a wall-clock budget (synchronised over
    DDP ranks), anneals the learning rate with a cosine in time, and re-draws the random
    crops every epoch."""

    budget_s: float = 60.0
    lr0: float = 1e-3
    datasets: tuple = ()
    samplers: tuple = ()

    def setup_train(self, train: bool = True, **kwargs):
        super().setup_train(train=train, **kwargs)
        self._start = time.time()
        self._epoch_counter = 0

    def reset_metrics(self):
        # called by Trainer.train at the start of every epoch, before the loaders are iterated
        super().reset_metrics()
        for ds in self.datasets:
            ds.set_epoch(self._epoch_counter)
        for sampler in self.samplers:
            sampler.set_epoch(self._epoch_counter)
        self._epoch_counter += 1

    def step(self, epoch, progress_bar, train_ite=None, train=True, **kwargs):
        if train:
            fraction = (time.time() - self._start) / self.budget_s
            over = torch.tensor(float(fraction >= 1.0), device=self.device)
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(over, op=dist.ReduceOp.MAX)
            if over.item() > 0:
                self.max_batch_steps = train_ite  # Trainer.train stops after this batch
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr0 * 0.5 * (1 + math.cos(math.pi * min(fraction, 1.0)))
        return super().step(epoch, progress_bar, train_ite=train_ite, train=train, **kwargs)


def train(args: argparse.Namespace) -> dict:
    """Train, save the weights (rank 0) and return the validation metrics."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = 0
    device = torch.device(args.device)
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank = dist.get_rank()
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
    torch.manual_seed(args.seed + rank)
    train_files, val_files = split_files(args.data_dir, args.val_count)
    dataset = ImageFolderDataset(files=train_files, crop_size=args.crop, flips=True, seed=args.seed)
    sampler = torch.utils.data.distributed.DistributedSampler(dataset, seed=args.seed) if distributed else None
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch, shuffle=sampler is None, sampler=sampler, drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
    )
    if args.problem == "denoise":
        physics = make_problem_physics("denoise", (1, args.crop, args.crop), args.sigma_max, device, args.seed + rank)
        generator = dinv.physics.generator.SigmaGenerator(
            sigma_min=args.sigma_min, sigma_max=args.sigma_max, device=device,
            rng=torch.Generator(device).manual_seed(args.seed + 1000 + rank),
        )
    else:
        physics = make_problem_physics("deblur", (1, args.crop, args.crop), DEBLUR_NOISE, device, args.seed + rank)
        generator = None
    model = TVParameterMapNet(
        n_iter=args.n_iter, widths=tuple(args.widths), checkpointing=args.checkpointing
    ).to(device)
    net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    trainer = BudgetTrainer(
        model=net, physics=physics, physics_generator=generator, optimizer=optimizer,
        train_dataloader=loader, epochs=10**6, online_measurements=True,
        losses=dinv.loss.SupLoss(), metrics=dinv.metric.PSNR(), device=device, save_path=None,
        verbose=rank == 0, show_progress_bar=rank == 0, plot_images=False, grad_clip=1.0, check_grad=True,
    )
    trainer.budget_s = 60.0 * args.minutes
    trainer.lr0 = args.lr
    trainer.datasets = (dataset,)
    trainer.samplers = (sampler,) if sampler is not None else ()
    start = time.time()
    trainer.train()
    seconds = time.time() - start
    metrics = {}
    if rank == 0:
        config = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in vars(args).items()}
        save_weights(model, args.out, metadata={"config": json.dumps(config)})
        val = val_files[: args.val_images] if args.val_images else val_files
        results = evaluate(model, val, args.problem, device, n_iter=args.n_iter, seed=args.seed)
        mean = sum(r["psnr"] for r in results) / len(results)
        tau, sigma, rho = (float(v) for v in model.pdhg.parameters_pdhg(1.0))
        metrics = {
            "problem": args.problem,
            "val_psnr_mean": mean,
            "val_input_psnr_mean": sum(r["psnr_input"] for r in results) / len(results),
            "val_images": len(results),
            "val_noise": VAL_SIGMA if args.problem == "denoise" else DEBLUR_NOISE,
            "train_seconds": seconds,
            "train_steps": int(trainer.max_batch_steps) if trainer.max_batch_steps < 10**10 else None,
            "pdhg_tau_sigma_rho_for_sqnorm1": [tau, sigma, rho],
            "per_image": results,
            "config": config,
        }
        Path(str(args.out) + ".json").write_text(json.dumps(metrics, indent=1))
        print(f"validation PSNR {mean:.2f} dB on {len(results)} held-out images -> {args.out}")
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return metrics


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder of training images (BSD400)")
    parser.add_argument("--out", required=True, help="output .safetensors (metrics go to OUT.json)")
    parser.add_argument("--problem", choices=("denoise", "deblur"), default="denoise")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--minutes", type=float, default=5.0, help="wall-clock training budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-iter", type=int, default=64, help="unrolled PDHG iterations T")
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--sigma-min", type=float, default=0.05)
    parser.add_argument("--sigma-max", type=float, default=0.15)
    parser.add_argument("--val-count", type=int, default=68, help="last images held out")
    parser.add_argument("--val-images", type=int, default=0, help="validate on the first N held-out (0: all)")
    parser.add_argument("--checkpointing", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    train(parse_args())
