"""Specification of deepinv_pnn.sr_physics (the WPP papers' superresolution operator)."""

from pathlib import Path

import deepinv as dinv
import pytest
import torch

from deepinv_pnn.sr_physics import WPPSuperResolution, aligned_upsample, wpp_gaussian_kernel

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "material"


def _direct(x, k, s):
    h, w = x.shape[-2:]
    out = torch.zeros(h // s, w // s, dtype=x.dtype)
    a = torch.arange(k.shape[-1])
    for i in range(h // s):
        for j in range(w // s):
            rows = (s * i + a) % h
            cols = (s * j + a) % w
            out[i, j] = (k * x[rows][:, cols]).sum()
    return out


@pytest.mark.parametrize("factor", [4, 6])
def test_operator_matches_the_papers_formula(factor):
    x = torch.rand(1, 1, 4 * factor, 5 * factor, dtype=torch.float64)
    physics = WPPSuperResolution(factor=factor)
    k = wpp_gaussian_kernel(2.0 if factor == 4 else 3.0, dtype=torch.float64)[0, 0]
    assert abs(float(k.sum()) - 1) < 1e-12
    assert torch.allclose(physics.A(x)[0, 0], _direct(x[0, 0], k, factor), atol=1e-12)


@pytest.mark.parametrize("size", [(100, 100), (24, 36), (8, 8)])
def test_adjointness(size):
    physics = WPPSuperResolution(factor=4)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, *size, dtype=torch.float64, generator=g)
    y = torch.rand(2, 1, size[0] // 4, size[1] // 4, dtype=torch.float64, generator=g)
    lhs = (physics.A(x) * y).sum()
    rhs = (x * physics.A_adjoint(y)).sum()
    assert abs(float(lhs - rhs)) < 1e-10 * float(lhs.abs())
    assert abs(float(physics.adjointness_test(x))) < 1e-8


def test_deepinv_downsampling_matches_only_after_a_7_pixel_shift():
    x = torch.rand(1, 1, 32, 32, dtype=torch.float64)
    ours = WPPSuperResolution(factor=4)
    theirs = dinv.physics.Downsampling(
        img_size=(1, 32, 32), filter=ours.kernel.double(), factor=4, padding="circular"
    )
    assert (theirs.A(x) - ours.A(x)).abs().max() > 1e-3
    shifted = torch.roll(x, shifts=(-7, -7), dims=(-2, -1))
    assert torch.allclose(theirs.A(shifted), ours.A(x), atol=1e-12)


def test_aligned_bicubic_reproduces_smooth_images():
    # a smooth periodic image: the aligned interpolation of its low-resolution version is close,
    # the naive (unshifted) interpolation is not
    t = torch.arange(64, dtype=torch.float64) * 2 * torch.pi / 64
    x = (torch.sin(t)[:, None] + torch.cos(2 * t)[None, :])[None, None] / 4 + 0.5
    y = WPPSuperResolution(factor=4).A(x)
    aligned = aligned_upsample(y, 4)
    naive = torch.nn.functional.interpolate(y, scale_factor=4, mode="bicubic")
    assert (aligned - x).abs().mean() < 0.5 * (naive - x).abs().mean()


def test_noise_model_and_bad_arguments():
    physics = WPPSuperResolution(factor=4, noise_model=dinv.physics.GaussianNoise(0.01))
    assert physics(torch.rand(1, 1, 16, 16)).shape == (1, 1, 4, 4)
    with pytest.raises(ValueError, match="factor"):
        WPPSuperResolution(factor=0)
    with pytest.raises(ValueError, match="kernel_std"):
        WPPSuperResolution(factor=5)


@pytest.mark.skipif(not (DATA / "val_SiC_x4.h5").exists(), reason="material data absent")
def test_validation_file_was_made_with_this_operator():
    import h5py

    with h5py.File(DATA / "val_SiC_x4.h5") as f:
        gt = torch.from_numpy(f["0/gt"][()]).double()
        obs = torch.from_numpy(f["0/obs"][()]).double()
    residual = WPPSuperResolution(factor=4).A(gt) - obs
    assert abs(float(residual.std()) - 0.01) < 1e-3  # only the noise of std 0.01 remains
