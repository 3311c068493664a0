r"""Scikit-learn's bundled 8x8 digits as an offline generative-modelling benchmark.

The 1797 images ship inside scikit-learn (no download). Pixel values 0..16 are scaled to
:math:`[0, 1]`. A seeded split gives a training set and a held-out set; generated samples
are judged by their energy distance (:math:`\mathrm{MMD}^2` with :math:`K = -\|x-y\|`) to
the held-out set, against a Gaussian fit of the training set, and by nearest-neighbour
distances to the training set (memorisation).
"""

from __future__ import annotations

import torch

from deepinv_pnn.sampling.mmd_riesz import mmd_riesz
from deepinv_pnn.validation import check_count

__all__ = ["evaluate_samples", "gaussian_fit_sample", "load_digits", "nearest_neighbour_stats"]


def load_digits(
    split: str = "train",
    held_out: int = 597,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The scikit-learn digits as ``[N, 1, 8, 8]`` in :math:`[0, 1]`, split reproducibly.

    :param str split: ``"train"`` (1200 images by default), ``"test"`` (the held-out
        ``held_out`` images) or ``"all"``.
    :param int held_out: size of the held-out split.
    :param int seed: seed of the split.

    :Examples:

    >>> from deepinv_pnn.sampling.digits import load_digits
    >>> load_digits("train").shape, load_digits("test").shape
    (torch.Size([1200, 1, 8, 8]), torch.Size([597, 1, 8, 8]))
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    held_out = check_count(held_out, "held_out", minimum=0)
    from sklearn.datasets import load_digits as _load

    images = torch.as_tensor(_load().images, dtype=dtype)[:, None] / 16.0
    if held_out >= len(images):
        raise ValueError(f"held_out must lie in [0, {len(images)}), got {held_out}")
    if split == "all":
        return images
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    index = perm[:held_out] if split == "test" else perm[held_out:]
    return images[index]


def gaussian_fit_sample(train: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` samples of the Gaussian with the mean and covariance of ``train`` (the baseline)."""
    n = check_count(n, "n")
    if not isinstance(train, torch.Tensor) or len(train) < 2:
        got = tuple(train.shape) if isinstance(train, torch.Tensor) else type(train).__name__
        raise ValueError(f"train must be a tensor of at least 2 images (to fit a covariance), got {got}")
    flat = train.reshape(len(train), -1).double()
    mean = flat.mean(0)
    cov = torch.cov(flat.T) + 1e-6 * torch.eye(flat.shape[1], dtype=flat.dtype)
    z = torch.randn(n, flat.shape[1], generator=torch.Generator().manual_seed(seed), dtype=flat.dtype)
    out = mean + z @ torch.linalg.cholesky(cov).T
    return out.to(train.dtype).reshape((n,) + tuple(train.shape[1:]))


def nearest_neighbour_stats(samples: torch.Tensor, train: torch.Tensor, held_out: torch.Tensor) -> dict:
    r"""Memorisation statistics of ``samples`` with respect to the training set.

    Returns the median nearest-neighbour distance to ``train`` of the samples and of the
    held-out images, their ratio (about 1 for a model that generalises, near 0 for one that
    copies training images), and the fraction of samples closer to ``train`` than 95% of
    the held-out images are (about 0.05 without memorisation).
    """
    def nn_dist(a):
        return torch.cdist(a.reshape(len(a), -1).double(), train.reshape(len(train), -1).double()).min(1).values

    d_gen, d_held = nn_dist(samples), nn_dist(held_out)
    q05 = torch.quantile(d_held, 0.05)
    return {
        "nn_median_generated": float(d_gen.median()),
        "nn_median_held_out": float(d_held.median()),
        "nn_ratio": float(d_gen.median() / d_held.median()),
        "frac_closer_than_q05_held_out": float((d_gen < q05).double().mean()),
    }


def evaluate_samples(samples: torch.Tensor, train: torch.Tensor, held_out: torch.Tensor, seed: int = 0) -> dict:
    """Energy distances (unbiased) to the held-out set of ``samples``, a Gaussian fit and the
    training set (as many as ``samples``, at most all of it), and memorisation statistics."""
    flat = lambda a: a.reshape(len(a), -1).double()
    gauss = gaussian_fit_sample(train, len(samples), seed=seed)
    out = {
        "energy_generated": float(mmd_riesz(flat(samples), flat(held_out), unbiased=True)),
        "energy_gaussian_fit": float(mmd_riesz(flat(gauss), flat(held_out), unbiased=True)),
        "energy_train_subset": float(mmd_riesz(flat(train[: len(samples)]), flat(held_out), unbiased=True)),
    }
    out.update(nearest_neighbour_stats(samples, train, held_out))
    return out
