"""The one place that knows about CuPy: array modules by name and of arrays, host transfers,
synchronisation and the R-only QR. Everything else works on whatever array module ``xp`` it is
handed (:func:`array_namespace`), with one code path for NumPy and CuPy; CuPy is imported only
when a CuPy backend or array is actually used.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import is_cupy_array

__all__ = ["BACKENDS", "array_module", "array_namespace", "r_factor", "synchronize",
           "to_host"]

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
