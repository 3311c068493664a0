"""The component registry."""

import pytest

from deepinv_pnn.baselines import TVDenoiser
from deepinv_pnn.registry import Component, available, build, get, register


def test_baselines_are_registered():
    assert "tv-denoiser" in available("denoiser")
    assert "tv-prior" in available("prior")
    assert isinstance(build("tv-denoiser", scale=2.0), TVDenoiser)
    assert build("tv-denoiser", scale=2.0).scale == 2.0


def test_unknown_names_and_kinds_are_explained():
    with pytest.raises(KeyError, match="tv-denoiser"):
        get("nope")
    with pytest.raises(ValueError, match="kind must be one of"):
        register(Component(name="x", kind="model", factory=TVDenoiser))
    with pytest.raises(ValueError, match="problems must be among"):
        register(Component(name="x", kind="denoiser", factory=TVDenoiser, problems=("ct",)))
    with pytest.raises(ValueError, match="already registered"):
        register(Component(name="tv-denoiser", kind="denoiser", factory=TVDenoiser))


def test_every_entry_is_well_formed():
    for name in available():
        component = get(name)
        assert component.description, name
        assert component.kind != "sampler" or not component.problems, name
