"""Writes that land together or not at all: staging, collision checks and the commit.

A :class:`Transaction` checks each layer's names and options before anything is written, hands
out one :class:`~cca_scale.store.writer.LayerWriter` per layer (each stages its array under
``_staging/``) and, when every writer has finished, commits: the networks' and layers' groups
are created, the staged arrays are moved into place (an array being replaced is moved aside
first, then deleted) and the datapoint count is recorded. An error at any point puts back what
was replaced and deletes what was created, so a refused or failed write leaves the store as it
was. Names that differ only by letter case from existing ones are refused here too (they would
collide on case-insensitive file systems).
"""

from __future__ import annotations

import datetime
import threading
import time
from typing import Any, Iterable

import zarr

from cca_scale.core.validation import describe, resolve_dtype
from cca_scale.errors import InvalidNameError, StoreConflictError
from cca_scale.store import documents, layout, staging, zarr_io
from cca_scale.store.names import check_attrs, check_chunk_rows, check_name, check_step
from cca_scale.store.targets import storage_errors
from cca_scale.store.writer import LayerWriter, iter_batches

__all__ = ["Transaction", "iso_time", "merge_attrs", "now_ns"]

_clock_lock = threading.Lock()
_last_ns = 0


def now_ns() -> int:
    """Wall-clock nanoseconds, strictly increasing within this process."""
    global _last_ns
    with _clock_lock:
        _last_ns = max(time.time_ns(), _last_ns + 1)
        return _last_ns


def iso_time(ns: int | None = None) -> str:
    """``ns`` (default: now) as an ISO 8601 UTC time, to the second."""
    ts = (ns if ns is not None else time.time_ns()) / 1e9
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat(timespec="seconds")


def merge_attrs(group: zarr.Group, attrs: dict) -> None:
    """Merge ``attrs`` into a network group's attributes; a value of None removes the key."""
    merged = {**(group.attrs.get("attrs") or {}), **attrs}
    group.update_attributes({"attrs": {k: v for k, v in merged.items() if v is not None}})


def _check_collision(existing: Iterable[str], name: str, kind: str) -> None:
    folded = name.casefold()
    for other in existing:
        if other != name and other.casefold() == folded:
            raise InvalidNameError(
                f"invalid name for a {kind}: {name!r} differs from the existing {kind} {other!r} "
                "only by case, so the two would collide on case-insensitive file systems "
                f"(macOS, Windows). Use {other!r} or a different name."
            )


def _exists_error(network: str, layer: str, step: int | None) -> StoreConflictError:
    who = describe("acts", network=network, layer=layer)
    if step is not None:
        who += f", step {step}"
    return StoreConflictError(
        f"{who} already exists in the store. Pass overwrite=True (--overwrite on the command "
        "line) to replace it."
    )


class Transaction:
    """Layers staged together and committed at once: all of them land, or none does.

    Made by :meth:`ActivationStore.transaction`; used by :meth:`ActivationStore.add` (one
    layer), manifest ingestion and PyTorch capture (many layers, written batch by batch in
    parallel). As a context manager it commits on success and deletes everything staged on error.

    Parameters
    ----------
    store : ActivationStore
        The store, opened for writing (its location names it in messages; the datapoint count
        is recorded through it).
    root : zarr.Group
        The store's root group.
    meta : dict
        The store's own metadata as the root document holds it now.
    fingerprint : str or None
        The write's dataset fingerprint, already checked.
    """

    def __init__(self, store, root: zarr.Group, meta: dict, *, fingerprint: str | None):
        self.store = store
        self.root = root
        self.writers: list[tuple[LayerWriter, bool]] = []
        self.attrs: dict[str, dict] = {}
        self._order: list[str] = []
        self._keys: set[tuple[str, str, int | None]] = set()
        self.expected_n: int | None = meta.get("n_datapoints")
        store_fp = meta.get("fingerprint")
        if fingerprint is not None and store_fp is not None and fingerprint != store_fp:
            raise StoreConflictError(
                f"The store's datapoint set has fingerprint {store_fp!r}, but this write is for "
                f"{fingerprint!r}. Every layer in a store must be recorded on the same datapoints "
                "in the same order."
            )
        if fingerprint is not None and store_fp is None and self.expected_n is not None:
            raise StoreConflictError(
                f"This write is for dataset fingerprint {fingerprint!r}, but the store at "
                f"{store.location} records none (it was created without one), so the datapoints "
                "cannot be checked. Drop the fingerprint or use a store created with it."
            )
        self.fingerprint = store_fp if store_fp is not None else fingerprint
        self._existing_networks: list[str] | None = None

    def __enter__(self) -> "Transaction":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # A refusal of the file system (disk full, read-only) becomes one StorageWriteError,
        # raised once everything staged is deleted.
        with storage_errors(self.store.location, kind="activations"):
            try:
                if exc is not None:
                    raise exc
                self.finish_all()
                self._commit()
            except BaseException:
                self.abort()
                raise

    def networks(self) -> list[str]:
        return list(self._order)

    def writer(self, network: str, layer: str, *, step: int | None = None,
               attrs: dict | None = None, overwrite: bool = False,
               chunk_rows: int | None = None, dtype: Any = None, timesteps: bool = False,
               total: int | None = None, source: str | None = None) -> LayerWriter:
        """Check names and options and return a writer staging this layer (nothing written yet)."""
        network = check_name(network, kind="network")
        layer = check_name(layer, kind="layer")
        step = check_step(step)
        attrs = check_attrs(attrs)
        chunk_rows = check_chunk_rows(chunk_rows)
        dtype = None if dtype is None else resolve_dtype(dtype)
        key = (network, layer, step)
        if key in self._keys:
            who = describe("acts", network=network, layer=layer)
            raise StoreConflictError(
                f"{who}{f', step {step}' if step is not None else ''} is given twice in one write."
            )
        zstore = self.root.store
        if not overwrite and zarr_io.node_exists(zstore, layout.array_path(network, layer, step)):
            raise _exists_error(network, layer, step)
        if self._existing_networks is None:
            self._existing_networks = zarr_io.child_names(zstore, layout.NETWORKS)
        _check_collision(self._existing_networks + self._order, network, "network")
        # A folder that lost its document is damage, not a new network or layer to create.
        documents.check_folder(zstore, self.store.location, layout.network_path(network),
                               "network")
        documents.check_folder(zstore, self.store.location, layout.layer_path(network, layer),
                               "layer")
        if zarr_io.node_exists(zstore, layout.network_path(network)):
            _check_collision(zarr_io.child_names(zstore, layout.network_path(network)), layer,
                             "layer")
        _check_collision([k[1] for k in self._keys if k[0] == network], layer, "layer")
        writer = LayerWriter(self.root, network=network, layer=layer, step=step,
                             expected_n=self.expected_n if self.expected_n is not None else total,
                             timesteps=timesteps, chunk_rows=chunk_rows, dtype=dtype,
                             source=source)
        if total is not None and self.expected_n is not None and total != self.expected_n:
            raise writer.mismatch_error(total, more=False)
        self._keys.add(key)
        if network not in self._order:
            self._order.append(network)
        self.attrs.setdefault(network, {}).update(attrs)
        self.writers.append((writer, bool(overwrite)))
        return writer

    def add(self, network: str, layer: str, acts: Any, *, chunk_rows: int | None = None,
            **kwargs: Any) -> LayerWriter:
        """Stage a whole layer (an array or an iterable of batches)."""
        batches, total = iter_batches(acts, rows_hint=check_chunk_rows(chunk_rows))
        if getattr(acts, "ndim", None) != (3 if kwargs.get("timesteps") else 2):
            total = None  # the shape check comes first, in the writer
        writer = self.writer(network, layer, chunk_rows=chunk_rows, total=total, **kwargs)
        self.record(writer, writer.write_all(batches))
        return writer

    def record(self, writer: LayerWriter, n: int) -> None:
        """Check a finished writer's datapoint count against the others'."""
        if self.expected_n is None:
            self.expected_n = n
        elif n != self.expected_n:
            writer.expected_n = self.expected_n
            raise writer.mismatch_error(n, more=n > self.expected_n)

    def finish_all(self) -> None:
        for writer, _ in self.writers:
            if not writer.done:
                self.record(writer, writer.finish())

    def abort(self) -> None:
        for writer, _ in self.writers:
            if not writer.committed:
                try:
                    writer.abort()
                except Exception:
                    pass

    def _commit(self) -> None:
        """Move every staged array into place and write the networks' documents; on any error
        put back what was replaced and delete what was created."""
        root, zstore = self.root, self.root.store
        created: list[str] = []
        placed: list[tuple[str, str | None]] = []  # (final path, where the replaced array went)
        try:
            existing_networks = {network for network in self.networks()
                                 if zarr_io.node_exists(zstore, layout.network_path(network))}
            for network in self.networks():
                if network in existing_networks:
                    continue
                created_ns = now_ns()
                attrs = {k: v for k, v in self.attrs.get(network, {}).items() if v is not None}
                try:
                    root.create_group(layout.network_path(network), attributes={
                        layout.KEY: {"kind": "network", "created_ns": created_ns,
                                     "created": iso_time(created_ns)},
                        "attrs": attrs})
                except zarr.errors.ContainsGroupError:
                    raise StoreConflictError(
                        f"network {network!r} was created by another writer at the same time; "
                        "write each network from one process only."
                    ) from None
                created.append(layout.network_path(network))
            for writer, overwrite in self.writers:
                lpath = layout.layer_path(writer.network, writer.layer)
                if not zarr_io.node_exists(zstore, lpath):
                    root.create_group(lpath, attributes={
                        layout.KEY: {"kind": "layer", "created_ns": now_ns()}})
                    created.append(lpath)
                final = layout.array_path(writer.network, writer.layer, writer.step)
                replaced = None
                if zarr_io.node_exists(zstore, final):
                    if not overwrite:
                        raise _exists_error(writer.network, writer.layer, writer.step)
                    replaced = staging.replaced_path(now_ns())
                    zarr_io.move_node(zstore, final, replaced)
                placed.append((final, replaced))
                zarr_io.move_node(zstore, writer.staging_path, final)
                writer.committed = True
            for network in self.networks():
                if network in existing_networks and self.attrs.get(network):
                    merge_attrs(root[layout.network_path(network)], self.attrs[network])
            if self.expected_n is not None:
                recorded = self.store.record_datapoints(self.expected_n, self.fingerprint)
                if recorded != self.expected_n:
                    raise StoreConflictError(
                        f"Another writer recorded {recorded} datapoints for the store at "
                        f"{self.store.location} while this write had {self.expected_n} "
                        "datapoints; create the store with n_datapoints= when writing from "
                        "several processes."
                    )
        except BaseException:
            for final, replaced in reversed(placed):  # best effort: put everything back
                try:
                    if zarr_io.node_exists(zstore, final):
                        zarr_io.delete_node(zstore, final)
                    if replaced is not None:
                        zarr_io.move_node(zstore, replaced, final)
                except Exception:
                    pass
            for path in reversed(created):
                try:
                    zarr_io.delete_node(zstore, path)
                except Exception:
                    pass
            raise
        for _, replaced in placed:
            if replaced is not None:
                zarr_io.delete_node(zstore, replaced)
