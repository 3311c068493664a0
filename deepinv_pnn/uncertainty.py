r"""Scores of sample-based uncertainty: the continuous ranked probability score and a correlation.

A posterior sampler (:class:`~deepinv_pnn.models.WPPFlow`, the conditional MMD flow) is
judged by how well its samples :math:`X_1, \dots, X_n` at each pixel fit the true value
:math:`x`. The continuous ranked probability score

.. math::

    \mathrm{CRPS}(X, x) = \mathbb E|X - x| - \tfrac12\, \mathbb E|X - X'|

is a *proper* scoring rule (Gneiting & Raftery, JASA 2007): its expectation is smallest
when the samples follow the true conditional law, so it rewards an accurate centre and a
calibrated spread together, unlike the PSNR of the sample mean (which prefers no spread) or
the correlation of the standard deviation with the error (blind to the centre). With no
spread it is the absolute error; it is in the images' units.
"""

from __future__ import annotations

import torch

__all__ = ["pearson_correlation", "sample_crps"]


def sample_crps(samples: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    r"""Per-pixel CRPS of ``n`` samples against the truth, with the unbiased pair term.

    .. math::

        \widehat{\mathrm{CRPS}} = \frac1n \sum_i |X_i - x|
        - \frac{1}{n(n-1)} \sum_{i} (2i - n - 1)\, X_{(i)},

    the pair sum :math:`\frac{1}{2n(n-1)}\sum_{i \ne j}|X_i - X_j|` computed from the sorted
    samples :math:`X_{(1)} \le \dots \le X_{(n)}` in :math:`O(n \log n)` per pixel.

    :param torch.Tensor samples: ``[n, ...]`` with ``n >= 2``.
    :param torch.Tensor truth: broadcastable to ``samples[0]``.
    :return: the score per pixel, shape of ``samples[0]`` (lower is better).

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.uncertainty import sample_crps
    >>> samples = torch.tensor([[0.0], [2.0]])  # mean |X - 1| = 1, pair term 1/2 * 2
    >>> sample_crps(samples, torch.tensor([1.0]))
    tensor([0.])
    """
    if not isinstance(samples, torch.Tensor) or not isinstance(truth, torch.Tensor):
        raise TypeError("samples and truth must be torch.Tensors")
    n = samples.shape[0] if samples.dim() > 0 else 0
    if n < 2:
        raise ValueError(f"samples must have at least 2 samples along dimension 0, got shape {tuple(samples.shape)}")
    if not (torch.isfinite(samples).all() and torch.isfinite(truth).all()):
        raise ValueError("samples and truth must be finite")
    spread = (samples - truth).abs().mean(0)
    ordered = samples.sort(0).values
    rank = torch.arange(1, n + 1, dtype=samples.dtype, device=samples.device).view(-1, *[1] * (samples.dim() - 1))
    pairs = ((2 * rank - n - 1) * ordered).sum(0) / (n * (n - 1))
    return spread - pairs


def pearson_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two tensors of the same size (flattened), in float64.

    :Examples:

    >>> import torch
    >>> from deepinv_pnn.uncertainty import pearson_correlation
    >>> round(pearson_correlation(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 7.0])), 4)
    0.9934
    """
    if a.numel() != b.numel():
        raise ValueError(f"a and b must have the same number of entries, got {a.numel()} and {b.numel()}")
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-30))
