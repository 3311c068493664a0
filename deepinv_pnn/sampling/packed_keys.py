r"""Float32 values packed with their indices into 64-bit keys, and two sorts of the keys.

Sorting float32 values with their indices (``argsort``) costs about three times a plain
sort of 64-bit keys with NumPy's vectorised sort, so each value :math:`z_k` of a row is
widened to float64 (exact) and its index :math:`k` written into the 29 low mantissa bits
that the widening leaves zero, complemented when :math:`z_k < 0` (where larger bits mean a
smaller value). Sorting these keys sorts the :math:`z_k`, equal values in increasing index
order; :func:`key_index` gives the index back. Used by
:mod:`deepinv_pnn.sampling.sliced_mmd_cpu`.

Two sorts give the same sorted keys, so results do not depend on which one runs: NumPy's
sort of the packed keys, and (with `numba <https://numba.pydata.org>`_) a compiled
least-significant-digit radix sort, three passes of 11, 11 and 10 bits over the float32
bits made monotone with the index as payload, whose last pass writes the packed keys.
:func:`sort_method` times both once per process and keeps the faster. Per 100 rows of
:math:`2 \cdot 10^4` keys, packing included: NumPy's sort 10-11 ms against 12-13 ms for an
earlier version of the radix sort on an earlier development machine, an AMD EPYC with fast
AVX-512 sorting; on an AMD Zen 4 EPYC, whose AVX-512 compress-stores are microcoded (and
NumPy's AVX-512 sort issues one per vector), NumPy's sort took 60-63 ms against the radix
sort's 10-12.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

try:  # optional accelerator (extra "fast")
    import numba
    import numba.extending
except ImportError:  # pragma: no cover - depends on the environment
    numba = None

__all__ = ["INDEX_MASK", "pack_and_sort", "sort_method", "sorted_indices_numpy"]  # with numba also key_index

INDEX_BITS = 29  # a float32 widened to float64 has 52 - 23 = 29 zero low mantissa bits
INDEX_MASK = 2**INDEX_BITS - 1
_KEEP_BYTES = 2**24  # scratch rows up to 16 MB are kept between calls (per thread)
_SCRATCH = threading.local()  # the radix sort's two rows, per thread
_SORTS = ("numpy", "radix")
_SORT_CHOICE: dict[str, str] = {}  # the sort that "auto" chose in this process
_SORT_LOCK = threading.Lock()


def _scratch_rows(total: int) -> tuple[np.ndarray, np.ndarray]:
    """Two uninitialised uint64 rows of ``total`` entries, reused by the calling thread."""
    if 8 * total > _KEEP_BYTES:
        return np.empty(total, dtype=np.uint64), np.empty(total, dtype=np.uint64)
    rows = getattr(_SCRATCH, "rows", None)
    if rows is None or rows.shape[1] < total:
        rows = _SCRATCH.rows = np.empty((2, total), dtype=np.uint64)
    return rows[0, :total], rows[1, :total]


def _bitcast(source, target):
    """A numba intrinsic that reinterprets a ``source`` scalar as the ``target`` type with the
    same bits (no memory round trip)."""

    @numba.extending.intrinsic
    def bitcast(typingctx, src):  # pragma: no cover - compiled
        if src != source:
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(target))

        return target(source), codegen

    return bitcast


if numba is not None:
    bits_as_float64 = _bitcast(numba.types.int64, numba.types.float64)
    _bits_as_float32 = _bitcast(numba.types.uint32, numba.types.float32)
    _float64_as_bits = _bitcast(numba.types.float64, numba.types.int64)

    @numba.njit(cache=True, nogil=True)
    def _pack_keys(z, keys, bits):  # pragma: no cover - compiled
        # keys[r, j] = float64(z[r, j]) with j (complemented below zero) in the low mantissa
        # bits (keys, bits: one buffer)
        rows, total = z.shape
        for r in range(rows):
            for j in range(total):
                keys[r, j] = np.float64(z[r, j])
                b = bits[r, j]
                bits[r, j] = b | (j ^ ((b >> 63) & INDEX_MASK))

    @numba.njit(cache=True, nogil=True, inline="always")
    def key_index(b):  # pragma: no cover - compiled
        # the value's index from a packed key (complemented in the keys of negative values)
        return (b & INDEX_MASK) ^ ((b >> 63) & INDEX_MASK)  # global ints: compile-time constants

    @numba.njit(cache=True, nogil=True, inline="always")
    def _monotone(u):  # pragma: no cover - compiled
        # float32 bits (as uint64) -> an unsigned integer of the same order: the sign bit set
        # above zero, all 32 bits flipped below (branch-free)
        return u ^ (((np.uint64(0) - (u >> np.uint64(31))) & np.uint64(0xFFFFFFFF)) | np.uint64(0x80000000))

    @numba.njit(cache=True, nogil=True, inline="always")
    def _float32_bits(o):  # pragma: no cover - compiled
        # the inverse of _monotone
        return o ^ (np.uint64(0xFFFFFFFF) - (o >> np.uint64(31)) * np.uint64(0x7FFFFFFF))

    @numba.njit(cache=True, nogil=True)
    def _radix_pack_sort(z, keys, bits, a, b):  # pragma: no cover - compiled
        # The keys of _pack_keys in sorted order, by a least-significant-digit radix sort of
        # u = the float32 bits mapped to an unsigned integer of the same order (sign bit set
        # above zero, all bits flipped below), digits of 11, 11 and 10 bits, with the index j
        # as payload in the 64-bit word (u << 32 | j). Each pass is stable and the first reads
        # j in increasing order, so equal values end in increasing j: the order of the packed
        # float64 keys, whose index bits are complemented below zero. The last pass writes the
        # float64 keys. a, b: two rows of uint64 (in the L2 cache for rows up to ~6 10^4).
        rows, total = z.shape
        zb = z.view(np.uint32)
        low = np.uint64(0xFFFFFFFF)
        d11 = np.uint64(2047)
        s32, s11, s22, s43, s54 = np.uint64(32), np.uint64(11), np.uint64(22), np.uint64(43), np.uint64(54)
        h0 = np.empty(2048, dtype=np.int64)
        h1 = np.empty(2048, dtype=np.int64)
        h2 = np.empty(1024, dtype=np.int64)
        for r in range(rows):
            h0[:] = 0
            h1[:] = 0
            h2[:] = 0
            for j in range(total):
                o = _monotone(np.uint64(zb[r, j]))
                h0[o & d11] += 1
                h1[(o >> s11) & d11] += 1
                h2[o >> s22] += 1
            for h in (h0, h1, h2):  # exclusive prefix sums: the first slot of each digit
                acc = 0
                for i in range(h.shape[0]):
                    c = h[i]
                    h[i] = acc
                    acc += c
            for j in range(total):
                o = _monotone(np.uint64(zb[r, j]))  # again: cheaper than storing it
                d = o & d11
                a[h0[d]] = (o << s32) | np.uint64(j)
                h0[d] += 1
            for j in range(total):
                k = a[j]
                d = (k >> s43) & d11
                b[h1[d]] = k
                h1[d] += 1
            for j in range(total):
                k = b[j]
                d = k >> s54
                pos = h2[d]
                h2[d] += 1
                value = _bits_as_float32(np.uint32(_float32_bits(k >> s32)))
                packed = _float64_as_bits(np.float64(value))
                bits[r, pos] = packed | (np.int64(k & low) ^ ((packed >> 63) & INDEX_MASK))
        return None


def pack_and_sort(z: np.ndarray, keys: np.ndarray, bits: np.ndarray, sort: str) -> None:
    """Writes the packed keys of each row of ``z`` into ``keys``, sorted (needs numba).

    :param numpy.ndarray z: float32 values ``[rows, n]``, C-contiguous, ``n < 2^29``.
    :param numpy.ndarray keys: float64 output ``[rows, n]``.
    :param numpy.ndarray bits: ``keys.view(np.int64)``.
    :param str sort: ``"numpy"`` or ``"radix"`` (see :func:`sort_method`); the same result.
    """
    if sort == "radix":
        _radix_pack_sort(z, keys, bits, *_scratch_rows(z.shape[1]))
    else:
        _pack_keys(z, keys, bits)
        keys.sort(axis=1)


def sorted_indices_numpy(keys: np.ndarray, index: np.ndarray, low: np.ndarray) -> None:
    """The packing, sort and unpacking with NumPy passes (no numba): ``keys`` holds float64
    values on entry and, viewed as int64, the indices of the sorted values on return.

    :param numpy.ndarray keys: float64 ``[rows, n]``, the values widened from float32.
    :param numpy.ndarray index: int64 ``0 .. n - 1``.
    :param numpy.ndarray low: int64 scratch ``[rows, n]``.
    """
    bits = keys.view(np.int64)
    np.right_shift(bits, 63, out=low)  # -1 below zero (sign bit set), else 0
    np.bitwise_and(low, INDEX_MASK, out=low)
    np.bitwise_xor(low, index, out=low)  # the index, complemented below zero
    np.bitwise_or(bits, low, out=bits)
    keys.sort(axis=1)
    np.right_shift(bits, 63, out=low)  # as key_index
    np.bitwise_and(low, INDEX_MASK, out=low)
    np.bitwise_and(bits, INDEX_MASK, out=bits)
    np.bitwise_xor(bits, low, out=bits)


def _fastest_sort() -> str:
    """The faster of the two sorts on this machine, timed on 4 rows of 2^15 normal values."""
    z = np.random.default_rng(0).standard_normal((4, 2**15), dtype=np.float32)
    keys = np.empty(z.shape, dtype=np.float64)
    seconds = {sort: [] for sort in _SORTS}
    for _ in range(4):
        for sort in _SORTS:
            start = time.perf_counter()
            pack_and_sort(z, keys, keys.view(np.int64), sort)
            seconds[sort].append(time.perf_counter() - start)
    # the first round loads the compiled code: not counted
    return min(_SORTS, key=lambda sort: min(seconds[sort][1:]))


def sort_method() -> str:
    """The sort of the compiled path: ``"numpy"`` (NumPy's sort of the packed 64-bit keys) or
    ``"radix"`` (a compiled radix sort with the same result).

    The environment variable ``DEEPINV_PNN_SLICED_SORT`` (``numpy``, ``radix`` or ``auto``, the
    default) chooses; ``auto`` times both once per process (a few milliseconds) and keeps the
    faster. Both give the same sorted keys, hence the same results. NumPy's vectorised sort
    was slightly faster on an earlier development machine (10-11 against 12-13 ms per 100
    rows of :math:`2 \cdot 10^4` keys); on AMD Zen 4, whose AVX-512 compress-store is
    microcoded, it is about 4.7x slower than the radix sort.

    Without numba there is no radix sort and the answer is ``"numpy"``.

    :return: ``"numpy"`` or ``"radix"``.

    :Examples:

    >>> from deepinv_pnn.sampling.packed_keys import sort_method
    >>> sort_method() in ("numpy", "radix")
    True
    """
    choice = os.environ.get("DEEPINV_PNN_SLICED_SORT", "auto").strip().lower() or "auto"
    if choice not in (*_SORTS, "auto"):
        raise ValueError(f"DEEPINV_PNN_SLICED_SORT must be one of numpy, radix, auto; got {choice!r}")
    if numba is None:
        return "numpy"
    if choice in _SORTS:
        return choice
    with _SORT_LOCK:
        if "auto" not in _SORT_CHOICE:
            _SORT_CHOICE["auto"] = _fastest_sort()
    return _SORT_CHOICE["auto"]

