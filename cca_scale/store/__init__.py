"""Activation store: many networks' layer activations in one Zarr (v3) store.

Entry points: :class:`ActivationStore` (create, open, add, list, select, read) and
:class:`LayerReader` (a picklable lazy handle on one layer, what the engine's tasks read). Both
names are imported on first use, so that light modules of this package (the query parser, whose
grammar text the command-line help shows) load without Zarr.

Modules, one job each:

- ``activation_store``: the facade, :class:`ActivationStore`; its methods delegate to the
  modules below.
- ``catalog``: what a store holds: networks, layers and arrays in order, opened after their
  documents are checked; readers on them, ``verify``, the content fingerprint.
- ``transaction``: writes that land together or not at all: checks, staging, commit, rollback.
- ``writer``: streaming, validated writes of one layer into ``_staging/``.
- ``staging``: listing and discarding what interrupted writes left in ``_staging/``.
- ``reader``: :class:`LayerReader`, reading one stored layer, every block checked.
- ``documents``: careful reads of the metadata documents (``zarr.json``); damage is reported.
- ``names``: checks on the names and values that become paths or metadata entries.
- ``layout``: the layout on disk and its paths.
- ``location``: where a store lives (path, URL, in memory), in a form that pickles.
- ``targets``: where cca_scale may write: the one rule every output path goes through.
- ``zarr_io``: key-level I/O on a Zarr store; the only module that touches Zarr internals.
- ``ingest``: filling a store from ``.npy``/``.npz`` files or a CSV manifest.
- ``capture``: recording a PyTorch model's layer outputs into a store.
- ``query``: network selection queries: the grammar, :func:`~query.parse_query`, evaluation.
- ``query_parse``: query text to the validated tree; everything outside the grammar refused.
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
