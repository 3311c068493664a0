r"""The compiled sort and walk of the CPU float32 sliced MMD: a two-pass radix sort on affine keys.

For each row of projected values :math:`z_k` (the particles :math:`k < N`, then the targets),
:func:`radix_walk` sorts the row and writes :math:`v_k = 2C_k + s_k` over :math:`z_k`, returning
:math:`\sum_k z_k g_k` (see :mod:`deepinv_pnn.sampling.sliced_mmd_cpu`). The order is exact:
by value, then by index, ``-0.0`` before ``+0.0``, the order of NumPy's sort of the packed
keys of :mod:`deepinv_pnn.sampling.packed_keys`, so both sorts give the same gradients bit
for bit (tested, on signed zeros, subnormals, Cauchy tails and values over 60 orders of
magnitude too).

1. **Affine keys.** :math:`q_k = \lfloor (z_k - z_{\min}) (2^{2b} - 1) / (z_{\max} - z_{\min})
   \rfloor`, monotone in :math:`z_k`, with :math:`2b = 22` bits for rows up to :math:`2^{16}`
   points, 24 up to :math:`2^{18}` (computed in float32), 28 up to :math:`2^{22}`, else 30 (in
   float64).
   Unlike the float32 bits, whose exponents crowd a few buckets (so that an earlier radix
   sort of them needed three passes of 11 bits), these keys spread evenly, and two passes
   of :math:`b` bits sort them (:func:`sort_row`).
2. **Ties of keys.** Values closer than a key step, :math:`(z_{\max} - z_{\min}) / 2^{22}` (a few
   times the rounding error of the float32 projection; 1.1% of the points at
   :math:`N + M = 2 \cdot 10^4`, 0.26% with 24-bit keys), share a key and come out of the passes in index order. The
   walk meets such a run before any of its points and puts it into the exact order
   (:func:`order_run`: insertion for short runs, a sort of (value bits, index) words for
   long ones such as a row of signed zeros, so that no row costs more than
   :math:`O(n \log n)`).
3. **The walk** (:func:`walk_row`) keeps the running count of particles and, for rows in
   the L2 cache, reads each point's value and writes :math:`v_k` in its place as it goes;
   larger rows get :math:`v` in a buffer and the value from a vectorised pass, each read
   being a cache miss there.

The whole call at :math:`N = M = 10^4`, :math:`P = 100` on 2 threads of an AMD Zen 4 VM:
8.8-8.9 ms (9.1-9.2 with 24-bit keys) against 11.4-11.6 for the earlier three-pass radix
sort of the float32 bits with a separate walk (A/B in one process).
"""

from __future__ import annotations

import numpy as np

try:  # optional accelerator (extra "fast")
    import numba
except ImportError:  # pragma: no cover - depends on the environment
    numba = None

__all__ = ["digit_bits", "radix_scratch"]  # with numba also radix_walk, sort_row, sort_rows, walk_value

INDEX_MASK = 0xFFFFFFFF  # the index in the low half of a word, the key in the high half
_INSERTION_MAX = 16  # runs of equal keys up to this length are put in order by insertion


def digit_bits(total: int) -> int:
    """Bits :math:`b` of one radix digit for rows of ``total`` points (keys of :math:`2b` bits).

    :param int total: the points of a row, :math:`N + M`.
    :return: :math:`b`: 11 up to :math:`2^{16}` points, 12 up to :math:`2^{18}`, 14 up to
        :math:`2^{22}`, else 15.

    :Examples:

    >>> from deepinv_pnn.sampling.radix_walk import digit_bits
    >>> digit_bits(20000), digit_bits(2 * 10**6)
    (11, 14)
    """
    if total <= 2**16:  # fewer buckets: shorter prefix sums, a few more tied keys (2^22 keys)
        return 11
    if total <= 2**18:
        return 12
    return 14 if total <= 2**22 else 15  # keys below 2^30: none equals the sentinel


def radix_scratch(total: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The scratch arrays of :func:`sort_row` for rows of ``total`` points: ``keys`` (uint32),
    ``words`` (uint64), ``out`` (uint64, one more for the sentinel) and ``counts``."""
    counts = np.empty((2, 2 ** digit_bits(total)), dtype=np.int64)
    return np.empty(total, np.uint32), np.empty(total, np.uint64), np.empty(total + 1, np.uint64), counts


if numba is not None:

    def sort_rows(z: np.ndarray, scratch: tuple | None = None) -> None:
        """:func:`sort_row` (exact order) on each row of the float32 array ``z``, with the
        scratch of :func:`radix_scratch` (made here if not given); the sort alone, as
        :func:`~deepinv_pnn.sampling.packed_keys.sort_method` and the benchmark time it."""
        total = z.shape[1]
        keys, words, out, counts = radix_scratch(total) if scratch is None else scratch
        for row, lo, hi in zip(z, z.min(axis=1), z.max(axis=1)):
            sort_row(row, lo, hi, digit_bits(total), keys, words, out, counts, True)

    @numba.njit(cache=True, nogil=True, inline="always")
    def _monotone(u):  # pragma: no cover - compiled
        # float32 bits (uint32) -> an unsigned integer of the same order, -0.0 below +0.0
        return u ^ (((np.uint32(0) - (u >> np.uint32(31))) & np.uint32(0x7FFFFFFF)) | np.uint32(0x80000000))

    @numba.njit(cache=True, nogil=True, inline="always")
    def walk_value(count, is_x, pos, n, total, inv_nm):  # pragma: no cover - compiled
        # v = 2 C + s = h (2 count + is_x) - (2 pos + 1) / M with h = 1/N + 1/M: one rounded
        # product of an exact integer, so that every walk gives the same bits
        return np.float32(np.float64((2 * count + is_x) * total - (2 * pos + 1) * n) * inv_nm)

    @numba.njit(cache=True, nogil=True)
    def _heapsort(a):  # pragma: no cover - compiled
        # in place, O(n log n) worst case; compiles in a fraction of the time of ndarray.sort
        n = a.shape[0]
        for top in range(n // 2 - 1, -1, -1):
            _sift_down(a, top, n)
        for end in range(n - 1, 0, -1):
            a[0], a[end] = a[end], a[0]
            _sift_down(a, 0, end)

    @numba.njit(cache=True, nogil=True, inline="always")
    def _sift_down(a, root, n):  # pragma: no cover - compiled
        value = a[root]
        while True:
            child = 2 * root + 1
            if child >= n:
                break
            if child + 1 < n and a[child + 1] > a[child]:
                child += 1
            if a[child] <= value:
                break
            a[root] = a[child]
            root = child
        a[root] = value

    @numba.njit(cache=True, nogil=True)
    def order_run(out, zb, start):  # pragma: no cover - compiled
        """Puts the run of words that share the key of ``out[start]`` (and of ``out[start + 1]``)
        into the exact order of the float32 values (bits ``zb``), equal values in index order;
        returns the end of the run (``out`` ends with a sentinel word of no key)."""
        s32 = np.uint64(32)
        key = out[start] >> s32
        end = start + 2
        while (out[end] >> s32) == key:
            end += 1
        if end - start <= _INSERTION_MAX:  # insertion sort (the run came in index order)
            for i in range(start + 1, end):
                w = out[i]
                own = _monotone(zb[np.int64(w & INDEX_MASK)])
                j = i
                while j > start and _monotone(zb[np.int64(out[j - 1] & INDEX_MASK)]) > own:
                    out[j] = out[j - 1]
                    j -= 1
                out[j] = w
        else:  # long runs (a row of signed zeros, values over many orders of magnitude)
            run = np.empty(end - start, dtype=np.uint64)
            for i in range(end - start):
                idx = out[start + i] & INDEX_MASK
                run[i] = (np.uint64(_monotone(zb[np.int64(idx)])) << s32) | idx
            _heapsort(run)
            for i in range(end - start):
                out[start + i] = (key << s32) | (run[i] & INDEX_MASK)
        return end

    @numba.njit(cache=True, nogil=True)
    def sort_row(zr, lo, hi, dig, keys, words, out, counts, exact):  # pragma: no cover - compiled
        """Writes the words ``key << 32 | index`` of the float32 row ``zr`` (``total`` points) into
        ``out[:total]`` sorted by key, then index, and a sentinel into ``out[total]``; with
        ``exact``, in the exact order of the values too (else :func:`walk_row` finishes it).
        ``lo``, ``hi``: the row's (finite) minimum and maximum. Scratch: ``keys`` (uint32),
        ``words`` (uint64), ``counts`` (int64 ``[2, 2^dig]``)."""
        total = zr.shape[0]
        buckets = 1 << dig
        low_digit = np.uint32(buckets - 1)
        shift = np.uint32(dig)
        qmax = np.float64((1 << (2 * dig)) - 1)
        s32 = np.uint64(32)
        base = np.float64(lo)
        span = np.float64(hi) - base
        scale = qmax / span if span > 0 else 0.0
        first, second = counts[0], counts[1]
        first[:] = 0
        second[:] = 0
        if dig <= 12 and span < 1e38 and scale < 1e38:  # keys of up to 24 bits: float32 arithmetic suffices (faster)
            base32, scale32, qmax32 = np.float32(lo), np.float32(scale), np.float32(qmax)
            for j in range(total):
                key32 = (zr[j] - base32) * scale32
                keys[j] = np.uint32(np.int32(key32 if key32 < qmax32 else qmax32))
        else:
            for j in range(total):
                key = (np.float64(zr[j]) - base) * scale
                keys[j] = np.uint32(key if key < qmax else qmax)
        for j in range(total):
            q = keys[j]
            first[q & low_digit] += 1
            second[q >> shift] += 1
        acc_first, acc_second = 0, 0
        for d in range(buckets):  # exclusive prefix sums: where each bucket starts
            c1, c2 = first[d], second[d]
            first[d], second[d] = acc_first, acc_second
            acc_first += c1
            acc_second += c2
        for j in range(total):  # by the low digit
            q = keys[j]
            d = q & low_digit
            words[first[d]] = (np.uint64(q) << s32) | np.uint64(j)
            first[d] += 1
        for i in range(total):  # by the high digit
            w = words[i]
            d = (w >> s32) >> np.uint64(dig)
            out[second[d]] = w
            second[d] += 1
        out[total] = np.uint64(0xFFFFFFFF) << s32  # no key reaches 2^32 - 1
        if exact:
            zb = zr.view(np.uint32)
            run_end = 0
            for i in range(total - 1):
                if i >= run_end and (out[i + 1] >> s32) == (out[i] >> s32):
                    run_end = order_run(out, zb, i)

    @numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
    def walk_row(order, zr, n, m, buffer):  # pragma: no cover - compiled
        r"""Writes :math:`v_k` over the row ``zr`` from its sorted words ``order`` (from
        :func:`sort_row`, whose runs of equal keys it puts into the exact order on the way)
        and returns :math:`\sum_k z_k g_k`. Rows that fit the L2 cache are read and written
        in place as they are walked; larger rows, where each read would be a cache miss, get
        :math:`v` in ``buffer`` (float32, at least the row's length; else unused) and the value
        from a vectorised pass afterwards."""
        total = zr.shape[0]
        zb = zr.view(np.uint32)
        inv_nm = 1.0 / (np.float64(n) * np.float64(m))
        cx, cy = -2.0 / n, 2.0 / m
        s32 = np.uint64(32)
        count = 0
        run_end = 0
        value = 0.0
        if buffer.shape[0] < total:
            for j in range(total):
                w = order[j]
                if j >= run_end and (order[j + 1] >> s32) == (w >> s32):
                    run_end = order_run(order, zb, j)  # points not walked yet: zr holds their values
                    w = order[j]
                idx = np.int64(w & INDEX_MASK)
                is_x = np.int64(idx < n)
                v = walk_value(count, is_x, j, n, total, inv_nm)
                count += is_x
                value += np.float64(zr[idx]) * np.float64(v) * (cy + is_x * (cx - cy))
                zr[idx] = v
            return value
        for j in range(total):
            w = order[j]
            if j >= run_end and (order[j + 1] >> s32) == (w >> s32):
                run_end = order_run(order, zb, j)
                w = order[j]
            idx = np.int64(w & INDEX_MASK)
            is_x = np.int64(idx < n)
            buffer[idx] = walk_value(count, is_x, j, n, total, inv_nm)
            count += is_x
        particles, targets = 0.0, 0.0
        for k in range(n):
            particles += np.float64(zr[k]) * np.float64(buffer[k])
        for k in range(n, total):
            targets += np.float64(zr[k]) * np.float64(buffer[k])
        zr[:] = buffer[:total]
        return cx * particles + cy * targets

    @numba.njit(cache=True, nogil=True)
    def radix_walk(z, lo, hi, n, m, dig, keys, words, out, counts, buffer):  # pragma: no cover - compiled
        """:func:`sort_row` and :func:`walk_row` on each row of ``z`` (float32 ``[rows, n + m]``);
        returns the sum of the rows' values. ``out``: ``n + m + 1`` words; ``buffer``: see
        :func:`walk_row`."""
        value = 0.0
        for r in range(z.shape[0]):
            sort_row(z[r], lo[r], hi[r], dig, keys, words, out, counts, False)
            value += walk_row(out, z[r], n, m, buffer)
        return value
