r"""Float32 values packed with their indices into 64-bit keys, and two sorts of the keys.

Sorting float32 values with their indices (``argsort``) costs about three times a plain
sort of 64-bit keys with NumPy's vectorised sort, so each value :math:`z_k` of a row is
widened to float64 (exact) and its index :math:`k` written into the 29 low mantissa bits
that the widening leaves zero, complemented when :math:`z_k < 0` (where larger bits mean a
smaller value). Sorting these keys sorts the :math:`z_k`, equal values in increasing index
order; :func:`key_index` gives the index back. Used by
:mod:`deepinv_pnn.sampling.sliced_mmd_cpu`.

Two sorts give the same order, so results do not depend on which one runs: NumPy's sort of
the packed keys, and (with `numba <https://numba.pydata.org>`_) the two-pass radix sort of
:mod:`deepinv_pnn.sampling.radix_walk`. :func:`sort_method` times both once per process and
keeps the faster: NumPy's vectorised sort is fast where AVX-512 compress-stores are (Intel);
on AMD Zen 4, where they are microcoded and NumPy's sort issues one per vector, it took
60-63 ms per 100 rows of :math:`2 \cdot 10^4` keys against 10-12 for an earlier three-pass
radix sort of the float32 bits.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

try:  # optional accelerator (extra "fast")
    import numba
    import numba.extending

    from deepinv_pnn.sampling.radix_walk import sort_rows
except ImportError:  # pragma: no cover - depends on the environment
    numba = None

__all__ = ["INDEX_MASK", "pack_and_sort", "sort_method", "sorted_indices_numpy"]  # with numba also key_index

INDEX_BITS = 29  # a float32 widened to float64 has 52 - 23 = 29 zero low mantissa bits
INDEX_MASK = 2**INDEX_BITS - 1
_SORTS = ("numpy", "radix")
_SORT_CHOICE: dict[str, str] = {}  # the sort that "auto" chose in this process
_SORT_LOCK = threading.Lock()


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


def pack_and_sort(z: np.ndarray, keys: np.ndarray, bits: np.ndarray) -> None:
    """Writes the packed keys of each row of ``z`` into ``keys``, sorted by NumPy (needs numba).

    :param numpy.ndarray z: float32 values ``[rows, n]``, C-contiguous, ``n < 2^29``.
    :param numpy.ndarray keys: float64 output ``[rows, n]``.
    :param numpy.ndarray bits: ``keys.view(np.int64)``.
    """
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
    sorts = {"numpy": lambda: pack_and_sort(z, keys, keys.view(np.int64)), "radix": lambda: sort_rows(z)}
    seconds = {sort: [] for sort in _SORTS}
    for _ in range(4):
        for sort in _SORTS:
            start = time.perf_counter()
            sorts[sort]()
            seconds[sort].append(time.perf_counter() - start)
    # the first round loads the compiled code: not counted
    return min(_SORTS, key=lambda sort: min(seconds[sort][1:]))


def sort_method() -> str:
    """The sort of the compiled path: ``"numpy"`` (NumPy's sort of the packed 64-bit keys) or
    ``"radix"`` (the compiled two-pass radix sort of :mod:`deepinv_pnn.sampling.radix_walk`,
    the same order).

    The environment variable ``DEEPINV_PNN_SLICED_SORT`` (``numpy``, ``radix`` or ``auto``, the
    default) chooses; ``auto`` times both once per process (a few milliseconds) and keeps the
    faster. Both give the same order, hence the same gradients (the value up to the order of
    its float64 sum). On AMD Zen 4, whose AVX-512 compress-store is microcoded, NumPy's sort
    is about 5x slower than the radix sort.

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

