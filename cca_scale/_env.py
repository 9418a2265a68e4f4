"""What this installation runs on: library versions and the GPU, for outputs and bug reports."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

__all__ = ["gpu_text", "package_versions", "versions_text"]

#: The libraries ``cca-scale info --versions`` reports.
LIBRARIES = ("numpy", "scipy", "scikit-learn", "pandas", "dask", "distributed", "zarr",
             "numcodecs", "fsspec", "array-api-compat", "torch", "cupy", "dask-cuda")
#: CuPy ships under several distribution names, one per CUDA (or ROCm) version.
_CUPY_WHEELS = ("cupy", "cupy-cuda12x", "cupy-cuda13x", "cupy-cuda11x", "cupy-rocm-6-0")


def _version(name: str) -> str | None:
    """The installed version of ``name`` (CuPy under any of its wheel names), or None."""
    for dist in (_CUPY_WHEELS if name == "cupy" else (name,)):
        try:
            return version(dist) + (f" ({dist})" if dist != name else "")
        except PackageNotFoundError:
            continue
    return None


def package_versions(names) -> dict[str, str | None]:
    """``{name: version or None}`` for distribution names (what an output records)."""
    return {name: _version(name) for name in names}


def versions_text() -> str:
    """The lines ``cca-scale info --versions`` prints."""
    from cca_scale import __version__

    lines = [f"{'cca-scale':<16} {__version__}", f"{'python':<16} {platform.python_version()}"]
    for name, found in package_versions(LIBRARIES).items():
        lines.append(f"{name:<16} {found or 'not installed'}")
    lines.append(f"{'GPU':<16} {gpu_text()}")
    return "\n".join(lines)


def gpu_text() -> str:
    """Whether CuPy finds a CUDA device, in words."""
    try:
        import cupy
    except ImportError:
        return "no (CuPy is not installed)"
    try:
        if not cupy.cuda.is_available():
            return "no (CuPy is installed but finds no CUDA device)"
        count = cupy.cuda.runtime.getDeviceCount()
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        name = name.decode() if isinstance(name, bytes) else name
        return f"yes: {count} device(s), {name}"
    except Exception as exc:  # a broken CUDA install: say so rather than crash a bug report
        return f"no (CuPy error: {type(exc).__name__}: {exc})"
