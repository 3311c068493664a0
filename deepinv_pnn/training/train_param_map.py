r"""Training recipe of :class:`~deepinv_pnn.models.param_map.TVParameterMapNet` on BSD400 crops.

End-to-end supervised training (MSE) of the map network and the step sizes of the
unrolled PDHG with :class:`deepinv.Trainer`, within a wall-clock budget, for

- ``denoise``: Gaussian noise with :math:`\sigma \sim U[\sigma_{\min}, \sigma_{\max}]`
  per image (:class:`deepinv.physics.generator.SigmaGenerator`);
- ``deblur``: Gaussian blur of std 1.6 (circular, :class:`deepinv.physics.BlurFFT`),
  noise 0.01.

With ``--n-iter-max`` the number of unrolled iterations is drawn at random per batch:
with a fixed small :math:`T` the network learns to regularise by early stopping (for
deblurring the map collapses to 0 and more iterations amplify the noise); a random
:math:`T` keeps the map a regularisation map of the variational problem. The stored default
:math:`T` is the maximum, or with ``--select-n-iter N`` the one chosen on the last ``N``
training images (:mod:`deepinv_pnn.training.select_iterations`).

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

from deepinv_pnn.data import ImageFolderDataset, split_files
from deepinv_pnn.models.param_map import (
    DEFAULT_TIKHONOV,
    MAP_INPUTS,
    TVParameterMapNet,
    weights_config,
)
from deepinv_pnn.models.unrolled_pdhg import DATA_TERMS
from deepinv_pnn.pretrained import load_state_dict, read_metadata, save_weights
from deepinv_pnn.problems import BLUR_STD

VAL_SIGMA = 0.1
DEBLUR_NOISE = 0.01
#: initial constant normalised map per problem: a typical oracle scalar lambda over rms(x0)
#: (held-out BSD400: about 0.04-0.08 / 0.45 at sigma 0.1; about 0.001 / 0.45 for the blur)
MAP_INIT = {"denoise": 0.1, "deblur": 0.0025}


def make_problem_physics(problem: str, img_size: tuple, sigma: float, device, seed: int = 0):
    """The physics of a training/validation problem (seeded noise)."""
    noise = dinv.physics.GaussianNoise(sigma=sigma, rng=torch.Generator(device).manual_seed(seed))
    if problem == "denoise":
        return dinv.physics.Denoising(noise_model=noise, device=device)
    if problem == "deblur":
        kernel = dinv.physics.functional.gaussian_blur(sigma=BLUR_STD)
        return dinv.physics.BlurFFT(img_size=tuple(img_size), filter=kernel, noise_model=noise, device=device)
    raise ValueError(f"problem must be 'denoise' or 'deblur', got {problem!r}")


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


class NegPSNRLoss(torch.nn.Module):
    r"""Per-image :math:`10\log_{10}\mathrm{MSE}(\hat x_i, x_i)`, i.e. minus the PSNR up to a
    constant: its batch mean is the mean PSNR the acceptance measures. With the plain MSE
    the noisiest and most textured crops dominate the loss."""

    def forward(self, x_net: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        mse = (x_net - x).square().flatten(1).mean(1)
        return 10 * torch.log10(mse + 1e-10)


class BudgetTrainer(dinv.Trainer):
    """A :class:`deepinv.Trainer` that stops after a wall-clock budget (synchronised over
    DDP ranks), anneals the learning rate with a cosine in time, and re-draws the random
    crops every epoch."""

    budget_s: float = 60.0
    lr0: float = 1e-3
    datasets: tuple = ()
    samplers: tuple = ()
    pdhg: torch.nn.Module | None = None
    n_iter_range: tuple = ()
    iter_rng: torch.Generator | None = None
    max_steps: int = 0
    losses_seen: list | None = None

    def setup_train(self, train: bool = True, **kwargs):
        super().setup_train(train=train, **kwargs)
        self._start = time.time()
        self._epoch_counter = 0
        self._steps = 0
        self.losses_seen = []

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
            self._steps += 1
            last = fraction >= 1.0 or (self.max_steps > 0 and self._steps >= self.max_steps)
            over = torch.tensor(float(last), device=self.device)
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(over, op=dist.ReduceOp.MAX)
            if over.item() > 0:
                self.max_batch_steps = train_ite  # Trainer.train stops after this batch
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr0 * 0.5 * (1 + math.cos(math.pi * min(fraction, 1.0)))
            if self.pdhg is not None and self.n_iter_range:
                # a random T per batch (same stream on every rank): the map cannot exploit
                # a fixed early stopping and keeps its variational meaning
                low, high = self.n_iter_range
                self.pdhg.n_iter = int(torch.randint(low, high + 1, (1,), generator=self.iter_rng))
        out = super().step(epoch, progress_bar, train_ite=train_ite, train=train, **kwargs)
        if train:  # the batch loss, averaged over the DDP ranks (the loss of the global batch)
            loss = torch.tensor(float(self.logs_total_loss_train.val), dtype=torch.float64)
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(loss)
                loss /= dist.get_world_size()
            self.losses_seen.append(float(loss))
        return out


def widen_input(state: dict, model: TVParameterMapNet) -> dict:
    """``state`` for ``model``: a first convolution with fewer input channels (weights trained
    with ``map_input="adjoint"``) gets zero weights on the new channels, so the widened
    network computes the same map at the start of the run."""
    key = "unet.down.0.0.weight"
    target = model.state_dict()[key]
    if key in state and state[key].shape[1] < target.shape[1]:
        widened = torch.zeros_like(target)
        widened[:, : state[key].shape[1]] = state[key]
        state = {**state, key: widened}
    return state


def train(args: argparse.Namespace) -> dict:
    """Train, save the weights (rank 0) and return the validation metrics."""
    if getattr(args, "map_init", None) is None:
        args.map_init = MAP_INIT[args.problem]
    if os.environ.get("OMP_NUM_THREADS"):  # obey the thread budget (also under torchrun)
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = 0
    device = torch.device(args.device)
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank = dist.get_rank()
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    torch.manual_seed(args.seed + rank)
    train_files, val_files = split_files(args.data_dir, args.val_count)
    dataset = ImageFolderDataset(files=train_files, crop_size=args.crop, flips=True, seed=args.seed)
    # the same sampler with one process: N processes with batch b see, step by step, the
    # images and crops of one process with batch N*b (only the noise realisations differ)
    sampler = torch.utils.data.distributed.DistributedSampler(
        dataset, num_replicas=dist.get_world_size() if distributed else 1, rank=rank, seed=args.seed
    )
    loader = torch.utils.data.DataLoader(
        # no drop_last: deepinv's Trainer already skips the last batch when drop_last is set
        dataset, batch_size=args.batch, sampler=sampler, drop_last=False,
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
    n_iter_max = max(args.n_iter, args.n_iter_max or args.n_iter)
    model = TVParameterMapNet(
        n_iter=n_iter_max, widths=tuple(args.widths), checkpointing=args.checkpointing, map_init=args.map_init,
        map_input=args.map_input, tikhonov=args.tikhonov, data_term=args.data_term,
    ).to(device)
    if args.init:  # continue from earlier weights (same architecture, or fewer input channels)
        state = widen_input(load_state_dict(args.init, device=device), model)
        if weights_config(args.init, args.problem).get("data_term", DATA_TERMS[0]) != args.data_term:
            # the map network carries over; the steps of the other iteration do not
            state = {k: v for k, v in state.items() if not k.startswith("pdhg.")}
            state.update({k: v for k, v in model.state_dict().items() if k.startswith("pdhg.")})
        model.load_state_dict(state)
    net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    trainer = BudgetTrainer(
        model=net, physics=physics, physics_generator=generator, optimizer=optimizer,
        train_dataloader=loader, epochs=10**6, online_measurements=True,
        losses=dinv.loss.SupLoss(metric=NegPSNRLoss() if args.loss == "psnr" else None),
        metrics=dinv.metric.PSNR(), device=device, save_path=None,
        verbose=rank == 0, show_progress_bar=rank == 0, plot_images=False, grad_clip=1.0, check_grad=True,
    )
    trainer.budget_s = 60.0 * args.minutes
    trainer.lr0 = args.lr
    trainer.datasets = (dataset,)
    trainer.samplers = (sampler,)
    trainer.max_steps = args.max_steps
    trainer.pdhg = model.pdhg
    trainer.n_iter_range = (args.n_iter, n_iter_max)
    trainer.iter_rng = torch.Generator().manual_seed(args.seed)
    start = time.time()
    trainer.train()
    model.pdhg.n_iter = n_iter_max  # the test-time default T
    seconds = time.time() - start
    metrics = {}
    if rank == 0:
        config = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in vars(args).items()}
        config["n_iter_train"] = [args.n_iter, n_iter_max]
        if args.select_n_iter > 0:  # the default T chosen on training images (select_iterations)
            from deepinv_pnn.training.select_iterations import select_on_training_images

            model.pdhg.n_iter, config["n_iter_selection"] = select_on_training_images(
                model, train_files, args.select_n_iter, args.problem, device, (args.n_iter, n_iter_max),
                seed=args.seed,
            )
        config["n_iter"] = model.pdhg.n_iter  # what TVParameterMapNet(pretrained=...) runs by default
        save_weights(model, args.out, metadata={"config": json.dumps(config)})
        val = val_files[: args.val_images] if args.val_images else val_files
        results = evaluate(model, val, args.problem, device, n_iter=model.pdhg.n_iter, seed=args.seed)
        mean = sum(r["psnr"] for r in results) / len(results)
        with torch.no_grad():
            tau, sigma, rho = (float(v) for v in model.pdhg.parameters_pdhg(1.0))
        metrics = {
            "problem": args.problem,
            "val_psnr_mean": mean,
            "val_input_psnr_mean": sum(r["psnr_input"] for r in results) / len(results),
            "val_images": len(results),
            "val_noise": VAL_SIGMA if args.problem == "denoise" else DEBLUR_NOISE,
            "train_seconds": seconds,
            "train_steps": trainer._steps,
            "train_losses": trainer.losses_seen,
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
    parser.add_argument("--n-iter", type=int, default=32, help="unrolled PDHG iterations T (minimum)")
    parser.add_argument(
        "--n-iter-max", type=int, default=0,
        help="draw T uniformly in [n-iter, n-iter-max] per batch (0: fixed T); the saved default T is the max",
    )
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--sigma-min", type=float, default=0.05)
    parser.add_argument("--sigma-max", type=float, default=0.15)
    parser.add_argument("--val-count", type=int, default=68, help="last images held out")
    parser.add_argument("--val-images", type=int, default=0, help="validate on the first N held-out (0: all)")
    parser.add_argument("--checkpointing", action="store_true")
    parser.add_argument(
        "--loss", choices=("mse", "psnr"), default="mse",
        help="mse: mean squared error over the batch; psnr: mean over images of 10 log10 MSE (minus the mean PSNR)",
    )
    parser.add_argument(
        "--map-init", type=float, default=None,
        help="initial constant normalised map (the map over rms(A^T y / |A|^2) |A|^2); default: "
        "0.1 for denoise (a typical oracle lambda at sigma 0.1), 0.0025 for deblur",
    )
    parser.add_argument(
        "--map-input", choices=MAP_INPUTS, default=MAP_INPUTS[0],
        help="what the map network sees (TVParameterMapNet's map_input)",
    )
    parser.add_argument(
        "--tikhonov", type=float, default=DEFAULT_TIKHONOV, help="relative Tikhonov weight (map_input)"
    )
    parser.add_argument(
        "--data-term", choices=DATA_TERMS, default=DATA_TERMS[0],
        help="dual: K = [A; grad]; prox: physics.prox_l2 in the primal step (TVParameterMapNet's data_term)",
    )
    parser.add_argument("--init", default=None, help="start from these weights (continue a run)")
    parser.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: only the time budget)")
    parser.add_argument(
        "--select-n-iter", type=int, default=0, metavar="N",
        help="choose the default T on the last N training images (select_iterations; 0: the default T is the max)",
    )
    return parser.parse_args(argv)


def pack(paths: dict, out: str) -> None:
    """Merge weights files ``{problem: path}`` into one file (keys ``problem.key``; metadata kept)."""
    from safetensors.torch import load_file, save_file

    state, meta = {}, {}
    for problem, path in paths.items():
        if not Path(path).exists():
            continue
        state.update({f"{problem}.{k}": v for k, v in load_file(str(path)).items()})
        meta.update({f"{problem}.{k}": v for k, v in read_metadata(path).items()})
    if state:
        save_file(state, str(out), metadata=meta)


def unpack(path: str, out_dir: str) -> list[Path]:
    """Split a file written by :func:`pack` into ``tvmap_<problem>.safetensors`` files."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    meta = read_metadata(path)
    written = []
    for problem in sorted({k.split(".", 1)[0] for k in state}):
        sub = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(problem + ".")}
        sub_meta = {k.split(".", 1)[1]: v for k, v in meta.items() if k.startswith(problem + ".")}
        written.append(save_weights(sub, Path(out_dir) / f"tvmap_{problem}.safetensors", metadata=sub_meta))
    return written


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["pack"]:  # pack OUT denoise=PATH deblur=PATH
        pack(dict(a.split("=", 1) for a in sys.argv[3:]), sys.argv[2])
    elif sys.argv[1:2] == ["unpack"]:  # unpack PATH OUT_DIR
        print(unpack(sys.argv[2], sys.argv[3]))
    else:
        train(parse_args())
