"""Where a store lives (local path, fsspec URL, in-memory), in a form that pickles.

A :class:`Location` is what readers carry to Dask workers: a path or URL plus storage options.
An in-memory store cannot travel to another process; its location holds a token that is looked
up in a per-process registry, so it pickles within one process (threads, ``copy``) and raises a
clear :class:`~cca_scale.errors.StoreError` in any other.
"""

from __future__ import annotations

import os
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zarr

from cca_scale.errors import StoreError

__all__ = ["Location"]

# In-memory stores of this process, by token. Weak: a store lives as long as something uses it.
_MEMORY_STORES: "weakref.WeakValueDictionary[str, zarr.storage.MemoryStore]" = (
    weakref.WeakValueDictionary()
)


@dataclass(frozen=True)
class Location:
    """A store's address. ``kind`` is 'local', 'fsspec' or 'memory'."""

    kind: str
    path: str | None
    storage_options: dict | None = None
    memory_token: str | None = None
    # Strong reference that keeps an in-memory store alive; never pickled.
    _memory: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_user(cls, path: Any, storage_options: dict | None = None) -> "Location":
        if isinstance(path, zarr.storage.MemoryStore):
            if storage_options:
                raise StoreError("storage_options apply to URLs only, not to a MemoryStore.")
            token = getattr(path, "_cca_scale_token", None)
            if token is None or _MEMORY_STORES.get(token) is not path:
                token = uuid.uuid4().hex
                _MEMORY_STORES[token] = path
                try:
                    path._cca_scale_token = token
                except AttributeError:  # a store class with __slots__: the registry still works
                    pass
            return cls("memory", None, None, token, path)
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        if not isinstance(path, str) or not path:
            raise StoreError(
                "The 'path' parameter must be a local path, an fsspec URL such as "
                "'s3://bucket/acts.zarr', or a zarr.storage.MemoryStore. "
                f"Got {path!r} instead."
            )
        if path.startswith("file://"):
            path = path[len("file://"):]
        if "://" in path:
            return cls("fsspec", path, dict(storage_options or {}) or None)
        if storage_options:
            raise StoreError(
                f"storage_options apply to URLs such as 's3://...', not to the local path {path!r}."
            )
        return cls("local", str(Path(path).expanduser().absolute()))

    def __getstate__(self):
        return (self.kind, self.path, self.storage_options, self.memory_token)

    def __setstate__(self, state):
        kind, path, options, token = state
        for name, value in (("kind", kind), ("path", path), ("storage_options", options),
                            ("memory_token", token), ("_memory", None)):
            object.__setattr__(self, name, value)

    def __str__(self) -> str:
        return self.path if self.path is not None else f"<in-memory store {self.memory_token[:8]}>"

    def zarr_store(self, *, read_only: bool):
        """The zarr store object (opened lazily by zarr on first use)."""
        if self.kind == "local":
            return zarr.storage.LocalStore(self.path, read_only=read_only)
        if self.kind == "fsspec":
            return zarr.storage.FsspecStore.from_url(
                self.path, storage_options=self.storage_options, read_only=read_only
            )
        store = self._memory if self._memory is not None else _MEMORY_STORES.get(self.memory_token)
        if store is None:
            raise StoreError(
                "This activation store lives in memory in another process and cannot be read "
                "here (in-memory stores exist in one process only). Create the store at a local "
                "path or a URL to read it from several processes."
            )
        return store.with_read_only(read_only) if store.read_only != read_only else store

