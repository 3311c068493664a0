"""Contract suite: every registered reconstructor and sampler."""

import pytest
from contract_params import entries

from deepinv_pnn import contracts


@pytest.mark.parametrize("component", entries("reconstructor", heavy=True))
def test_reconstructor_output_shape_and_gradients(component):
    contracts.check_reconstructor(component)


@pytest.mark.parametrize("component", entries("reconstructor"))
def test_reconstructor_refuses_bad_input(component):
    contracts.check_bad_input(component)


@pytest.mark.parametrize("component", entries("sampler"))
def test_sampler_draws_finite_samples(component):
    contracts.check_sampler(component)
