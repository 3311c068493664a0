"""Shared test set-up: seeded, single-threaded, CPU (or DEEPINV_TEST_DEVICE)."""

import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("DEEPINV_PNN_TEST_THREADS", "2")))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def device():
    return "cuda" if os.environ.get("DEEPINV_TEST_DEVICE") == "gpu" and torch.cuda.is_available() else "cpu"
