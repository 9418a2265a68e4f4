"""On-disk layout of an activation store (Zarr format 3), format version 1.

::

    STORE/
      zarr.json          root group. attributes["cca_scale"] = {
                           "kind": "activation_store", "format": 1,
                           "n_datapoints": 10000,          # null until the first write if not
                                                           #   given at creation
                           "fingerprint": "cifar10-test",  # the user's dataset id, or null
                           "created": "2026-11-03T12:00:00+00:00"}
      _staging/          group: arrays being written; never listed, moved into place when complete
      networks/          group without attributes
        <network>/       group: the network's own metadata document, written only by the process
                         that writes this network. attributes = {
                           "cca_scale": {"kind": "network",
                                         "created_ns": 1793...,   # gives insertion order
                                         "created": "2026-..."},
                           "attrs": {"lr": 0.01, "seed": 3, "labels": "true", ...}}
          <layer>/       group. attributes["cca_scale"] = {"kind": "layer", "created_ns": ...}
            acts         array (n_datapoints, n_neurons): the layer without a training step
            step_<S>     array for training step S (an integer >= 0), same shape
            ...

Every activation array is float32 (float64 when the input was float64 or when asked), chunked
``(chunk_rows, n_neurons)`` along datapoints, unsharded, uncompressed with a CRC-32C checksum
per chunk (:func:`cca_scale.store.writer.activation_compressors`; stores written before used
Zarr's default Zstandard, which Zarr still reads from each array's metadata), and carries
``attributes["cca_scale"] = {"kind": "activations", "network": ..., "layer": ..., "step": S or
null, "timesteps": false, "write_id": "<uuid4 hex>", "written": "<ISO time>"}``. ``write_id`` is
new every time the array is (re)written. Recurrent layers stored with ``timesteps=True`` are 3-D,
``(n_datapoints, n_timesteps, n_neurons)``, chunked ``(chunk_rows, 1, n_neurons)``, with
``"timesteps": true``; a reader for timestep ``t`` sees the 2-D slice ``[:, t, :]``.

Why it is safe for many processes to write different networks at once: the store's datapoint
count is fixed in the root document at creation (or by the first write, which must then come from
a single process); a write then touches only its own network's documents and arrays: arrays are
staged under ``_staging/<uuid4>``, every chunk written once by one process, and renamed into
place when complete (an atomic directory rename on local disk; a copy then delete on object
stores). No array is sharded and no document is shared between writers. Insertion order comes
from ``created_ns`` in each network's document (ties broken by name), not from a shared list.

Network and layer names: see :data:`cca_scale.store.names.NAME_FORM`. Names differing only in
case are refused as collisions (they would collide on case-insensitive file systems), and so are
Zarr's own names (``zarr.json``, ``.zarray``, ..., and ``c``, the chunk-key prefix, in any case;
:data:`cca_scale.store.names.RESERVED_NAMES`).

Damage: activation arrays are created with fill value NaN, which no stored activation can be
(ingest refuses NaN), so a chunk lost after the write reads as NaN and the reader reports it;
arrays of stores written before that have fill value 0, and the reader checks their chunk keys.
A folder of a network, layer or array without its ``zarr.json`` is damage too, except while a
write is under way: a new node's folder is empty until Zarr renames its document into place,
and an array copied into place on an object store gets its document last while its source
still sits in ``_staging/`` (see :mod:`cca_scale.store.documents`).
"""

from __future__ import annotations

import re

__all__ = [
    "FORMAT",
    "KEY",
    "NETWORKS",
    "STAGING",
    "array_name",
    "array_path",
    "layer_path",
    "network_path",
    "parse_array_name",
]

#: Version of this layout, recorded in the root document.
FORMAT = 1
#: The attribute key under which cca_scale keeps its own metadata in each document.
KEY = "cca_scale"
NETWORKS = "networks"
STAGING = "_staging"
NO_STEP = "acts"
_STEP_RE = re.compile(r"step_(0|[1-9][0-9]*)")


def array_name(step: int | None) -> str:
    return NO_STEP if step is None else f"step_{int(step)}"


def parse_array_name(name: str) -> tuple[bool, int | None]:
    """``(is_activation_array, step)`` for a node name inside a layer group."""
    if name == NO_STEP:
        return True, None
    match = _STEP_RE.fullmatch(name)
    return (True, int(match.group(1))) if match else (False, None)


def network_path(network: str) -> str:
    return f"{NETWORKS}/{network}"


def layer_path(network: str, layer: str) -> str:
    return f"{NETWORKS}/{network}/{layer}"


def array_path(network: str, layer: str, step: int | None) -> str:
    return f"{NETWORKS}/{network}/{layer}/{array_name(step)}"
