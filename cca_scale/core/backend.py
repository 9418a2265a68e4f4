"""The one place that knows about CuPy: array modules by name and of arrays, host transfers,
synchronisation and the R-only QR. Everything else works on whatever array module ``xp`` it is
handed (:func:`array_namespace`), with one code path for NumPy and CuPy; CuPy is imported only
when a CuPy backend or array is actually used.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np
from array_api_compat import is_cupy_array

__all__ = ["BACKENDS", "array_module", "array_namespace", "bulk_empty", "r_factor",
           "synchronize", "to_host"]

#: Array backends, by name: NumPy on CPUs, CuPy on CUDA GPUs.
BACKENDS = ("numpy", "cupy")


def array_module(backend: str) -> Any:
    """The array module of a backend name (``'numpy'`` or ``'cupy'``)."""
    if backend == "cupy":
        import cupy

        return cupy
    return np


def array_namespace(*arrays) -> Any:
    """The Array API namespace of ``arrays``: NumPy itself for NumPy arrays (NumPy 2 implements
    the standard in its main namespace; ``array_api_compat``'s copy of it touches every NumPy
    submodule on first use, f2py and testing included, 0.15 s of every run), else
    ``array_api_compat``'s (CuPy's)."""
    if all(isinstance(a, (np.ndarray, np.generic)) for a in arrays):
        return np
    from array_api_compat import array_namespace as compat_namespace

    return compat_namespace(*arrays)


#: Buffers from this size up (bytes) are mapped by :func:`bulk_empty` (NumPy asks for huge pages
#: from 4 MiB up).
BULK_MIN_BYTES = 4 << 20


def bulk_empty(xp, shape: tuple[int, ...], dtype) -> Any:
    """``xp.empty(shape, dtype)`` for a large buffer that lives through a task (a tile side's
    held coordinates, its raw layers, a tile's products), without transparent huge pages.

    NumPy asks Linux for huge pages for every large array, and touching such memory for the
    first time can stall on the kernel's memory compaction: 0.13-2.7 s per 0.76 GiB here, from
    one fresh process to the next, against a steady 0.3-0.6 s with ordinary pages. BLAS packs
    its operands, so GEMMs reading the buffer are as fast either way (measured: a tile's SYRK
    over 512 MB of blocks took 2.77-3.10 s with ordinary pages, 2.79-3.01 s with huge pages).
    C-contiguous, page-aligned, writable; freed with the array. CuPy arrays, small buffers and
    systems without ``MADV_NOHUGEPAGE``: ``xp.empty``.
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if xp is not np or nbytes < BULK_MIN_BYTES or not hasattr(mmap, "MADV_NOHUGEPAGE"):
        return xp.empty(shape, dtype=dtype)
    try:
        buffer = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE)  # anonymous, as malloc's
    except OSError as exc:  # as np.empty fails
        raise MemoryError(f"Unable to allocate {nbytes / 2**30:.3g} GiB for an array with shape "
                          f"{tuple(shape)} and data type {dtype}") from exc
    try:
        buffer.madvise(mmap.MADV_NOHUGEPAGE)
    except OSError:  # a kernel without transparent huge pages: nothing to turn off
        pass
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)


def to_host(a) -> np.ndarray:
    """A NumPy array of a NumPy or CuPy array (a device-to-host copy for CuPy)."""
    return a.get() if is_cupy_array(a) else np.asarray(a)


def synchronize(xp) -> None:
    """Wait for the device's queued work (timings); nothing to wait for with NumPy."""
    if xp is not np:
        xp.cuda.Stream.null.synchronize()


def r_factor(x):
    """The ``R`` of a QR factorisation, without forming ``Q`` (half the work of a reduced QR).

    Array API ``qr`` has no ``mode='r'``; NumPy's and CuPy's own ``linalg.qr`` both do.
    """
    return array_module("cupy" if is_cupy_array(x) else "numpy").linalg.qr(x, mode="r")
