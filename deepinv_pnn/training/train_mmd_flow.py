r"""Training recipe of the generative and conditional MMD flows on 8x8 images.

Runnable as::

    python -m deepinv_pnn.training.train_mmd_flow --data-dir digits --out mmd_digits.safetensors \
        --device cpu --minutes 8 --seed 0 [--model generative|conditional]

``--data-dir digits`` uses scikit-learn's bundled digits (1200 training / 597 held-out
images, seeded split); a folder uses random 8x8 patches of its images instead (the last
third of the files held out). ``generative`` trains a
:class:`~deepinv_pnn.sampling.GenerativeMMDFlow`; ``conditional`` trains a
:class:`~deepinv_pnn.sampling.ConditionalMMDFlow` with an observation-consistent latent for
the ``--problem`` of :func:`deepinv_pnn.problems.make_physics` on 8x8 images with Gaussian
noise 0.01 (``inpaint``: the fixed seed-0 mask keeping half of the pixels, as the registered
``mmd-digits-posterior`` expects; or ``sr``: x2). The stages share the time budget; the
weights are written atomically and ``PATH.json`` holds the held-out metrics (energy
distances and memorisation, or posterior-mean PSNR against baselines and the correlation of
the posterior std with the error).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from deepinv_pnn.pretrained import save_weights
from deepinv_pnn.problems import make_physics
from deepinv_pnn.sampling.conditional_flow import ConditionalMMDFlow, condition_features
from deepinv_pnn.sampling.digits import evaluate_samples, load_digits
from deepinv_pnn.sampling.generative_flow import GenerativeMMDFlow
from deepinv_pnn.training.command_line import command_line

NOISE = 0.01


def load_data(data_dir: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and held-out 8x8 images ``[N, 1, 8, 8]``."""
    if data_dir in ("digits", "", None):
        return load_digits("train", seed=seed), load_digits("test", seed=seed)
    from deepinv_pnn.data import PatchDataset, list_images, load_image

    files = list_images(data_dir)
    cut = max(1, (2 * len(files)) // 3)
    split = [files[:cut], files[cut:] or files[-1:]]
    out = []
    for k, group in enumerate(split):
        images = [load_image(f) for f in group]
        ds = PatchDataset(images, patch_size=8, stride=4, n_patches=(6000, 2000)[k], seed=seed + k)
        out.append(ds.patches.reshape(-1, 1, 8, 8))
    return out[0], out[1]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default="digits", help="'digits' (scikit-learn) or an image folder")
    parser.add_argument("--out", required=True, help="output .safetensors path")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", choices=("generative", "conditional"), default="generative")
    parser.add_argument("--stages", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--particles", type=int, default=4000)
    parser.add_argument("--flow-steps", type=int, default=15)
    parser.add_argument("--train-iters", type=int, default=1000)
    parser.add_argument("--projections", type=int, default=512)
    parser.add_argument("--problem", choices=("inpaint", "sr"), default="inpaint",
                        help="conditional: the 'inpaint' (fixed seed-0 mask) or x2 'sr' problem of deepinv_pnn.problems")
    parser.add_argument("--step-size", type=float, default=1.0, help="flow step size")
    parser.add_argument("--cond-weight", type=float, default=1.0, help="conditional: weight of y in the kernel")
    args = parser.parse_args(argv)

    from tqdm.auto import tqdm

    torch.manual_seed(args.seed)
    start = time.monotonic()
    deadline = start + 60 * args.minutes
    device = torch.device(args.device)
    train, held_out = load_data(args.data_dir, args.seed)
    train, held_out = train.to(device), held_out.to(device)
    bar = tqdm(total=args.stages, desc=f"mmd-{args.model}")

    def progress(stage, record):
        bar.update(1)
        bar.set_postfix(mmd=f"{record['mmd_after']:.2e}", fit=f"{record['relative_fit_error']:.2f}")

    common = {
        "flow_steps": args.flow_steps, "train_iters": args.train_iters, "batch_size": 512,
        "n_projections": args.projections, "step_size": args.step_size, "momentum": 0.5, "deadline": deadline,
        "progress": progress,
    }
    if args.model == "generative":
        model = GenerativeMMDFlow((1, 8, 8), n_stages=args.stages, hidden=args.hidden).to(device)
        history = model.fit(train, n_particles=args.particles, seed=args.seed, **common)
        samples = model.sample(2000, seed=args.seed + 1)
        metrics = evaluate_samples(samples.cpu(), train.cpu(), held_out.cpu(), seed=args.seed)
    else:
        model = ConditionalMMDFlow(
            (1, 8, 8), n_stages=args.stages, hidden=args.hidden, cond_weight=args.cond_weight, consistent_latent=True
        ).to(device)
        reps = max(1, args.particles // len(train))
        x_rep = train.repeat(reps, 1, 1, 1)
        # the mask is the seed-0 one of make_physics; args.seed seeds the noise of the pairs
        physics = make_physics(args.problem, (1, 8, 8), noise_level=NOISE, device=device)
        physics.noise_model.rng.manual_seed(args.seed)
        with torch.no_grad():
            y_rep = physics(x_rep)
            cond = condition_features(y_rep, physics)
        history = model.fit(x_rep, cond, seed=args.seed, y=y_rep, physics=physics, **common)
        metrics = evaluate_conditional(model, held_out, args.seed, args.problem)
    bar.close()
    metrics.update(
        minutes=(time.monotonic() - start) / 60, stages_trained=sum(not h["skipped"] for h in history),
        command=command_line("deepinv_pnn.training.train_mmd_flow", args),
    )
    save_weights(model, args.out, metadata={"model": args.model, "seed": args.seed, "command": metrics["command"]})
    Path(args.out).with_suffix(".json").write_text(json.dumps({"metrics": metrics, "history": history}, indent=1))
    print(json.dumps(metrics, indent=1))
    return metrics


@torch.no_grad()
def evaluate_conditional(
    model: ConditionalMMDFlow, held_out: torch.Tensor, seed: int, problem: str, n_samples: int = 64
) -> dict:
    r"""Held-out PSNR of the posterior mean against three baselines: the training mean (ignores
    the observation), the pseudo-inverse :math:`A^\dagger y` and the training mean completed by
    the observation :math:`m + A^\dagger(y - A m)`; the Pearson correlation of the posterior
    std with the absolute error of the mean (over all pixels, and over the pixels that the
    operator does not see, ``A^\dagger A x = 0`` for a pixel image), and the calibration (fraction
    of true pixels within mean +- 2 std)."""
    x = held_out
    physics = make_physics(problem, (1, 8, 8), noise_level=NOISE, device=x.device)
    physics.noise_model.rng.manual_seed(seed + 7)
    y = physics(x)
    out = model.posterior(y, physics, n_samples=n_samples, seed=seed)
    psnr = lambda a: float(-10 * torch.log10((a - x).square().mean()))
    err, std = (x - out["mean"]).abs(), out["std"]
    mean_img = model.latent_mean.reshape(1, 1, 8, 8).expand_as(x)
    completion = mean_img + physics.A_dagger(y - physics.A(mean_img))
    unseen = (physics.A_dagger(physics.A(torch.ones_like(x[:1]))).abs() < 0.5).expand_as(x)
    corr = lambda a, b: float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])
    return {
        "problem": problem,
        "n_held_out": len(x),
        "psnr_posterior_mean": psnr(out["mean"]),
        "psnr_training_mean": psnr(mean_img),
        "psnr_pseudo_inverse": psnr(physics.A_dagger(y)),
        "psnr_mean_completion": psnr(completion),
        "std_error_correlation": corr(std, err),
        "std_error_correlation_unseen": corr(std[unseen], err[unseen]) if unseen.any() else None,
        "coverage_2std": float(((x - out["mean"]).abs() <= 2 * std).double().mean()),
        "mean_posterior_std": float(std.mean()),
    }


if __name__ == "__main__":
    main()
