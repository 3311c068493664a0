"""Scores of sample-based uncertainty: the CRPS estimate against its definition, its propriety, refusals."""

import itertools

import pytest
import torch

from deepinv_pnn.uncertainty import pearson_correlation, sample_crps


def test_crps_matches_the_pairwise_definition():
    gen = torch.Generator().manual_seed(0)
    samples = torch.randn(7, 3, 5, generator=gen, dtype=torch.float64)
    truth = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    n = samples.shape[0]
    pairs = sum((samples[i] - samples[j]).abs() for i, j in itertools.permutations(range(n), 2))
    expected = (samples - truth).abs().mean(0) - pairs / (2 * n * (n - 1))
    assert torch.allclose(sample_crps(samples, truth), expected, atol=1e-12)


def test_crps_prefers_the_calibrated_spread():
    # truth ~ N(0, 1): samples from N(0, s^2) score best (in expectation) at s = 1, and
    # spread-free samples score the mean absolute error
    gen = torch.Generator().manual_seed(1)
    truth = torch.randn(20000, generator=gen, dtype=torch.float64)
    scores = {s: float(sample_crps(s * torch.randn(16, 20000, generator=gen, dtype=torch.float64), truth).mean())
              for s in (0.3, 0.6, 1.0, 1.5, 2.5)}
    assert min(scores, key=scores.get) == 1.0
    assert abs(scores[1.0] - 1 / torch.pi**0.5) < 0.02  # CRPS of N(0,1) against itself: 1/sqrt(pi)
    still = torch.zeros(2, 20000, dtype=torch.float64)
    assert torch.allclose(sample_crps(still, truth), truth.abs())


def test_scores_refuse_bad_input():
    with pytest.raises(ValueError, match="at least 2 samples"):
        sample_crps(torch.zeros(1, 4), torch.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        sample_crps(torch.tensor([[0.0], [float("nan")]]), torch.zeros(1))
    with pytest.raises(TypeError):
        sample_crps([0.0, 1.0], torch.zeros(1))
    with pytest.raises(ValueError, match="same number"):
        pearson_correlation(torch.zeros(3), torch.zeros(4))
    assert pearson_correlation(torch.tensor([1.0, 2.0, 3.0]), -torch.tensor([1.0, 2.0, 3.0])) == pytest.approx(-1.0)
