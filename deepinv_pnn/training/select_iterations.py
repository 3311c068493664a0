r"""The default number of unrolled iterations :math:`T` of a trained TV-map network, chosen on
training images.

A :class:`~deepinv_pnn.models.param_map.TVParameterMapNet` trained with :math:`T` drawn in
:math:`[T_{\min}, T_{\max}]` predicts maps for the unrolled iteration, not for the converged
weighted-TV minimiser, so the best test-time :math:`T` need not be :math:`T_{\max}`. The rule:

.. math::

    T^\star = \min\Big\{T \in \mathcal{T} :
    \overline{\mathrm{PSNR}}(T) \ge \max_{T' \in \mathcal{T}} \overline{\mathrm{PSNR}}(T') - \epsilon\Big\},

with :math:`\overline{\mathrm{PSNR}}(T)` the mean PSNR on whole *training* images (the last
``n_images`` of the training split; never the held-out ones), :math:`\mathcal{T}` a grid of
the training range and :math:`\epsilon = 0.005` dB: ties go to the smaller, cheaper
:math:`T`. The choice is written into the weights' config, which
``TVParameterMapNet(pretrained=...)`` reads as its default :math:`T`.

Command line (rewrites the config of existing weights; the tensors are unchanged)::

    python -m deepinv_pnn.training.select_iterations tvmap_deblur.safetensors \
        --data-dir ../shared/data/bsd400 --problem deblur --out tvmap_deblur_selected.safetensors
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

#: ties within this many dB go to the smaller T
TIE_DB = 0.005
#: step of the grid of T over the training range
GRID_STEP = 16


def iteration_grid(n_min: int, n_max: int, step: int) -> list[int]:
    """``n_min, n_min + step, ...`` up to and including ``n_max``."""
    if not (isinstance(n_min, int) and isinstance(n_max, int) and isinstance(step, int)):
        raise TypeError("n_min, n_max and step must be ints")
    if n_min < 1 or n_max < n_min or step < 1:
        raise ValueError(f"need 1 <= n_min <= n_max and step >= 1, got {n_min}, {n_max}, {step}")
    grid = list(range(n_min, n_max + 1, step))
    return grid if grid[-1] == n_max else grid + [n_max]


def choose_n_iter(mean_psnr: dict, tie_db: float = TIE_DB) -> int:
    r"""The smallest :math:`T` whose mean PSNR is within ``tie_db`` of the best.

    :param dict mean_psnr: ``{T: mean PSNR}``.
    :param float tie_db: :math:`\epsilon`.

    >>> choose_n_iter({32: 30.00, 64: 30.104, 96: 30.107})  # 64 is within 0.005 dB of 96
    64
    """
    if not mean_psnr:
        raise ValueError("mean_psnr is empty")
    if not all(math.isfinite(v) for v in mean_psnr.values()):
        raise ValueError(f"every mean PSNR must be finite (a diverged network?), got {mean_psnr}")
    best = max(mean_psnr.values())
    return min(t for t, value in mean_psnr.items() if value >= best - tie_db)


def select_n_iter(
    model: torch.nn.Module,
    files: Sequence,
    problem: str,
    device,
    candidates: Sequence[int],
    seed: int = 0,
    tie_db: float = TIE_DB,
) -> tuple[int, dict]:
    r"""Evaluate ``model`` at every :math:`T` in ``candidates`` on ``files`` and apply the rule.

    :param model: a :class:`~deepinv_pnn.models.param_map.TVParameterMapNet`.
    :param files: whole images to evaluate on (training images).
    :param str problem: ``"denoise"`` or ``"deblur"`` (the recipe's problems and noise).
    :param candidates: the grid :math:`\mathcal{T}`.
    :param int seed: noise seed of the first image (the next images use ``seed + index``).
    :param float tie_db: :math:`\epsilon`.
    :return: the chosen :math:`T` and ``{T: mean PSNR}``.
    """
    from deepinv_pnn.training.train_param_map import evaluate

    if len(files) == 0:
        raise ValueError("no images to choose T on")
    means = {}
    for n_iter in tqdm(list(candidates), desc="choosing T", leave=False):
        results = evaluate(model, files, problem, device, n_iter=int(n_iter), seed=seed)
        means[int(n_iter)] = sum(r["psnr"] for r in results) / len(results)
    return choose_n_iter(means, tie_db), means


def select_on_training_images(
    model: torch.nn.Module,
    train_files: Sequence,
    n_images: int,
    problem: str,
    device,
    n_iter_range: tuple[int, int],
    seed: int = 0,
    step: int = GRID_STEP,
) -> tuple[int, dict]:
    """:func:`select_n_iter` on the last ``n_images`` of ``train_files`` over the grid of the
    training range ``n_iter_range``.

    :return: the chosen :math:`T` and the record stored in the weights' config (the rule,
        the images, ``{T: mean PSNR}``).
    """
    if int(n_images) < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    files = list(train_files)[-int(n_images):]
    chosen, means = select_n_iter(
        model, files, problem, device, iteration_grid(*n_iter_range, step), seed=seed
    )
    record = {"rule": f"smallest T within {TIE_DB} dB of the best mean PSNR",
              "images": [Path(p).name for p in files], "mean_psnr": means}
    return chosen, record


def main(argv=None) -> dict:
    from deepinv_pnn.data import split_files
    from deepinv_pnn.models.param_map import TVParameterMapNet
    from deepinv_pnn.pretrained import load_state_dict, read_metadata, save_weights

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", help="a TVParameterMapNet .safetensors written by the recipe")
    parser.add_argument("--data-dir", required=True, help="the training folder (BSD400)")
    parser.add_argument("--problem", choices=("denoise", "deblur"), required=True)
    parser.add_argument("--out", required=True, help="the same weights with the chosen default T")
    parser.add_argument("--n-images", type=int, default=10, help="the last N images of the training split")
    parser.add_argument("--val-count", type=int, default=68, help="held-out images (excluded)")
    parser.add_argument("--step", type=int, default=GRID_STEP, help="grid step of T over the training range")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    metadata = read_metadata(args.weights)
    config = json.loads(metadata.get("config", "{}"))
    low, high = config.get("n_iter_train", [config.get("n_iter")] * 2)
    if low is None:
        raise ValueError(f"{args.weights} has no training range of T in its config")
    model = TVParameterMapNet(pretrained=args.weights, problem=args.problem, device=args.device)
    train_files, _ = split_files(args.data_dir, args.val_count)
    chosen, record = select_on_training_images(
        model, train_files, args.n_images, args.problem, args.device, (int(low), int(high)),
        seed=args.seed, step=args.step,
    )
    config["n_iter"] = chosen
    config["n_iter_selection"] = record
    means = record["mean_psnr"]
    metadata["config"] = json.dumps(config)
    save_weights(load_state_dict(args.weights), args.out, metadata=metadata)
    for n_iter, value in means.items():
        print(f"T = {n_iter:4d}: {value:.4f} dB" + ("  <- chosen" if n_iter == chosen else ""))
    return {"n_iter": chosen, "mean_psnr": means}


if __name__ == "__main__":
    main()
