"""Deprecated alias of :mod:`cca_scale.runtime` (whose name no longer collides with the
repository's ``deploy/`` recipes folder). Kept for one release because deploy/README.md taught
``from cca_scale.deploy import ...``; import from ``cca_scale.runtime`` (or ``cca_scale.launch``).
"""

from __future__ import annotations

import warnings

import cca_scale.runtime as _runtime

__all__ = list(_runtime.__all__)


def __getattr__(name: str):
    if name in _runtime.__all__:
        warnings.warn(f"cca_scale.deploy.{name} moved to cca_scale.runtime.{name}; "
                      "cca_scale.deploy will be removed in the next release.",
                      DeprecationWarning, stacklevel=2)
        return getattr(_runtime, name)
    raise AttributeError(f"module 'cca_scale.deploy' has no attribute {name!r}")
