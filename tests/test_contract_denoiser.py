"""Contract suite: every registered denoiser."""

import pytest
from contract_params import entries

from deepinv_pnn import contracts


@pytest.mark.parametrize("component", entries("denoiser"))
def test_denoiser_keeps_shape_for_every_sigma_form(component):
    contracts.check_denoiser_shapes(component)


@pytest.mark.parametrize("component", entries("denoiser"))
def test_denoiser_dtypes_and_determinism(component):
    contracts.check_denoiser_dtypes_and_determinism(component)


@pytest.mark.parametrize("algorithm", contracts.PNP_ALGORITHMS)
@pytest.mark.parametrize("component", entries("denoiser", heavy=True))
def test_denoiser_pnp_iterates_converge(component, algorithm):
    if algorithm not in component.contract.get("pnp_algorithms", contracts.PNP_ALGORITHMS):
        pytest.skip(f"{component.name} declares no convergence guarantee for {algorithm}")
    contracts.check_denoiser_pnp_convergence(component, algorithm)


@pytest.mark.parametrize("component", entries("denoiser"))
def test_denoiser_refuses_bad_input(component):
    contracts.check_bad_input(component)
