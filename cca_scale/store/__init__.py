"""Activation store: many networks' layer activations in one Zarr (v3) store.

Layout on disk: :mod:`cca_scale.store.layout`. Entry points: :class:`ActivationStore` (create,
open, add, list, select, read) and :class:`LayerReader` (a picklable lazy handle on one layer,
what the engine's tasks read). Ingestion from ``.npy`` files and CSV manifests:
:mod:`cca_scale.store.ingest`. Network selection queries: :mod:`cca_scale.store.query`.

Both names are imported on first use, so that light modules of this package (the query parser,
whose grammar text the command-line help shows) load without Zarr.
"""

from __future__ import annotations

import importlib

__all__ = ["ActivationStore", "LayerReader"]

_LAZY = {
    "ActivationStore": "cca_scale.store.activation_store",
    "LayerReader": "cca_scale.store.reader",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
