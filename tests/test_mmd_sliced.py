"""Exact and sliced MMD with the Riesz kernel: values, gradients, convergence in P."""

import math

import numpy as np
import pytest
import torch

from deepinv_pnn.sampling import (
    local_projections,
    mmd_riesz,
    packed_keys,
    random_directions,
    riesz_constant,
    sliced_mmd_cpu,
    sliced_mmd_riesz,
    sliced_mmd_riesz_1d,
)


def exact_1d(zx, zy):
    """The pairwise formula, differentiable by autograd."""
    n, m = len(zx), len(zy)
    return (
        2 * (zx[:, None] - zy[None]).abs().sum() / (n * m)
        - (zx[:, None] - zx[None]).abs().sum() / n**2
        - (zy[:, None] - zy[None]).abs().sum() / m**2
    )


def test_riesz_constant_known_values():
    assert riesz_constant(1) == pytest.approx(1.0)
    assert riesz_constant(2) == pytest.approx(math.pi / 2)
    assert riesz_constant(3) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="d must"):
        riesz_constant(0)


def test_riesz_constant_is_inverse_mean_projection():
    gen = torch.Generator().manual_seed(0)
    xi = random_directions(5, 200000, gen, dtype=torch.float64)
    assert float(xi[0].abs().mean()) * riesz_constant(5) == pytest.approx(1.0, abs=5e-3)


def test_mmd_riesz_small_example_and_symmetry():
    x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    y = torch.tensor([[0.0], [3.0]], dtype=torch.float64)
    assert float(mmd_riesz(x, y)) == pytest.approx(1.0)
    assert float(mmd_riesz(y, x)) == pytest.approx(1.0)
    assert float(mmd_riesz(x, x)) == pytest.approx(0.0, abs=1e-15)


def test_mmd_riesz_closed_form_gradient_matches_autograd_in_blocks():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(90, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(70, 4, generator=gen, dtype=torch.float64) + 0.3
    value, grad = mmd_riesz(x, y, return_grad=True, chunk_size=17)
    xa = x.clone().requires_grad_()
    ref = mmd_riesz(xa, y)
    ref.backward()
    assert float(value) == pytest.approx(float(ref.detach()), rel=1e-12)
    assert torch.allclose(grad, xa.grad, atol=1e-12)
    assert float(value) > 0


def test_mmd_riesz_unbiased_is_near_zero_for_same_distribution():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(400, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(300, 3, generator=gen, dtype=torch.float64)
    assert abs(float(mmd_riesz(x, y, unbiased=True))) < 0.3 * float(mmd_riesz(x, y))


def test_sorting_gradient_equals_autograd_of_exact_1d_formula():
    gen = torch.Generator().manual_seed(3)
    zx = torch.randn(4, 150, generator=gen, dtype=torch.float64)
    zy = torch.randn(4, 110, generator=gen, dtype=torch.float64) * 1.5 + 0.2
    values, gx, gy = sliced_mmd_riesz_1d(zx, zy, grad_y=True)
    for p in range(4):
        ax, ay = zx[p].clone().requires_grad_(), zy[p].clone().requires_grad_()
        ref = exact_1d(ax, ay)
        ref.backward()
        assert abs(float(values[p]) - float(ref)) < 1e-12
        assert float((gx[p] - ax.grad).abs().max()) < 1e-10
        assert float((gy[p] - ay.grad).abs().max()) < 1e-10


def test_sliced_gradient_equals_autograd_of_projected_exact_formula():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(60, 6, generator=gen, dtype=torch.float64)
    y = torch.randn(50, 6, generator=gen, dtype=torch.float64)
    xi = random_directions(6, 7, gen, dtype=torch.float64)
    value, grad = sliced_mmd_riesz(x, y, projections=xi, return_grad=True, memory_budget=1e4)
    xa = x.clone().requires_grad_()
    proj_x, proj_y = xa @ xi, y @ xi
    ref = riesz_constant(6) / 7 * sum(exact_1d(proj_x[:, p], proj_y[:, p]) for p in range(7))
    ref.backward()
    assert float(value) == pytest.approx(float(ref), rel=1e-12)
    assert float((grad - xa.grad).abs().max()) < 1e-10
    # the autograd path of sliced_mmd_riesz gives the same gradients, for x and y
    xb, yb = x.clone().requires_grad_(), y.clone().requires_grad_()
    sliced_mmd_riesz(xb, yb, projections=xi).backward()
    assert torch.allclose(xb.grad, grad, atol=1e-12)
    ya = y.clone().requires_grad_()
    proj_y = ya @ xi
    (riesz_constant(6) / 7 * sum(exact_1d(x @ xi[:, p], proj_y[:, p]) for p in range(7))).backward()
    assert torch.allclose(yb.grad, ya.grad, atol=1e-12)


def test_sliced_is_exact_in_one_dimension_float32():
    gen = torch.Generator().manual_seed(5)
    x, y = torch.randn(300, 1, generator=gen), torch.rand(200, 1, generator=gen)
    v = sliced_mmd_riesz(x, y, n_projections=3)
    assert float(v) == pytest.approx(float(mmd_riesz(x.double(), y.double())), rel=1e-5)


def test_sliced_error_decays_like_inverse_sqrt_of_projections():
    gen = torch.Generator().manual_seed(6)
    d = 10
    x = torch.randn(200, d, generator=gen, dtype=torch.float64)
    y = torch.randn(150, d, generator=gen, dtype=torch.float64) * 1.3 + 0.4
    exact, exact_grad = mmd_riesz(x, y, return_grad=True)
    ps = [4, 16, 64, 256]
    errors, grad_errors = [], []
    for p in ps:
        runs = [sliced_mmd_riesz(x, y, n_projections=p, generator=gen, return_grad=True) for _ in range(20)]
        errors.append(np.sqrt(np.mean([(float(v) - float(exact)) ** 2 for v, _ in runs])))
        grad_errors.append(np.mean([float((g - exact_grad).norm() / exact_grad.norm()) for _, g in runs]))
    slope = np.polyfit(np.log(ps), np.log(errors), 1)[0]
    grad_slope = np.polyfit(np.log(ps), np.log(grad_errors), 1)[0]
    assert -0.65 < slope < -0.35, (slope, errors)
    assert -0.65 < grad_slope < -0.35, (grad_slope, grad_errors)
    assert errors[-1] / float(exact) < 0.1


def test_sliced_mean_is_unbiased():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(100, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(100, 4, generator=gen, dtype=torch.float64) + 0.5
    runs = np.array([float(sliced_mmd_riesz(x, y, 200, generator=gen)) for _ in range(50)])
    standard_error = runs.std() / np.sqrt(len(runs))
    assert abs(runs.mean() - float(mmd_riesz(x, y))) < 3 * standard_error


def test_chunking_does_not_change_the_result():
    gen = torch.Generator().manual_seed(8)
    x, y = torch.randn(100, 5, generator=gen), torch.randn(80, 5, generator=gen)
    xi = random_directions(5, 33, gen)
    a = sliced_mmd_riesz(x, y, projections=xi, return_grad=True, memory_budget=1e9)
    b = sliced_mmd_riesz(x, y, projections=xi, return_grad=True, memory_budget=2e4)
    assert torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1], atol=1e-7)


def _kernel_paths():

    compiled = [("numba", "numpy", 1), ("numba", "radix", 1), ("numba", "numpy", 2), ("numba", "radix", 2)]
    return [("numpy", "numpy", 1)] + (compiled if sliced_mmd_cpu.numba is not None else [])


@pytest.fixture(params=_kernel_paths(), ids=lambda p: f"{p[0]}-{p[1]}sort-{p[2]}threads")
def kernel_path(request, monkeypatch):
    """Runs a test with the NumPy passes, and with the numba loops (NumPy's sort of the keys
    and the radix sort) on 1 and 2 threads."""

    path, sort, threads = request.param
    monkeypatch.setenv("DEEPINV_PNN_NO_NUMBA", "1" if path == "numpy" else "0")
    monkeypatch.setenv("DEEPINV_PNN_SLICED_SORT", sort)
    assert sliced_mmd_cpu.uses_numba() == (path == "numba")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    yield path
    torch.set_num_threads(before)


@pytest.mark.parametrize("walk", ["split", "fused"])
def test_cpu_float32_packed_sort_matches_the_float64_argsort_path(monkeypatch, kernel_path, walk):

    if walk == "split":  # segments of 64 sorted keys: 220 points end in a partial one
        monkeypatch.setattr(sliced_mmd_cpu, "_SEGMENT", 64)
    else:  # the one-pass walk of rows larger than the L2 cache
        monkeypatch.setattr(sliced_mmd_cpu, "_SPLIT_WALK_MAX", 0)

    gen = torch.Generator().manual_seed(10)
    x = torch.randn(130, 6, generator=gen) * 3
    y = torch.randn(90, 6, generator=gen) + 0.5
    x[0] = 0.0  # projects to signed zeros in the packed keys
    xi = random_directions(6, 11, gen)
    # blocks of 2 projections and 3 memory chunks of 4: every loop boundary of the kernel (the
    # compiled walk writes over the projections: 4 bytes per point and projection, else 8)
    monkeypatch.setattr(sliced_mmd_cpu, "_BLOCK_ELEMENTS", 2 * 220)
    per_entry = 4 if kernel_path == "numba" else 8
    value, gx, gy = sliced_mmd_cpu.sliced_cpu_float32(x, y, xi, True, True, memory_budget=per_entry * 220 * 4)
    ref, ref_gx, ref_gy = (t.float() for t in _float64_path(x, y, xi))
    assert float(value) == pytest.approx(float(ref), rel=1e-6)
    assert float((gx - ref_gx).abs().max()) < 1e-6 * float(ref_gx.abs().max())
    assert float((gy - ref_gy).abs().max()) < 1e-6 * float(ref_gy.abs().max())
    # the public function routes float32 CPU inputs through this kernel
    v2, g2 = sliced_mmd_riesz(x, y, projections=xi, scale=1.0, return_grad=True)
    assert float(v2) == pytest.approx(float(value) / 11, rel=1e-6) and torch.allclose(g2, gx / 11)


def test_cpu_float32_kernel_value_is_exact_with_tied_points(kernel_path):
    from deepinv_pnn.sampling.sliced_mmd_cpu import sliced_cpu_float32

    gen = torch.Generator().manual_seed(11)
    x = torch.randint(-3, 4, (200, 1), generator=gen).float()  # many ties, within and across
    y = torch.randint(-2, 6, (150, 1), generator=gen).float()
    value, gx, _ = sliced_cpu_float32(x, y, torch.ones(1, 1), True, False, 1e6)
    assert float(value) == pytest.approx(float(mmd_riesz(x.double(), y.double())), rel=1e-5)
    assert torch.isfinite(gx).all() and float(gx.abs().max()) <= 2 / 200 * (2 + 1 / 200)


needs_numba = pytest.mark.skipif(sliced_mmd_cpu.numba is None, reason="the radix sort is compiled by numba")


def _sort_test_rows():
    gen = np.random.default_rng(12)
    normal = gen.standard_normal((3, 5000)).astype(np.float32)
    ties = gen.integers(-4, 5, (3, 3000)).astype(np.float32)  # many equal values of both signs
    zeros = np.where(gen.random((2, 700)) < 0.5, 0.0, -0.0).astype(np.float32)  # signed zeros
    tiny = (gen.standard_normal((2, 900)) * 1e-40).astype(np.float32)  # subnormal float32
    wide = (gen.standard_normal((2, 900)) * 10.0 ** gen.integers(-30, 30, (2, 900))).astype(np.float32)
    cauchy = gen.standard_cauchy((2, 6000)).astype(np.float32)  # heavy tails: runs of tied keys
    huge = np.concatenate([gen.standard_normal((2, 300)) * 3e37, gen.standard_normal((2, 300))], 1).astype(np.float32)
    return {
        "normal": normal, "ties": ties, "zeros": zeros, "tiny": tiny, "wide": wide, "cauchy": cauchy,
        "huge": huge, "one": normal[:2, :1], "two": normal[:2, :2],
        "subnormal_span": (np.arange(1000) % 7 * 1.4e-45).astype(np.float32)[None],  # a span of 6 steps
    }


def _numpy_order(z):
    from deepinv_pnn.sampling.packed_keys import INDEX_MASK, pack_and_sort

    keys = np.empty(z.shape, dtype=np.float64)
    pack_and_sort(z.copy(), keys, keys.view(np.int64))
    bits = keys.view(np.int64)
    return (bits & INDEX_MASK) ^ ((bits >> 63) & INDEX_MASK)


@needs_numba
@pytest.mark.parametrize("case", list(_sort_test_rows()))
def test_numpy_sort_of_packed_keys_orders_by_value_then_index(case):
    z = _sort_test_rows()[case]
    index = _numpy_order(z)
    values = np.take_along_axis(z, index, axis=1)
    for row, idx in zip(values, index):
        assert sorted(idx.tolist()) == list(range(z.shape[1]))  # a permutation
        assert np.all(np.diff(row.astype(np.float64)) >= 0)  # in increasing order
        # equal values (of either sign) in increasing index order; -0.0 before +0.0
        same = row[1:] == row[:-1]
        same &= np.signbit(row[1:]) == np.signbit(row[:-1])
        assert np.all(np.diff(idx)[same] > 0)
        assert not np.any(~np.signbit(row[:-1]) & np.signbit(row[1:]) & (row[1:] == 0))


@needs_numba
@pytest.mark.parametrize("case", list(_sort_test_rows()))
@pytest.mark.parametrize("dig", [None, 12, 14])  # 22- and 24-bit keys in float32 arithmetic; 28-bit in float64
def test_radix_sort_gives_the_order_of_numpy_sort(case, dig):
    from deepinv_pnn.sampling.radix_walk import INDEX_MASK, digit_bits, sort_row

    z = _sort_test_rows()[case]
    total = z.shape[1]
    dig = dig or digit_bits(total)
    keys, words = np.empty(total, np.uint32), np.empty(total, np.uint64)
    out, counts = np.empty(total + 1, np.uint64), np.empty((2, 2**dig), np.int64)
    for row, expected in zip(z, _numpy_order(z)):
        sort_row(row, row.min(), row.max(), dig, keys, words, out, counts, True)
        assert np.array_equal(out[:total] & np.uint64(INDEX_MASK), expected.astype(np.uint64))


def test_radix_digits_grow_with_the_row():
    from deepinv_pnn.sampling.radix_walk import digit_bits

    assert [digit_bits(t) for t in (2, 2**16, 2**16 + 1, 2**18, 2**18 + 1, 2**22, 2**22 + 1)] == [11, 11, 12, 12, 14, 14, 15]


@needs_numba
@pytest.mark.parametrize("case", list(_sort_test_rows()))
@pytest.mark.parametrize("walk", ["in place", "buffered"])
def test_radix_walk_gives_the_gradient_of_numpy_sort_bit_for_bit(monkeypatch, case, walk):
    """The sort, the ordering of tied keys inside the walk and both walks (in place for rows in
    the L2 cache, buffered for larger ones) give the packed-key path's 2 C_k + s_k exactly."""

    if walk == "buffered":
        monkeypatch.setattr(sliced_mmd_cpu, "_SPLIT_WALK_MAX", 0)
    z = _sort_test_rows()[case]
    n = max(1, z.shape[1] // 3)
    m = z.shape[1] - n
    if m == 0:
        return
    radix, packed = z.copy(), z.copy()
    value = sliced_mmd_cpu._block_numba(radix, n, m, "radix")
    reference = sliced_mmd_cpu._block_numba(packed, n, m, "numpy")
    assert np.array_equal(radix.view(np.uint32), packed.view(np.uint32))
    assert value == pytest.approx(reference, rel=1e-12, abs=1e-300)


@needs_numba
def test_radix_path_hands_non_finite_rows_to_numpy_sort():
    z = _sort_test_rows()["normal"][:2, :400].copy()
    z[1, 7] = np.nan
    radix, packed = z.copy(), z.copy()
    sliced_mmd_cpu._block_numba(radix, 100, 300, "radix")
    sliced_mmd_cpu._block_numba(packed, 100, 300, "numpy")
    assert np.array_equal(radix.view(np.uint32), packed.view(np.uint32))


@needs_numba
def test_both_sorts_give_identical_results_and_the_choice_is_checked(monkeypatch):
    monkeypatch.setenv("DEEPINV_PNN_NO_NUMBA", "0")

    gen = torch.Generator().manual_seed(13)
    x = torch.randint(-3, 4, (300, 3), generator=gen).float()  # ties
    y = torch.randn(200, 3, generator=gen)
    xi = random_directions(3, 9, gen)
    results = {}
    for sort in ("numpy", "radix"):
        monkeypatch.setenv("DEEPINV_PNN_SLICED_SORT", sort)
        assert packed_keys.sort_method() == sort
        results[sort] = sliced_mmd_cpu.sliced_cpu_float32(x, y, xi, True, True, 1e9)
    value, gx, gy = results["radix"]
    assert float(value) == pytest.approx(float(results["numpy"][0]), rel=1e-6)  # float64 sums in another order
    assert torch.equal(gx, results["numpy"][1]) and torch.equal(gy, results["numpy"][2])  # bit for bit
    monkeypatch.setenv("DEEPINV_PNN_SLICED_SORT", "auto")
    assert packed_keys.sort_method() in ("numpy", "radix")
    monkeypatch.setenv("DEEPINV_PNN_SLICED_SORT", "quick")
    with pytest.raises(ValueError, match="DEEPINV_PNN_SLICED_SORT must be one of"):
        packed_keys.sort_method()


def _float64_path(x, y, xi):
    from deepinv_pnn.sampling.sliced_mmd import _sliced

    return _sliced(x.double(), y.double(), xi.double(), True, True, 1e9)


def test_local_projections_are_unit_vectors_on_patches():
    xi = local_projections((2, 9, 7), 3, 50, torch.Generator().manual_seed(0))
    assert xi.shape == (2 * 9 * 7, 50)
    assert torch.allclose(xi.norm(dim=0), torch.ones(50))
    support = (xi != 0).reshape(2, 9, 7, 50)
    for p in range(50):
        rows = support[:, :, :, p].any(0).any(1).nonzero().flatten()
        cols = support[:, :, :, p].any(0).any(0).nonzero().flatten()
        assert len(rows) == 3 and len(cols) == 3 and rows.diff().eq(1).all() and cols.diff().eq(1).all()
    images_x = torch.rand(40, 2 * 9 * 7)
    v, g = sliced_mmd_riesz(images_x, torch.rand(30, 2 * 9 * 7) ** 2, projections=xi,
                            scale=riesz_constant(18), return_grad=True)
    assert float(v) > 0 and g.shape == images_x.shape
    with pytest.raises(ValueError, match="patch_size"):
        local_projections((1, 4, 4), 5, 3)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((3, 2)), "x must be a torch.Tensor"),
        (torch.zeros(3, 2, dtype=torch.int64), "x must have a floating-point"),
        (torch.zeros(3), "x must have shape"),
        (torch.tensor([[float("nan"), 0.0]]), "x contains NaN"),
    ],
)
def test_bad_inputs_name_the_argument(bad, match):
    y = torch.zeros(4, 2)
    with pytest.raises((TypeError, ValueError), match=match):
        sliced_mmd_riesz(bad, y)
    with pytest.raises((TypeError, ValueError), match=match):
        mmd_riesz(bad, y)


def test_dimension_mismatch_and_bad_projections():
    with pytest.raises(ValueError, match="y must have d = 3"):
        sliced_mmd_riesz(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="projections must be"):
        sliced_mmd_riesz(torch.zeros(4, 3), torch.zeros(4, 3), projections=torch.zeros(2, 5))
    with pytest.raises(ValueError, match="P >= 1"):
        sliced_mmd_riesz(torch.zeros(4, 3), torch.zeros(4, 3), projections=torch.zeros(3, 0))
    with pytest.raises(ValueError, match="finite"):
        sliced_mmd_riesz(torch.zeros(4, 3), torch.zeros(4, 3), projections=torch.full((3, 2), float("nan")))
    with pytest.raises(ValueError, match="n_projections"):
        sliced_mmd_riesz(torch.zeros(4, 3), torch.zeros(4, 3), n_projections=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_sliced_on_gpu_matches_cpu():
    gen = torch.Generator().manual_seed(9)
    x, y = torch.randn(500, 8, generator=gen), torch.randn(400, 8, generator=gen)
    xi = random_directions(8, 64, gen)
    v, g = sliced_mmd_riesz(x, y, projections=xi, return_grad=True)
    vc, gc = sliced_mmd_riesz(x.cuda(), y.cuda(), projections=xi.cuda(), return_grad=True)
    assert vc.device.type == "cuda"
    assert float(vc) == pytest.approx(float(v), rel=1e-4)
    assert torch.allclose(gc.cpu(), g, atol=1e-5)
