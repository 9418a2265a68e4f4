"""Activation store: many networks' layer activations in one Zarr (v3) store.

Layout on disk: :mod:`cca_scale.store.layout`. Entry points: :class:`ActivationStore` (create,
open, add, list, select, read) and :class:`LayerReader` (a picklable lazy handle on one layer,
what the engine's tasks read). Ingestion from ``.npy`` files and CSV manifests:
:mod:`cca_scale.store.ingest`.
"""

from cca_scale.store.activation_store import ActivationStore
from cca_scale.store.reader import LayerReader

__all__ = ["ActivationStore", "LayerReader"]
