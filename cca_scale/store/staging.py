"""The staging area, ``_staging/``: listing and cleaning up what interrupted writes left there.

Every array is written under ``_staging/<write id>`` and moved into place when complete; an
array replaced by an overwrite is first moved aside to ``_staging/<ns>-<uuid4 hex>-replaced``
(``ns``: when it was moved, so that its age is known without reading it). A process killed
mid-write leaves its entry behind: never listed as a layer, never read, it only takes space
until :func:`discard` removes it.
"""

from __future__ import annotations

import datetime
import time
import uuid

import zarr

from cca_scale.store import layout, zarr_io
from cca_scale.store.location import Location

__all__ = ["discard", "replaced_path", "staged"]

_REPLACED = "-replaced"


def replaced_path(now_ns: int) -> str:
    """Where an array replaced by an overwrite waits, named with the time ``now_ns`` it moved."""
    return f"{layout.STAGING}/{now_ns}-{uuid.uuid4().hex}{_REPLACED}"


def staged(location: Location) -> list[dict]:
    """The entries under ``_staging/``, by name: ``name``, ``age_seconds`` (None when unknown)
    and ``kind`` (``'staged'``: a write being staged; ``'replaced'``: an old array moved aside)."""
    zstore = location.zarr_store(read_only=True)
    now = time.time()
    entries = []
    for name in sorted(zarr_io.child_names(zstore, layout.STAGING)):
        path = f"{layout.STAGING}/{name}"
        if name.endswith(_REPLACED):
            stamp = name.split("-", 1)[0]
            age = now - int(stamp) / 1e9 if stamp.isdigit() else None
            entries.append({"name": name, "age_seconds": age, "kind": "replaced"})
            continue
        age = None
        if zarr_io.node_exists(zstore, path):
            try:  # a leftover's document may be damaged too: its age is then unknown
                info = zarr.open_array(store=zstore, path=path, mode="r").attrs[layout.KEY]
                written = datetime.datetime.fromisoformat(info.get("written", ""))
                age = now - written.timestamp()
            except Exception:
                age = None
        entries.append({"name": name, "age_seconds": age, "kind": "staged"})
    return entries


def discard(location: Location, *, older_than: float) -> list[str]:
    """Delete the ``_staging/`` entries older than ``older_than`` seconds (entries of unknown
    age stay); returns their names."""
    zstore = location.zarr_store(read_only=False)
    gone = []
    for entry in staged(location):
        if entry["age_seconds"] is not None and entry["age_seconds"] > older_than:
            zarr_io.delete_node(zstore, f"{layout.STAGING}/{entry['name']}")
            gone.append(entry["name"])
    return gone
