"""Specification of deepinv_pnn.nn.patches."""

import pytest
import torch

from deepinv_pnn.nn.patches import (
    PAD_MODES,
    augment_dihedral,
    center_patches,
    extract_patches,
    gather_patches,
    min_padded_side,
    num_patches,
    pad_image,
    random_positions,
    sample_patches,
)


def test_extract_patches_matches_direct_indexing():
    x = torch.arange(2 * 3 * 7 * 9, dtype=torch.float64).reshape(2, 3, 7, 9)
    patches = extract_patches(x, 3)
    assert patches.shape == (2, num_patches(7, 9, 3), 27)
    # patch of position (r, c) = (2, 4) in the row-major order of positions
    index = 2 * (9 - 3 + 1) + 4
    assert torch.equal(patches[1, index], x[1, :, 2:5, 4:7].reshape(-1))


def test_gather_patches_agrees_with_extract_patches():
    x = torch.rand(2, 2, 11, 13)
    rows = torch.tensor([[0, 5, 7], [3, 3, 0]])
    cols = torch.tensor([[0, 7, 2], [9, 1, 0]])
    got = gather_patches(x, rows, cols, 4)
    full = extract_patches(x, 4)
    flat = rows * (13 - 4 + 1) + cols
    want = torch.stack([full[b, flat[b]] for b in range(2)])
    assert torch.equal(got, want)


def test_sample_patches_is_seeded_and_without_replacement():
    x = torch.rand(1, 1, 20, 20)
    a = sample_patches(x, 5, 50, generator=torch.Generator().manual_seed(3))
    b = sample_patches(x, 5, 50, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (1, 50, 25)
    rows, cols = random_positions(1, 20, 20, 5, 256, torch.Generator().manual_seed(0))
    assert len(set((rows * 100 + cols).tolist()[0])) == 256  # all 16*16 positions, once each


def test_sample_patches_returns_all_when_n_is_large():
    x = torch.rand(1, 1, 8, 8)
    assert torch.equal(sample_patches(x, 3, 10_000), extract_patches(x, 3))


def test_sample_patches_is_differentiable():
    x = torch.rand(1, 1, 12, 12, requires_grad=True)
    sample_patches(x, 4, 10, generator=torch.Generator().manual_seed(0)).sum().backward()
    assert x.grad.sum() == 10 * 16


def test_reflect_padding_covers_every_pixel_equally():
    x = torch.rand(1, 1, 10, 10)
    padded = pad_image(x, 4, "reflect")
    assert padded.shape == (1, 1, 16, 16)
    assert extract_patches(x, 4, pad="reflect").shape[1] == 13 * 13
    with pytest.raises(ValueError, match="pad"):
        pad_image(x, 4, "mirror")


@pytest.mark.parametrize("mode", [None, *PAD_MODES])
@pytest.mark.parametrize("patch_size", [1, 2, 3, 6])
def test_min_padded_side_is_the_smallest_side_that_pads_and_holds_a_patch(mode, patch_size):
    side = min_padded_side(patch_size, mode)
    assert extract_patches(torch.rand(1, 1, side, side), patch_size, pad=mode).shape[1] >= 1
    if side > 1:  # one pixel less: padding refuses, or no whole patch is left
        with pytest.raises((ValueError, RuntimeError)):
            extract_patches(torch.rand(1, 1, side - 1, side - 1), patch_size, pad=mode)


def test_center_patches_have_zero_mean():
    p = center_patches(torch.rand(3, 7, 36))
    assert p.mean(-1).abs().max() < 1e-6
    assert extract_patches(torch.rand(1, 1, 8, 8), 3, center=True).mean(-1).abs().max() < 1e-6


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="x must"):
        extract_patches(torch.rand(8, 8), 3)
    with pytest.raises(ValueError, match="patch_size"):
        extract_patches(torch.rand(1, 1, 8, 8), 9)


def test_augment_dihedral_gives_eight_distinct_views():
    x = torch.rand(1, 1, 5, 5)
    views = augment_dihedral(x)
    assert len(views) == 8
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8
