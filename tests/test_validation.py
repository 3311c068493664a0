"""Input checks: clear errors naming the argument."""

import numpy as np
import pytest
import torch

from deepinv_pnn.validation import check_image, check_positive, check_sigma


def test_check_image_accepts_a_valid_image():
    x = torch.zeros(2, 3, 5, 7)
    assert check_image(x, channels=(1, 3)) is x


@pytest.mark.parametrize(
    "bad, error, pattern",
    [
        (np.zeros((1, 1, 4, 4)), TypeError, "x must be a torch.Tensor"),
        (torch.zeros(1, 1, 4, 4, dtype=torch.int64), TypeError, "floating-point"),
        (torch.zeros(1, 4, 4), ValueError, "4 dimensions"),
        (torch.zeros(1, 2, 4, 4), ValueError, "1 or 3 channel"),
        (torch.full((1, 1, 4, 4), float("nan")), ValueError, "NaN or Inf"),
    ],
)
def test_check_image_refuses(bad, error, pattern):
    with pytest.raises(error, match=pattern):
        check_image(bad, "x", channels=(1, 3))


@pytest.mark.parametrize("sigma", [0.1, 0, torch.tensor(0.2), torch.tensor([0.1, 0.2]), [0.1], [[0.1]]])
def test_check_sigma_accepts_deepinv_forms(sigma):
    assert check_sigma(sigma) is sigma


@pytest.mark.parametrize("sigma, error", [(-0.1, ValueError), (torch.tensor([0.1, -1.0]), ValueError),
                                          (float("nan"), ValueError), ("0.1", TypeError), (True, TypeError)])
def test_check_sigma_refuses(sigma, error):
    with pytest.raises(error, match="sigma"):
        check_sigma(sigma)


def test_check_positive():
    assert check_positive(torch.tensor(2.0), "gamma") == 2.0
    with pytest.raises(ValueError, match="gamma must be > 0"):
        check_positive(0, "gamma")
    assert check_positive(0, "gamma", allow_zero=True) == 0.0
