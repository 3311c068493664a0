r"""The CPU float32 kernel of :func:`~deepinv_pnn.sampling.sliced_mmd_riesz`: one 64-bit sort.

On CPU the sort dominates the sliced MMD. Each row of projected values :math:`z_k` is sorted
as 64-bit keys that carry the index :math:`k` in their low bits
(:mod:`deepinv_pnn.sampling.packed_keys`: the float32 value widened to float64, the index in
the 29 mantissa bits that the widening leaves zero; equal values in increasing index order).

With :math:`s_k = -w_k` (:math:`-1/N` on the particles, :math:`1/M` on the targets) and
:math:`C_k` the cumulative weight at the sorted position of :math:`z_k`, the gradient of the
one-dimensional :math:`\mathrm{MMD}^2` is :math:`g_k = 2 s_k (s_k + 2 C_k)` and, the
discrepancy being translation invariant and positively 1-homogeneous,
:math:`\mathrm{MMD}^2 = \sum_k z_k g_k` (summation by parts of :math:`2\sum_k C_k^2
(z_{(k+1)} - z_{(k)})`), accumulated in float64. The element-wise work runs on blocks of a
few projections that stay in the processor cache.

When `numba <https://numba.pydata.org>`_ is installed (``pip install deepinv-pnn[fast]``), the
passes are compiled loops, and the sort is one of two with the same order, whichever is
faster on the machine (:func:`~deepinv_pnn.sampling.packed_keys.sort_method`):

- ``"radix"``: :mod:`deepinv_pnn.sampling.radix_walk`, a two-pass radix sort of affine
  integer keys whose walk puts the rare runs of tied keys into the exact order;
- ``"numpy"``: NumPy's sort of the packed keys, then a walk over the sorted keys (in one
  pass on rows larger than the L2 cache, else in two per L1-sized segment: the serial count
  and scatter, then a vectorised pass for the value).

Either walk keeps the running count of particles and writes :math:`2C_k + s_k` back to each
point's position, over the projections themselves, so the call holds one ``[P, N + M]``
float32 array, not two: less memory, and less of it to bring back into the cache when the
call follows other memory-heavy work. Both give the same gradients bit for bit (the value
up to the order of its float64 sum). On AMD Zen 4 NumPy's AVX-512 sort is about 5x slower
than the radix sort: the whole call at :math:`N = M = 10^4`, :math:`P = 100` on 2 threads took
37 ms with it, 11-12 ms with an earlier three-pass radix sort of the float32 bits, and
8.8-9.2 ms with the two-pass one.
These loops, NumPy's sort and torch's matrix products release the GIL, so the whole call
runs on a pool of ``torch.get_num_threads()`` threads, each with one torch thread:
projection, sort and walk per group of directions, then the back-projection per range of
points. The call starts no OpenMP region: torch's OpenMP threads keep spinning for
milliseconds after one, on the cores the pool needs. Without numba the same arithmetic runs
on the calling thread as about ten NumPy/torch passes per block (about 1.3x slower on one
thread).
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from deepinv_pnn.sampling.packed_keys import (
    INDEX_BITS,
    INDEX_MASK,
    pack_and_sort,
    sort_method,
    sorted_indices_numpy,
)

try:  # optional accelerator (extra "fast"); DEEPINV_PNN_NO_NUMBA=1 forces the NumPy passes
    import numba

    from deepinv_pnn.sampling.packed_keys import bits_as_float64, key_index
    from deepinv_pnn.sampling.radix_walk import digit_bits, radix_walk, walk_value
except ImportError:  # pragma: no cover - depends on the environment
    numba = None

__all__ = ["sliced_cpu_float32", "supports_cpu_float32", "uses_numba"]

_BLOCK_ELEMENTS = 2**18  # elements of one work block (~5 MB of buffers): cache-friendly
_SEGMENT = 4096  # sorted keys walked at a time by _walk_split (32 KB of keys, 16 KB of values: L1)
_SPLIT_WALK_MAX = 2**18  # points per row up to which _walk_split runs (a 1 MB row of ``shifted``: L2)
_KEEP_BYTES = 2**24  # buffers up to 16 MB are kept between calls (per thread; ~20 MB in all with numba)
_WORKSPACE = threading.local()  # reused buffers: fresh large arrays cost page faults and zeroing
_POOLS: dict[int, ThreadPoolExecutor] = {}  # persistent workers (their key buffers persist too)
_POOLS_LOCK = threading.Lock()


def _single_threaded_worker() -> None:
    # Each pool thread runs its matrix products on one thread. With torch's OpenMP backend the
    # thread count is per thread (the caller's setting is untouched); there, teams of the
    # caller's parallel regions would oversubscribe the cores, and libgomp's team threads wait
    # actively (spin) for milliseconds after each region, competing with the sorts. With
    # another backend the setting would be global, so it is left alone.
    if "parallel backend: OpenMP" in torch.__config__.parallel_info():
        torch.set_num_threads(1)


def _pool(workers: int) -> ThreadPoolExecutor:
    with _POOLS_LOCK:
        if workers not in _POOLS:
            _POOLS[workers] = ThreadPoolExecutor(
                workers, thread_name_prefix="sliced-mmd", initializer=_single_threaded_worker
            )
        return _POOLS[workers]


def _buffer(name: str, shape: tuple, dtype, keep: bool, task: bool = False):
    """An uninitialised array of ``shape`` from the calling thread's workspace, kept between
    calls; or, when not ``keep``, a new one, or with ``task`` one kept until the end of the
    current :func:`_project_and_walk` (large rows: a fresh array per row costs page faults)."""
    if not keep and not task:
        return np.empty(shape, dtype=dtype)
    size = int(np.prod(shape))
    store = _WORKSPACE.__dict__ if keep else _WORKSPACE.__dict__.setdefault("task", {})
    flat = store.get(name)
    if flat is None or flat.dtype != dtype or flat.size < size:
        flat = store[name] = np.empty(size, dtype=dtype)
    return flat[:size].reshape(shape)


def uses_numba() -> bool:
    """Whether the compiled (numba) loops are used: numba importable and not disabled by the
    environment variable ``DEEPINV_PNN_NO_NUMBA=1``."""
    return numba is not None and os.environ.get("DEEPINV_PNN_NO_NUMBA", "0") in ("", "0")


if numba is not None:

    # reassociation lets the compiler split the running sums into several (no 4-cycle chain)
    @numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
    def _walk_fused(bits, shifted, n, m):  # pragma: no cover - compiled
        # one pass over the sorted keys of each row: keeps the running count of particles,
        # writes v = 2 C_k + s_k to shifted[idx] and accumulates sum_k z_k g_k = sum over
        # particles of -2/n z v + sum over targets of 2/m z v (the arithmetic hides in the
        # cache misses of the scatter when a row of ``shifted`` is larger than the L2 cache)
        rows, total = bits.shape
        inv_nm = 1.0 / (np.float64(n) * np.float64(m))
        cx, cy = -2.0 / n, 2.0 / m
        value_bits = ~np.int64(INDEX_MASK)
        value = 0.0
        for r in range(rows):
            count = 0
            acc = 0.0
            for j in range(total):
                b = bits[r, j]
                idx = key_index(b)
                is_x = np.int64(idx < n)
                v = walk_value(count, is_x, j, n, total, inv_nm)
                count += is_x
                acc += bits_as_float64(b & value_bits) * v * (cy + is_x * (cx - cy))  # z exactly
                shifted[r, idx] = v
            value += acc
        return value

    @numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
    def _walk_split(bits, shifted, n, m, segment):  # pragma: no cover - compiled
        # the same in two passes over each segment of a row's sorted keys (in L1): the serial
        # one counts and scatters, also writing v in sorted order to ``segment``; the second,
        # without a loop-carried count, is vectorised and accumulates the value. Per row of
        # 2 10^4 / 2 10^5 / 6 10^5 points: 1.36x / 1.10x faster / 1.3x slower than the fused
        # pass (a 2.4 MB row of ``shifted`` no longer fits the L2 cache).
        rows, total = bits.shape
        seg = segment.shape[0]
        inv_nm = 1.0 / (np.float64(n) * np.float64(m))
        cx, cy = -2.0 / n, 2.0 / m
        value_bits = ~np.int64(INDEX_MASK)
        value = 0.0
        for r in range(rows):
            count = 0
            for start in range(0, total, seg):
                stop = min(start + seg, total)
                keys_seg, walked = bits[r, start:stop], segment[: stop - start]
                for j in range(stop - start):
                    idx = key_index(keys_seg[j])
                    is_x = np.int64(idx < n)
                    v = walk_value(count, is_x, start + j, n, total, inv_nm)
                    count += is_x
                    shifted[r, idx] = v
                    walked[j] = v
                acc = 0.0
                for j in range(stop - start):
                    b = keys_seg[j]
                    factor = cx if key_index(b) < n else cy
                    acc += bits_as_float64(b & value_bits) * np.float64(walked[j]) * factor
                value += acc
        return value


def _block_numba(z: np.ndarray, n: int, m: int, sort: str) -> float:
    """Sorts and walks the rows of ``z`` (float32 ``[rows, n + m]``), writing :math:`2C_k + s_k`
    over them; returns the sum of their values."""
    if sort == "radix":
        lo, hi = z.min(axis=1), z.max(axis=1)
        if np.isfinite(lo).all() and np.isfinite(hi).all():  # else NumPy's sort orders the NaN
            return _block_radix(z, lo, hi, n, m)
    return _block_packed(z, n, m)


def _block_radix(z: np.ndarray, lo: np.ndarray, hi: np.ndarray, n: int, m: int) -> float:
    # the two-pass radix sort with the walk; buffers per thread, reused across blocks and calls
    total = z.shape[1]
    dig = digit_bits(total)
    keep = 20 * total <= _KEEP_BYTES
    return radix_walk(
        z, lo, hi, n, m, dig,
        _buffer("radix_keys", (total,), np.uint32, keep, task=True),
        _buffer("radix_words", (total,), np.uint64, keep, task=True),
        _buffer("radix_sorted", (total + 1,), np.uint64, keep, task=True),
        _buffer("radix_counts", (2, 2**dig), np.int64, True),
        _buffer("radix_walked", (total if total > _SPLIT_WALK_MAX else 0,), np.float32, keep, task=True),
    )


def _block_packed(z: np.ndarray, n: int, m: int) -> float:
    # NumPy's sort of the packed keys; once packed, the rows of z are free: the walk
    # overwrites them with 2 C_k + s_k
    keys = _buffer("keys", z.shape, np.float64, z.nbytes * 2 <= _KEEP_BYTES, task=True)
    bits = keys.view(np.int64)
    pack_and_sort(z, keys, bits)
    if z.shape[1] <= _SPLIT_WALK_MAX:
        return _walk_split(bits, z, n, m, _buffer("segment", (_SEGMENT,), np.float32, True))
    return _walk_fused(bits, z, n, m)


def _project(x, y, xi_g, z) -> None:
    """``z = [x, y] xi_g`` transposed: rows of ``z`` are the directions, columns the points."""
    n = x.shape[0]
    z[:, :n].addmm_(xi_g.T, x.T, beta=0)  # beta=0: the uninitialised memory is ignored
    z[:, n:].addmm_(xi_g.T, y.T, beta=0)


def _project_and_walk(x, y, xi_g, z, rows: int, sort: str) -> float:
    """One task of the compiled path: project on a group of directions (rows of ``z``), then
    sort and walk in blocks of ``rows`` projections that stay in cache; ``z`` ends up
    holding :math:`2C_k + s_k` in place of the projections."""
    n, m = x.shape[0], y.shape[0]
    _project(x, y, xi_g, z)
    zn = z.numpy()
    try:
        return sum(_block_numba(zn[r : r + rows], n, m, sort) for r in range(0, zn.shape[0], rows))
    finally:
        _WORKSPACE.__dict__.pop("task", None)  # the large rows' buffers go with the task


def _back_project(grad, shifted_cols, xi_c, alpha: float, beta: int) -> None:
    """``grad = beta grad + alpha shifted_cols^T xi_c^T``: rows of a gradient from one chunk."""
    grad.addmm_(shifted_cols.T, xi_c.T, beta=beta, alpha=alpha)


def _split(length: int, parts: int, multiple: int = 1) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges covering ``length``: at most ``parts``, sizes a multiple of ``multiple``."""
    step = math.ceil(math.ceil(length / multiple) / parts) * multiple
    return [(a, min(a + step, length)) for a in range(0, length, step)]


def supports_cpu_float32(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether the packed-key kernel applies: float32 CPU points, fewer than 2^29 in all."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and y.dtype == torch.float32
        and x.shape[0] + y.shape[0] < 2**INDEX_BITS
    )


def sliced_cpu_float32(
    x: torch.Tensor,
    y: torch.Tensor,
    xi: torch.Tensor,
    need_gx: bool,
    need_gy: bool,
    memory_budget: float,
    scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    r"""``scale`` times the sum over the projections of the 1D :math:`\mathrm{MMD}^2`, and its gradients.

    :param torch.Tensor x: particles ``[N, d]`` (float32, CPU).
    :param torch.Tensor y: targets ``[M, d]`` (float32, CPU).
    :param torch.Tensor xi: directions as columns ``[d, P]``.
    :param bool need_gx: return the gradient with respect to ``x``.
    :param bool need_gy: return the gradient with respect to ``y``.
    :param float memory_budget: bytes of projections held at a time (4 bytes per point and
        projection with the compiled loops, which write :math:`2C_k + s_k` over the
        projections; 8 without).
    :param float scale: the factor applied to the value and the gradients (in the
        back-projection, not as a separate pass).
    :return: ``(value, grad_x or None, grad_y or None)``, value a 0-d float32 tensor.
    """
    n, m = x.shape[0], y.shape[0]
    total = n + m
    n_proj = xi.shape[1]
    rows = max(1, min(n_proj, _BLOCK_ELEMENTS // total))
    compiled = uses_numba()
    sort = sort_method() if compiled else "numpy"
    outer = max(rows, min(n_proj, int(memory_budget // ((4 if compiled else 8) * total))))
    workers = max(1, torch.get_num_threads())
    if not compiled:  # constants and buffers of the NumPy passes, reused by every block
        index = np.arange(total, dtype=np.int64)
        h = 1.0 / n + 1.0 / m
        # 2 C_k + s_k = h (c_k + c_{k-1}) - (2k - 1)/M with c_k the number of particles among
        # the k smallest: exact integer counts, then one multiply-add in float32
        minus_offset = torch.arange(1, total + 1, dtype=torch.float32).mul_(-2.0 / m).add_(1.0 / m)
        keys = np.empty((rows, total), dtype=np.float64)
        bits = keys.view(np.int64)
        low = np.empty((rows, total), dtype=np.int64)  # the index bits of the keys
        is_x = np.empty((rows, total), dtype=np.bool_)
        counts = np.zeros((rows, total + 1), dtype=np.int32)  # column 0 stays c_0 = 0
        count_sum = np.empty((rows, total), dtype=np.int32)
    value = 0.0
    # filled by the first chunk's back-projection (beta=0): no separate zeroing pass
    gx = torch.empty_like(x) if need_gx else None
    gy = torch.empty_like(y) if need_gy else None
    # the back-projections: (gradient, its first column in z, factor), g_k = 2 s_k (2 C_k + s_k)
    # with s = -1/N on the particles, 1/M on the targets
    products = []
    if need_gx:
        products.append((gx, 0, -2.0 / n * scale))
    if need_gy:
        products.append((gy, n, 2.0 / m * scale))
    for start in range(0, n_proj, outer):
        xi_c = xi[:, start : start + outer]
        p_c = xi_c.shape[1]
        keep = 4 * p_c * total <= _KEEP_BYTES
        z = torch.from_numpy(_buffer("z", (p_c, total), np.float32, keep))
        # per point: 2 C_k + s_k at its sorted position (the factors s_k are in ``products``);
        # the compiled walk writes it over the projections
        shifted = z if compiled else torch.from_numpy(_buffer("shifted", (p_c, total), np.float32, keep))
        beta = 0 if start == 0 else 1
        if compiled and workers > 1 and p_c > rows:
            # The whole call runs on the pool, one thread per task: projection, sort and walk
            # on groups of directions, then the back-projection on ranges of points. No
            # OpenMP region of the caller runs in between (see _single_threaded_worker).
            pool = _pool(workers)
            walks = [
                pool.submit(_project_and_walk, x, y, xi_c[:, a:b], z[a:b], rows, sort)
                for a, b in _split(p_c, workers)
            ]
            value += sum(task.result() for task in walks)
            back = [
                pool.submit(_back_project, grad[a:b], shifted[:, offset + a : offset + b], xi_c, alpha, beta)
                for grad, offset, alpha in products
                for a, b in _split(grad.shape[0], workers)
            ]
            for task in back:
                task.result()
            continue
        if compiled:
            value += _project_and_walk(x, y, xi_c, z, rows, sort)
        else:
            _project(x, y, xi_c, z)
            for r0 in range(0, p_c, rows):
                r = min(rows, p_c - r0)
                k, b, lb, isx, cnt, csum = keys[:r], bits[:r], low[:r], is_x[:r], counts[:r], count_sum[:r]
                torch.from_numpy(k).copy_(z[r0 : r0 + r])
                sorted_indices_numpy(k, index, lb)  # b: the index of the k-th smallest
                np.less(b, n, out=isx)
                np.cumsum(isx, axis=1, dtype=np.int32, out=cnt[:, 1:])
                np.add(cnt[:, 1:], cnt[:, :-1], out=csum)
                walked = torch.from_numpy(csum).to(torch.float32).mul_(h).add_(minus_offset)
                shifted[r0 : r0 + r].scatter_(1, torch.from_numpy(b), walked)
                zb, sb = z[r0 : r0 + r], shifted[r0 : r0 + r]
                value += (
                    -2.0 / n * float(torch.linalg.vecdot(zb[:, :n], sb[:, :n]).double().sum())
                    + 2.0 / m * float(torch.linalg.vecdot(zb[:, n:], sb[:, n:]).double().sum())
                )
        for grad, offset, alpha in products:
            _back_project(grad, shifted[:, offset : offset + grad.shape[0]], xi_c, alpha, beta)
    return torch.tensor(value * scale, dtype=torch.float32), gx, gy
