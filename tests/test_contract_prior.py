"""Contract suite: every registered prior."""

import pytest
from contract_params import entries

from deepinv_pnn import contracts


@pytest.mark.parametrize("component", entries("prior"))
def test_prior_fn_shape_and_positional_g_param(component):
    contracts.check_prior_fn(component)


@pytest.mark.parametrize("component", entries("prior"))
def test_prior_grad_matches_autograd(component):
    contracts.check_prior_grad(component)


@pytest.mark.parametrize("component", entries("prior", heavy=True))
def test_prior_prox_is_a_minimiser(component):
    contracts.check_prior_prox(component)


@pytest.mark.parametrize("component", entries("prior", heavy=True))
def test_prior_works_in_deepinv_solvers(component):
    contracts.check_prior_in_solvers(component)


@pytest.mark.parametrize("component", entries("prior"))
def test_prior_refuses_bad_input(component):
    contracts.check_bad_input(component)
