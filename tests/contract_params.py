"""Parametrisation of the contract suite over the registry."""

import pytest

from deepinv_pnn.registry import components


def entries(kind: str, heavy: bool = False) -> list:
    """``pytest.param`` of every registered component of a kind; components whose
    ``contract["slow"]`` is set get their heavy checks marked slow."""
    params = []
    for component in components(kind):
        marks = [pytest.mark.slow] if heavy and component.contract.get("slow", False) else []
        params.append(pytest.param(component, id=component.name, marks=marks))
    return params
