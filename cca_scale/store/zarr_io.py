"""Key-level I/O on a Zarr store: the only module of cca_scale that touches Zarr internals.

Zarr's public API opens groups and arrays; reading a single key as bytes, listing keys, moving a
folder or taking a key only if it is absent goes through the store's async methods, run on
Zarr's own event loop (``zarr.core.sync``) with its buffers (``zarr.core.buffer``). Those are
internals that change between Zarr releases, so everything that needs them calls this module.

Keys are ``/``-separated paths inside the store; a node's document is ``<path>/zarr.json``.
Plain functions run to completion; the ``a``-prefixed coroutines (:func:`aget_bytes`, ...) are
for callers that gather several reads at once and run them with :func:`run`.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, AsyncIterator, Coroutine

import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

__all__ = [
    "DOCUMENT",
    "aexists",
    "aget_bytes",
    "aiter_prefix",
    "alist_children",
    "array_metadata",
    "child_names",
    "delete",
    "delete_dir",
    "delete_node",
    "exist_many",
    "exists",
    "get_bytes",
    "list_prefix",
    "move_node",
    "node_exists",
    "run",
    "set_bytes",
    "set_bytes_if_not_exists",
]

#: A node's metadata document, relative to the node's path.
DOCUMENT = "zarr.json"


def run(coro: Coroutine) -> Any:
    """Run a coroutine of this module's ``a...`` functions on Zarr's event loop."""
    return sync(coro)


def _buffer(data: bytes):
    return default_buffer_prototype().buffer.from_bytes(data)


# -- coroutines ------------------------------------------------------------------------------
async def aget_bytes(zstore, key: str) -> bytes | None:
    """The value stored at ``key``, or None if there is none."""
    buffer = await zstore.get(key, prototype=default_buffer_prototype())
    return None if buffer is None else buffer.to_bytes()


async def aexists(zstore, key: str) -> bool:
    return bool(await zstore.exists(key))


def aiter_prefix(zstore, prefix: str) -> AsyncIterator[str]:
    """Every key starting with ``prefix``, as an async iterator (stop early by breaking)."""
    return zstore.list_prefix(prefix)


async def alist_children(zstore, prefix: str) -> list[str]:
    """Names of the entries directly under ``prefix``, without the node's own document."""
    return [name async for name in zstore.list_dir(prefix) if name != DOCUMENT]


# -- single calls ----------------------------------------------------------------------------
def get_bytes(zstore, key: str) -> bytes | None:
    """The value stored at ``key``, or None if there is none."""
    return sync(aget_bytes(zstore, key))


def set_bytes(zstore, key: str, data: bytes) -> None:
    sync(zstore.set(key, _buffer(data)))


def set_bytes_if_not_exists(zstore, key: str, data: bytes) -> None:
    """Store ``data`` at ``key`` unless a value is there already (then nothing changes)."""
    sync(zstore.set_if_not_exists(key, _buffer(data)))


def delete(zstore, key: str) -> None:
    sync(zstore.delete(key))


def delete_dir(zstore, prefix: str) -> None:
    """Delete every key under ``prefix`` (``''``: the whole store)."""
    sync(zstore.delete_dir(prefix))


def exists(zstore, key: str) -> bool:
    return sync(aexists(zstore, key))


def exist_many(zstore, keys: list[str]) -> list[bool]:
    """Whether each key exists, asked concurrently."""
    async def gather():
        return list(await asyncio.gather(*(aexists(zstore, key) for key in keys)))

    return sync(gather())


def list_prefix(zstore, prefix: str, *, limit: int | None = None) -> list[str]:
    """Keys starting with ``prefix``, in the store's order; at most ``limit`` of them."""
    async def collect():
        keys = []
        async for key in aiter_prefix(zstore, prefix):
            keys.append(key)
            if limit is not None and len(keys) >= limit:
                break
        return keys

    return sync(collect())


def child_names(zstore, prefix: str) -> list[str]:
    """Names of the entries directly under ``prefix``, without the node's own document."""
    return sync(alist_children(zstore, prefix))


def array_metadata(doc: dict):
    """Zarr's parsed metadata of an array document (raises on a field Zarr cannot read)."""
    from zarr.core.metadata.v3 import ArrayV3Metadata

    return ArrayV3Metadata.from_dict(doc)


# -- nodes -----------------------------------------------------------------------------------
def node_exists(zstore, path: str) -> bool:
    """Whether the node at ``path`` (``''``: the root) has its document."""
    return exists(zstore, f"{path}/{DOCUMENT}" if path else DOCUMENT)


def delete_node(zstore, path: str) -> None:
    """Delete a node and everything under it."""
    delete_dir(zstore, path)
    # LocalStore.delete_dir leaves nothing; others may leave empty prefixes, which are harmless.


def move_node(zstore, src: str, dst: str) -> None:
    """Rename node ``src`` to ``dst`` (which must not exist). Atomic on local disk."""
    if isinstance(zstore, zarr.storage.LocalStore):
        root = Path(zstore.root)
        target = root / dst
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(root / src, target)  # raises if target exists as a non-empty directory
        return
    sync(_copy_prefix(zstore, src, dst))
    delete_dir(zstore, src)


async def _copy_prefix(zstore, src: str, dst: str) -> None:
    prototype = default_buffer_prototype()
    keys = [key async for key in aiter_prefix(zstore, f"{src}/")]
    # zarr.json last, so that a reader never sees the array before its chunks.
    keys.sort(key=lambda k: k.endswith(DOCUMENT))
    for key in keys:
        value = await zstore.get(key, prototype=prototype)
        if value is not None:
            await zstore.set(dst + key[len(src):], value)
