"""Careful reads of an activation store's metadata documents (the ``zarr.json`` files).

A document that does not parse (bad UTF-8, invalid JSON) or has the wrong shape (a missing key, a
field of the wrong type) is a :class:`~cca_scale.errors.DamagedStoreError` worded
``store metadata is damaged: <path of the zarr.json>: <what is wrong>``, never a ``TypeError``
from deep inside Zarr and never a node silently left out.

A node folder without its document is damaged too, except in the states a write in progress
passes through (see :mod:`cca_scale.store.layout`): a folder with nothing in it yet (Zarr writes
a document to a temporary file in a new folder, then renames it), a folder being deleted by a
rolled-back write (it is re-checked a few times over a fraction of a second) and, on stores
where a move is a copy (object stores, memory), an array whose chunks are copied before its
document while the source still sits in ``_staging/``.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import numpy as np
import zarr

from cca_scale.errors import DamagedStoreError, StoreError
from cca_scale.store import layout, zarr_io
from cca_scale.store.zarr_io import DOCUMENT

__all__ = [
    "RESTORE",
    "activation_info",
    "child_documents",
    "check_folder",
    "damaged",
    "node_document",
    "open_activation_array",
    "read_document",
    "root_meta",
    "shown",
]

#: What to do about a damaged store (the end of every DamagedStoreError message).
RESTORE = ("Restore the store from its source (the copy or backup it was made from), or ingest "
           "the affected networks again.")
# Zarr's LocalStore writes a document to "zarr.<uuid4 hex>.partial", then renames it.
_TEMPORARY = re.compile(r"zarr\.[0-9a-f]{32}\.partial")
# Re-checks of a folder without its document before calling it damaged (seconds between them).
_SETTLE = (0.01, 0.05, 0.1, 0.2)


def shown(location, key: str) -> str:
    """A key inside a store as the user would find it: a path, a URL or ``<in-memory ...>/key``."""
    return f"{str(location).rstrip('/')}/{key}" if key else str(location)


def document_key(path: str) -> str:
    return f"{path}/{DOCUMENT}" if path else DOCUMENT


def damaged(where: str, what: str) -> DamagedStoreError:
    return DamagedStoreError(f"store metadata is damaged: {where}: {what}. {RESTORE}")


def _type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null", int: "an integer", float: "a number"}.get(type(value),
                                                                           type(value).__name__)


def parse_document(raw: bytes, where: str) -> dict:
    """A document's JSON object, checked to be a Zarr 3 node with an attributes object."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise damaged(where, f"it is not UTF-8 text (byte {raw[exc.start]:#04x} at offset "
                             f"{exc.start})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        what = "it is empty" if not text.strip() else (
            f"it is not valid JSON ({exc.msg}: line {exc.lineno}, column {exc.colno})")
        raise damaged(where, what) from None
    if not isinstance(doc, dict):
        raise damaged(where, f"it holds {_type(doc)}, not a JSON object")
    for key in ("zarr_format", "node_type"):
        if key not in doc:
            raise damaged(where, f"the key {key!r} is missing")
    if doc["zarr_format"] != 3:
        raise damaged(where, f"'zarr_format' is {doc['zarr_format']!r}, not 3")
    if doc["node_type"] not in ("group", "array"):
        raise damaged(where, f"'node_type' is {doc['node_type']!r}, not 'group' or 'array'")
    if not isinstance(doc.get("attributes", {}), dict):
        raise damaged(where, f"'attributes' is {_type(doc['attributes'])}, not an object")
    return doc


def read_document(zstore, location, path: str) -> dict | None:
    """The parsed document of the node at ``path`` (``''``: the root), or None if it has none."""
    raw = zarr_io.get_bytes(zstore, document_key(path))
    return None if raw is None else parse_document(raw, shown(location, document_key(path)))


def _field(meta: dict, name: str, kinds: tuple, where: str, *, owner: str,
           optional: bool = False) -> Any:
    if name not in meta:
        if optional:
            return None
        raise damaged(where, f"the key {name!r} is missing from {owner}")
    value = meta[name]
    if value is None and optional:
        return None
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        wanted = " or ".join(_type(k()) for k in kinds)
        shown_value = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise damaged(where, f"{name!r} in {owner} is {_type(value)} {shown_value}, not {wanted}")
    return value


def _own(doc: dict, where: str, kind: str) -> dict:
    """``attributes["cca_scale"]`` of a document that must be of ``kind``."""
    meta = doc.get("attributes", {}).get(layout.KEY)
    if meta is None:
        raise damaged(where, f"the attribute {layout.KEY!r} is missing (expected {kind!r} "
                             "metadata)")
    if not isinstance(meta, dict):
        raise damaged(where, f"the attribute {layout.KEY!r} is {_type(meta)}, not an object")
    if "kind" not in meta:
        raise damaged(where, f"the key 'kind' is missing from attribute {layout.KEY!r}")
    if meta["kind"] != kind:
        raise damaged(where, f"'kind' in attribute {layout.KEY!r} is {meta['kind']!r}, not "
                             f"{kind!r}")
    return meta


def root_meta(doc: dict, where: str, location) -> dict:
    """The store's own metadata from the root document; StoreError if the node is not a store."""
    if doc["node_type"] != "group":
        raise StoreError(
            f"{location} is a Zarr {doc['node_type']}, not an activation store (an activation "
            "store is a Zarr group made by ActivationStore.create or 'cca-scale ingest')."
        )
    meta = doc.get("attributes", {}).get(layout.KEY)
    if isinstance(meta, dict) and meta.get("kind") is None and "rows" in meta and "cols" in meta:
        raise StoreError(f"{location} is a cca_scale comparison output, not an activation store; "
                         "read it with cca_scale.load_distances.")
    if meta is None or (isinstance(meta, dict) and isinstance(meta.get("kind"), str)
                        and meta["kind"] != "activation_store"):
        raise StoreError(f"{location} is a Zarr group but not a cca_scale activation store.")
    meta = _own(doc, where, "activation_store")
    owner = f"attribute {layout.KEY!r}"
    fmt = _field(meta, "format", (int,), where, owner=owner)
    if fmt > layout.FORMAT:
        raise StoreError(
            f"The activation store at {location} has layout format {fmt}, newer than this "
            f"cca_scale understands ({layout.FORMAT}); upgrade cca_scale."
        )
    n = _field(meta, "n_datapoints", (int,), where, owner=owner, optional=True)
    if n is not None and n < 2:
        raise damaged(where, f"'n_datapoints' in {owner} is {n}, not an integer >= 2")
    _field(meta, "fingerprint", (str,), where, owner=owner, optional=True)
    return meta


def _network(doc: dict, where: str) -> None:
    meta = _own(doc, where, "network")
    _field(meta, "created_ns", (int,), where, owner=f"attribute {layout.KEY!r}")
    _field(doc["attributes"], "attrs", (dict,), where, owner="the attributes", optional=True)


def _layer(doc: dict, where: str) -> None:
    meta = _own(doc, where, "layer")
    _field(meta, "created_ns", (int,), where, owner=f"attribute {layout.KEY!r}")


def activation_info(doc: dict, where: str) -> dict:
    """Check an activation array's document; returns its ``cca_scale`` attributes."""
    if doc["node_type"] != "array":
        raise damaged(where, "'node_type' is 'group', but an activation array is an 'array'")
    try:
        metadata = zarr_io.array_metadata(doc)
    except Exception as exc:  # Zarr raises KeyError, TypeError, ValueError, ... on bad fields
        raise damaged(where, f"Zarr cannot read the array metadata ({type(exc).__name__}: "
                             f"{exc})") from None
    meta = _own(doc, where, "activations")
    owner = f"attribute {layout.KEY!r}"
    timesteps = _field(meta, "timesteps", (bool,), where, owner=owner)
    _field(meta, "write_id", (str,), where, owner=owner)
    _field(meta, "step", (int,), where, owner=owner, optional=True)
    ndim = 3 if timesteps else 2
    if len(metadata.shape) != ndim:
        raise damaged(where, f"the array has shape {list(metadata.shape)}, but an activation "
                             f"array {'with' if timesteps else 'without'} timesteps is {ndim}-D")
    dtype = metadata.dtype.to_native_dtype()
    if dtype not in (np.float32, np.float64):
        raise damaged(where, f"the array's data type is {dtype}, not float32 or float64")
    return meta


def open_activation_array(zstore, location, path: str, *,
                          checked: bool = False) -> zarr.Array | None:
    """Open an activation array after checking its document (unless the caller just did:
    ``checked``); None if there is no such array (or it is being moved into place). A folder
    with chunks but no document is damaged."""
    if not checked and node_document(zstore, location, path, "array") is None:
        return None
    return zarr_io.run(aopen_activation_array(zstore, location, path))


async def aopen_activation_array(zstore, location, path: str) -> zarr.Array | None:
    """Open an activation array whose document was checked; None if it was deleted since."""
    from zarr.api.asynchronous import open_array

    try:
        return zarr.Array(await open_array(store=zstore, path=path, mode="r", zarr_format=3))
    except (FileNotFoundError, zarr.errors.NodeTypeValidationError):
        return None  # deleted since
    except Exception as exc:
        raise damaged(shown(location, document_key(path)),
                      f"Zarr cannot open the array ({type(exc).__name__}: {exc})") from None


# -- listing children ---------------------------------------------------------------------------
async def _has_content(zstore, path: str) -> bool:
    """Whether anything but a document being written lies under ``path`` (a folder)."""
    async for key in zarr_io.aiter_prefix(zstore, f"{path}/"):
        if not _TEMPORARY.fullmatch(key.rsplit("/", 1)[-1]):
            return True
    return False


async def _staged(zstore, network: str, layer: str, step: int | None) -> bool:
    """Whether ``_staging/`` holds an array of this network, layer and step (a move under way)."""
    for name in await zarr_io.alist_children(zstore, layout.STAGING):
        raw = await zarr_io.aget_bytes(zstore, f"{layout.STAGING}/{name}/{DOCUMENT}")
        try:
            info = json.loads(raw)["attributes"][layout.KEY]
        except Exception:  # no document, or one being written: not the move we look for
            continue
        if isinstance(info, dict) and (info.get("network"), info.get("layer"),
                                       info.get("step")) == (network, layer, step):
            return True
    return False


def _what(kind: str, path: str) -> str:
    parts = path.split("/")  # networks/<network>[/<layer>[/<array>]]
    if kind == "network":
        return f"network {parts[1]!r}"
    if kind == "layer":
        return f"layer {parts[2]!r} of network {parts[1]!r}"
    return f"array {parts[3]!r} of network {parts[1]!r}, layer {parts[2]!r}"


async def _settle(zstore, location, path: str, kind: str) -> bytes | None:
    """A child folder without its document: the document once it appears, None when the folder
    is a write in progress or is gone, else DamagedStoreError."""
    for delay in _SETTLE:
        if not await _has_content(zstore, path):
            return None  # just created (document on its way), or deleted meanwhile
        if kind == "array":
            _, network, layer, name = path.split("/")
            if await _staged(zstore, network, layer, layout.parse_array_name(name)[1]):
                return None  # being copied into place (chunks first, document last)
        await asyncio.sleep(delay)
        raw = await zarr_io.aget_bytes(zstore, document_key(path))
        if raw is not None:
            return raw
    raise damaged(shown(location, document_key(path)),
                  f"the metadata document of {_what(kind, path)} is missing, though its folder "
                  "holds data (lost in an interrupted copy or sync?)")


_CHECKS = {"network": ("group", _network), "layer": ("group", _layer),
           "array": ("array", activation_info)}


def _checked(raw: bytes, location, path: str, kind: str) -> dict:
    where = shown(location, document_key(path))
    doc = parse_document(raw, where)
    node_type, check = _CHECKS[kind]
    if doc["node_type"] != node_type:
        raise damaged(where, f"'node_type' is {doc['node_type']!r}, but {_what(kind, path)} is a "
                             f"Zarr {node_type}")
    check(doc, where)
    return doc.get("attributes", {})


async def achild_documents(zstore, location, prefix: str, kind: str) -> dict[str, dict]:
    """:func:`child_documents`, awaitable (to read many prefixes in one round trip)."""
    names = await zarr_io.alist_children(zstore, prefix)
    if kind == "array":  # other nodes in a layer group are not activations: left alone
        names = [name for name in names if layout.parse_array_name(name)[0]]
    raws = await asyncio.gather(*(zarr_io.aget_bytes(zstore, document_key(f"{prefix}/{name}"))
                                  for name in names))
    found = {}
    for name, raw in zip(names, raws):
        path = f"{prefix}/{name}"
        if raw is None:
            raw = await _settle(zstore, location, path, kind)
            if raw is None:
                continue
        found[name] = _checked(raw, location, path, kind)
    return found


def child_documents(zstore, location, prefix: str, kind: str) -> dict[str, dict]:
    """``{name: attributes}`` of the children of ``prefix``, each checked as a ``kind``
    ('network', 'layer' or 'array'); writes in progress are left out, damage raises."""
    return zarr_io.run(achild_documents(zstore, location, prefix, kind))


def check_folder(zstore, location, path: str, kind: str) -> None:
    """Raise DamagedStoreError if the node at ``path`` has a folder with data but no document
    (returns when the node is absent, in place, or a write in progress)."""
    if zarr_io.exists(zstore, document_key(path)):
        return
    zarr_io.run(_settle(zstore, location, path, kind))


async def anode_document(zstore, location, path: str, kind: str) -> dict | None:
    """:func:`node_document`, awaitable."""
    raw = await zarr_io.aget_bytes(zstore, document_key(path))
    if raw is None:
        raw = await _settle(zstore, location, path, kind)
        if raw is None:
            return None
    return _checked(raw, location, path, kind)


def node_document(zstore, location, path: str, kind: str) -> dict | None:
    """The checked attributes of the ``kind`` node at ``path``, or None when there is no such
    node (DamagedStoreError for a folder with data but no document, or a bad document)."""
    return zarr_io.run(anode_document(zstore, location, path, kind))
