"""The activation store: many networks' layer activations in one Zarr (v3) store.

The on-disk layout is documented in :mod:`cca_scale.store.layout`.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Iterable

import numpy as np
import zarr

from cca_scale.errors import (
    LayerNotFoundError,
    NetworkNotFoundError,
    StoreConflictError,
    StoreError,
)
from cca_scale.store import documents, layout, staging, zarr_io
from cca_scale.store.location import Location
from cca_scale.store.names import (
    check_attrs,
    check_fingerprint,
    check_n_datapoints,
    check_name,
    check_step,
    check_timesteps_index,
)
from cca_scale.store.query import parse_query
from cca_scale.store.reader import LayerReader
from cca_scale.store.targets import check_output_target, creating, remove_written
from cca_scale.store.transaction import Transaction, iso_time, merge_attrs
from cca_scale.store.zarr_io import node_exists

__all__ = ["ActivationStore"]

_MODES = ("r", "a")


def _some(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


class ActivationStore:
    """Layer activations of many networks, over one shared set of datapoints.

    Create one with :meth:`create`, open an existing one with :meth:`open`. Each layer is an array
    of shape ``(n_datapoints, n_neurons)`` (datapoints in the same order in every layer), stored
    chunked along datapoints; a layer may also be stored per training ``step``, and recurrent
    layers per sequence timestep. Networks carry attributes (learning rate, seed, ...) that can be
    listed as a table and queried. See :mod:`cca_scale.store.layout` for the layout on disk.

    Writes are checked first and staged: a refused or failed write leaves the store exactly as it
    was. Several processes may write *different* networks at once, provided the datapoint count
    was fixed when the store was created (``n_datapoints=``); without it, the first write records
    the count and must come from a single process.

    Examples
    --------
    >>> import numpy as np, zarr
    >>> store = ActivationStore.create(zarr.storage.MemoryStore(), n_datapoints=100)
    >>> store.add("net0", "fc1", np.ones((100, 8)) * np.arange(8), attrs={"lr": 0.01})
    >>> store.networks("lr == 0.01"), store.layers("net0")
    (['net0'], ['fc1'])
    >>> store.reader("net0", "fc1").shape
    (100, 8)
    """

    def __init__(self, location: Location, root: zarr.Group, *, mode: str):
        # Private: use ActivationStore.create or ActivationStore.open.
        self._location = location
        self._root = root
        self._mode = mode
        self._made_root = False  # create() made the local folder: discarding may remove it

    def __getstate__(self):
        # Pickles as an address (reopened on arrival), never as open Zarr objects.
        return {"location": self._location, "mode": self._mode}

    def __setstate__(self, state):
        location, mode = state["location"], state["mode"]
        root = _open_root(location, location.zarr_store(read_only=mode == "r"), mode)
        self.__init__(location, root, mode=mode)

    # -- creating and opening ----------------------------------------------------------------------
    @classmethod
    def create(cls, path, *, n_datapoints: int | None = None, fingerprint: str | None = None,
               storage_options: dict | None = None, overwrite: bool = False) -> "ActivationStore":
        """Create an empty store and open it for writing (mode ``'a'``).

        Parameters
        ----------
        path : str, os.PathLike or zarr.storage.MemoryStore
            A local directory (``'acts.zarr'``), an fsspec URL (``'s3://bucket/acts.zarr'``,
            ``'memory://acts'``) or an in-memory store (readable in this process only).
        n_datapoints : int, optional
            Number of datapoints every layer must have. Give it when several processes will
            write at once; if None, the first write records it (single writer until then).
        fingerprint : str, optional
            Your identifier of the dataset and its order (e.g. a hash of the inputs); a write
            that passes a different one is refused.
        storage_options : dict, optional
            Passed to fsspec for URLs.
        overwrite : bool, default False
            Replace an existing activation store at ``path``. Data that is not an activation
            store is never overwritten.

        Raises
        ------
        StoreConflictError
            An activation store already exists at ``path`` and ``overwrite`` is False.
        UnsafeOutputError
            ``path`` holds something that is not an activation store (see
            :func:`cca_scale.store.targets.check_output_target`); it is never touched.
        StorageWriteError
            The file system refused the write (disk full, read-only, permission).
        StoreError
            A parameter is invalid.
        """
        n_datapoints = check_n_datapoints(n_datapoints)
        fingerprint = check_fingerprint(fingerprint)
        location = Location.from_user(path, storage_options)
        state = check_output_target(location, kind="activations")
        if state == "ours" and not overwrite:
            raise StoreConflictError(
                f"An activation store already exists at {location}. Open it with "
                "ActivationStore.open(path, mode='a') to add to it, or pass overwrite=True "
                "(--overwrite) to replace it."
            )
        meta = {"kind": "activation_store", "format": layout.FORMAT,
                "n_datapoints": n_datapoints, "fingerprint": fingerprint, "created": iso_time()}
        with creating(location, kind="activations") as made_root:
            zstore = location.zarr_store(read_only=False)
            root = zarr.open_group(zstore, mode="w" if state == "ours" else "w-", zarr_format=3,
                                   attributes={layout.KEY: meta})
            root.create_group(layout.NETWORKS)
            root.create_group(layout.STAGING)
        store = cls(location, root, mode="a")
        store._made_root = made_root
        return store

    @classmethod
    def open(cls, path, *, mode: str = "r",
             storage_options: dict | None = None) -> "ActivationStore":
        """Open an existing store: ``mode='r'`` read-only (the default), ``'a'`` to add to it."""
        if mode not in _MODES:
            raise StoreError(
                f"The 'mode' parameter of ActivationStore.open must be one of {list(_MODES)}. "
                f"Got {mode!r} instead."
            )
        location = Location.from_user(path, storage_options)
        missing = StoreError(
            f"No activation store at {location}. Create one with ActivationStore.create(path) "
            "or 'cca-scale ingest'."
        )
        if location.kind == "local" and not os.path.isdir(location.path):
            raise missing
        zstore = location.zarr_store(read_only=mode == "r")
        try:
            root = _open_root(location, zstore, mode)
        except FileNotFoundError as exc:
            raise missing from exc
        return cls(location, root, mode=mode)

    # -- store-level facts -------------------------------------------------------------------------
    @property
    def path(self) -> str | None:
        """The local path (absolute) or URL; None for an in-memory store."""
        return self._location.path

    @property
    def storage_options(self) -> dict | None:
        return self._location.storage_options

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def location(self) -> Location:
        return self._location

    def _meta(self) -> dict:
        meta = self._root.attrs.get(layout.KEY) or {}
        if meta.get("n_datapoints") is None:  # may have been recorded since by another handle
            self._reopen()
            meta = self._root.attrs.get(layout.KEY) or {}
        return meta

    def _reopen(self) -> None:
        self._root = _open_root(self._location, self._root.store, self._mode)

    @property
    def n_datapoints(self) -> int | None:
        """Datapoints in every layer; None until the first write if not given at creation."""
        return self._meta().get("n_datapoints")

    @property
    def fingerprint(self) -> str | None:
        """The user's dataset fingerprint, or None."""
        return self._meta().get("fingerprint")

    def __repr__(self) -> str:
        where = repr(self.path) if self.path is not None else str(self._location)
        return f"ActivationStore({where}, mode={self._mode!r}, n_datapoints={self.n_datapoints})"

    # -- listing -----------------------------------------------------------------------------------
    def _children(self, prefix: str, kind: str) -> dict[str, dict]:
        """{name: attributes} of the child nodes of ``prefix``, each checked as a ``kind``
        ('network', 'layer', 'array'). Writes in progress are left out; damage raises."""
        return documents.child_documents(self._root.store, self._location, prefix, kind)

    def _network_docs(self) -> list[tuple[str, dict]]:
        """(network, attributes) of every network, in insertion order."""
        entries = []
        for name, doc in self._children(layout.NETWORKS, "network").items():
            info = doc[layout.KEY]
            entries.append((info["created_ns"], name, dict(doc.get("attrs") or {})))
        entries.sort(key=lambda e: (e[0], e[1]))
        return [(name, attrs) for _, name, attrs in entries]

    def _network_names(self) -> list[str]:
        return [name for name, _ in self._network_docs()]

    def _not_found(self, network: str) -> NetworkNotFoundError:
        names = self._network_names()
        held = (f"It holds {len(names)} networks: {_some(names)}." if names
                else "It holds no networks yet.")
        return NetworkNotFoundError(
            f"network {network!r} is not in the activation store at {self._location}. {held}"
        )

    def _network_group(self, network: str) -> zarr.Group:
        network = check_name(network, kind="network")
        if documents.node_document(self._root.store, self._location,
                                   layout.network_path(network), "network") is None:
            raise self._not_found(network)
        try:
            group = self._root[layout.network_path(network)]
        except KeyError:
            raise self._not_found(network) from None
        if not isinstance(group, zarr.Group):
            raise self._not_found(network)
        return group

    def networks(self, query: str | list[str] | None = None) -> list[str]:
        """Network ids, in insertion order (networks added later come after older ones).

        Parameters
        ----------
        query : None, list of str, or str
            None: every network. A list of ids: those networks (each must exist), still in
            insertion order. A string: a query over the network attributes, e.g.
            ``"lr == 0.01 and labels == 'true'"``: comparisons, ``in [...]``, ``and`` / ``or``
            / ``not``. It is parsed as data and never run as code; the grammar is in
            :mod:`cca_scale.store.query`.

        Raises
        ------
        NetworkNotFoundError
            An id in the list is not in the store.
        InvalidQueryError
            The query is outside the grammar or names an unknown attribute (the message lists
            the attribute columns). A :class:`StoreError`.
        StoreError
            ``query`` is of another type.
        """
        if query is None:
            return self._network_names()
        if isinstance(query, str):
            parsed = parse_query(query)  # refuse what is not a query before reading anything
            return parsed.select(self.attributes())
        if isinstance(query, (list, tuple, set, frozenset)) or hasattr(query, "__array__"):
            wanted = [check_name(n, kind="network") for n in list(query)]
            names = self._network_names()
            known = set(names)
            for name in wanted:
                if name not in known:
                    held = (f"It holds {len(names)} networks: {_some(names)}." if names
                            else "It holds no networks yet.")
                    raise NetworkNotFoundError(
                        f"network {name!r} is not in the activation store at {self._location}. "
                        f"{held}"
                    )
            wanted_set = set(wanted)
            return [name for name in names if name in wanted_set]
        raise StoreError(
            "The 'query' parameter must be None, a list of network ids or a query string such as "
            f"\"lr == 0.01\". Got {type(query).__name__} {query!r} instead."
        )

    def attributes(self, networks: str | list[str] | None = None):
        """Network attributes as a ``pandas.DataFrame`` indexed by network id (index "network").

        One row per network in insertion order, one column per attribute (missing values are
        NaN/None). ``networks`` selects rows like :meth:`networks` does.
        """
        import pandas as pd

        docs = self._network_docs()
        if networks is not None:
            keep = set(self.networks(networks))
            docs = [(name, attrs) for name, attrs in docs if name in keep]
        index = pd.Index([name for name, _ in docs], name="network", dtype=object)
        if not docs:
            return pd.DataFrame(index=index)
        return pd.DataFrame.from_records([attrs for _, attrs in docs], index=index)

    def _layer_docs(self, network: str) -> list[str]:
        """The network's layer names, in the order they were first written."""
        network = check_name(network, kind="network")
        if documents.node_document(self._root.store, self._location,
                                   layout.network_path(network), "network") is None:
            raise self._not_found(network)
        entries = [(doc[layout.KEY]["created_ns"], name)
                   for name, doc in self._children(layout.network_path(network), "layer").items()]
        return [name for _, name in sorted(entries)]

    def layers(self, network: str) -> list[str]:
        """The network's layer names, in the order they were first written."""
        return self._layer_docs(network)

    def _arrays(self, network: str, layer: str) -> tuple[list[int], bool]:
        """(steps, has an array without step) of a layer; raises if there is no such layer."""
        layer = check_name(layer, kind="layer")
        names = self._layer_docs(network)
        if layer not in names:
            held = f"Its layers are: {_some(names, 50)}." if names else "It has no layers yet."
            raise LayerNotFoundError(f"network {network!r} has no layer {layer!r}. {held}")
        found = [layout.parse_array_name(name)
                 for name in self._children(layout.layer_path(network, layer), "array")]
        steps = sorted(step for ok, step in found if ok and step is not None)
        return steps, any(ok and step is None for ok, step in found)

    def steps(self, network: str, layer: str) -> list[int]:
        """Training steps stored for a layer, ascending; empty if it is stored without steps."""
        return self._arrays(network, layer)[0]

    def _open_array(self, network: str, layer: str, step: int | None) -> zarr.Array:
        network = check_name(network, kind="network")
        layer = check_name(layer, kind="layer")
        step = check_step(step)
        zstore, location = self._root.store, self._location
        path = layout.array_path(network, layer, step)
        # The network's and layer's documents too (read at once): damage there is reported,
        # not read past.
        found = documents.node_documents(zstore, location, [
            (layout.network_path(network), "network"),
            (layout.layer_path(network, layer), "layer"), (path, "array")])
        if all(doc is not None for doc in found):
            array = documents.open_activation_array(zstore, location, path, checked=True)
            if array is not None:
                return array
        steps, unstepped = self._arrays(network, layer)  # raises for a missing network or layer
        who = f"network {network!r}, layer {layer!r}"
        if step is None and steps:
            raise LayerNotFoundError(
                f"{who} is stored by training step (steps {steps}); pass step= one of them."
            )
        if step is not None and steps:
            raise LayerNotFoundError(f"{who} has no step {step}; its steps are {steps}.")
        if step is not None and unstepped:
            raise LayerNotFoundError(
                f"{who} is stored without training steps; pass step=None."
            )
        raise LayerNotFoundError(f"{who} holds no activations.")

    def has_layer(self, network: str, layer: str, step: int | None = None) -> bool:
        """Whether :meth:`reader` would find this network, layer and step (None: no step)."""
        network = check_name(network, kind="network")
        layer = check_name(layer, kind="layer")
        step = check_step(step)
        return node_exists(self._root.store, layout.array_path(network, layer, step))

    def timesteps(self, network: str, layer: str, step: int | None = None) -> list[int]:
        """Sequence timesteps of a recurrent layer (``[0, ..., T-1]``); empty for a 2-D layer."""
        array = self._open_array(network, layer, step)
        info = array.attrs.get(layout.KEY) or {}
        return list(range(array.shape[1])) if info.get("timesteps") else []

    # -- reading -----------------------------------------------------------------------------------
    def reader(self, network: str, layer: str, *, step: int | None = None,
               timestep: int | None = None) -> LayerReader:
        """A picklable, lazy :class:`LayerReader` for one layer (at one step / timestep).

        Raises
        ------
        NetworkNotFoundError, LayerNotFoundError
            Unknown network, or a layer/step it does not have (the message lists what exists).
        StoreError
            ``timestep`` missing for a recurrent layer, out of range, or given for a 2-D layer.
        """
        array = self._open_array(network, layer, step)
        step = check_step(step)
        timestep = check_timesteps_index(timestep)
        info = array.attrs.get(layout.KEY) or {}
        who = f"network {network!r}, layer {layer!r}"
        if step is not None:
            who += f", step {step}"
        if info.get("timesteps"):
            n_timesteps = int(array.shape[1])
            if timestep is None:
                raise StoreError(
                    f"{who} is a recurrent layer stored with {n_timesteps} timesteps, shape "
                    f"(n_datapoints, n_timesteps, n_neurons) = {tuple(array.shape)}; pass "
                    f"timestep= (0 to {n_timesteps - 1})."
                )
            if not -n_timesteps <= timestep < n_timesteps:
                raise StoreError(
                    f"{who}: timestep {timestep} is out of range; it has {n_timesteps} timesteps "
                    f"(0 to {n_timesteps - 1})."
                )
            timestep %= n_timesteps
            shape = (int(array.shape[0]), int(array.shape[2]))
        else:
            if timestep is not None:
                raise StoreError(f"{who} has no timesteps (it is stored 2-D); pass timestep=None.")
            shape = (int(array.shape[0]), int(array.shape[1]))
        n_datapoints = self.n_datapoints
        if n_datapoints is not None and shape[0] != n_datapoints:
            path = layout.array_path(network, layer, step)
            raise documents.damaged(
                documents.shown(self._location, f"{path}/zarr.json"),
                f"the array has {shape[0]} datapoints, but the store's root document records "
                f"{n_datapoints}")
        return LayerReader(
            self._location, layout.array_path(network, layer, step), network=network,
            layer=layer, step=step, timestep=timestep, shape=shape, dtype=array.dtype,
            chunk_rows=max(1, min(int(array.chunks[0]), shape[0])),
            write_id=str(info.get("write_id", "")),
        )

    def read(self, network: str, layer: str, *, step: int | None = None,
             timestep: int | None = None) -> np.ndarray:
        """All of one layer's activations as a NumPy array ``(n_datapoints, n_neurons)``."""
        return self.reader(network, layer, step=step, timestep=timestep).read()

    def dask_array(self, network: str, layer: str, step: int | None = None, *,
                   timestep: int | None = None):
        """One layer as a lazy Dask array ``(n_datapoints, n_neurons)``, one block per chunk."""
        import dask.array as da

        reader = self.reader(network, layer, step=step, timestep=timestep)
        # Blocks come through the reader, so a lost or corrupt chunk raises DamagedStoreError;
        # the name changes whenever the array is rewritten.
        name = f"cca-scale-acts-{reader.write_id}"
        if reader.timestep is not None:
            name += f"-t{reader.timestep}"
        return da.from_array(reader, chunks=(reader.chunk_rows, reader.shape[1]), name=name,
                             meta=np.empty((0, 0), dtype=reader.dtype))

    def verify(self, networks: str | list[str] | None = None, *, read: bool = False) -> int:
        """Check that the store can be read back as written; returns the number of arrays checked.

        Every metadata document is parsed and checked, and every chunk of every activation array
        must be in place (one listing of the store's keys; nothing decoded). With ``read=True``
        every chunk is also decoded and checked to hold finite values: this reads all the data.
        ``networks`` selects networks like :meth:`networks` does.

        Raises
        ------
        DamagedStoreError
            The first damaged document or chunk found, with its path and what to do.
        """
        present = set(zarr_io.list_prefix(self._root.store, f"{layout.NETWORKS}/"))
        count = 0
        for network in self.networks(networks):
            for layer in self.layers(network):
                steps, unstepped = self._arrays(network, layer)
                for step in ([None] if unstepped else []) + steps:
                    timesteps = self.timesteps(network, layer, step) or [None]
                    reader = self.reader(network, layer, step=step, timestep=timesteps[0])
                    reader.check_complete(present)
                    for timestep in timesteps if read else []:
                        for _ in self.reader(network, layer, step=step,
                                             timestep=timestep).iter_chunks():
                            pass
                    count += 1
        return count

    def content_fingerprint(self, items: Iterable[Any]) -> str:
        """sha256 hex of what a computation read: ``n_datapoints`` plus, for each item in the
        order given, ``(network, layer, step, write_id)`` (and the timestep, when set).

        ``items`` are :class:`LayerReader` objects or ``(network, layer)`` /
        ``(network, layer, step)`` tuples. Any rewrite of an array changes its ``write_id`` and
        so the fingerprint.
        """
        parts = []
        for item in items:
            if isinstance(item, LayerReader):
                part = [item.network, item.layer, item.step, item.write_id]
                if item.timestep is not None:
                    part.append(item.timestep)
            else:
                network, layer, *rest = item
                step = check_step(rest[0] if rest else None)
                info = self._open_array(network, layer, step).attrs.get(layout.KEY) or {}
                part = [network, layer, step, str(info.get("write_id", ""))]
            parts.append(part)
        payload = json.dumps({"n_datapoints": self.n_datapoints, "items": parts},
                             separators=(",", ":"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    # -- leftovers of interrupted writes -----------------------------------------------------------
    def staged(self) -> list[dict]:
        """Arrays under ``_staging/``: writes in progress, or left by a process killed mid-write.

        Returns one dict per entry: ``name``, ``age_seconds`` (None when unknown) and ``kind``
        (``'staged'`` for a write being staged, ``'replaced'`` for an old array moved aside by an
        overwrite). They are never listed as layers and never read; they only take space.
        """
        return staging.staged(self._location)

    def discard_staged(self, *, older_than: float = 24 * 3600.0) -> list[str]:
        """Delete ``_staging/`` entries older than ``older_than`` seconds; returns their names.

        The default (a day) leaves alone any write still streaming; entries of unknown age are
        kept. Needs a store opened with ``mode='a'``.
        """
        self._check_writable()
        return staging.discard(self._location, older_than=older_than)

    # -- writing -----------------------------------------------------------------------------------
    def _check_writable(self) -> None:
        if self._mode == "r":
            raise StoreError(
                f"The activation store at {self._location} was opened read-only; open it with "
                "ActivationStore.open(path, mode='a') to write."
            )

    def add(self, network: str, layer: str, acts: Any, *, step: int | None = None,
            attrs: dict | None = None, overwrite: bool = False, chunk_rows: int | None = None,
            dtype: Any = None, timesteps: bool = False, fingerprint: str | None = None) -> None:
        """Store one layer's activations (checked first; a refused write changes nothing).

        Parameters
        ----------
        network, layer : str
            Names of the form :data:`cca_scale.store.names.NAME_FORM`.
        acts : array of shape (n_datapoints, n_neurons), or an iterable of such batches
            NumPy, CuPy, PyTorch or any array-like; a memory-mapped or other out-of-core
            array-like is read in row blocks; any other iterable (list, generator) is a sequence
            of batches of datapoints, in order, written as they come (activations larger than
            memory). With ``timesteps=True``: shape ``(n_datapoints, n_timesteps, n_neurons)``.
        step : int, optional
            Training step (checkpoint) these activations were recorded at.
        attrs : dict, optional
            Network attributes, merged into the network's metadata (None removes a key).
        overwrite : bool, default False
            Replace the layer (at this step) if it exists; otherwise that is refused.
        chunk_rows : int, optional
            Datapoints per stored chunk (default: about 8 MiB per chunk).
        dtype : {None, 'float32', 'float64'}
            Stored dtype. None: float64 input stays float64, anything else becomes float32
            (for a stream of batches, the first batch decides).
        timesteps : bool, default False
            ``acts`` is a recurrent layer's ``(n_datapoints, n_timesteps, n_neurons)``; stored
            3-D, chunked ``(chunk_rows, 1, n_neurons)``; read with ``reader(..., timestep=t)``.
        fingerprint : str, optional
            The dataset fingerprint these activations were recorded on; refused if it differs
            from the store's.

        Raises
        ------
        ActivationError
            NaN/Inf, not 2-D (3-D with timesteps), non-numeric dtype, fewer than 2 datapoints.
        StoreConflictError
            Datapoint count or fingerprint differs from the store's; layer exists (no overwrite).
        InvalidNameError
            A name outside the allowed form, or one differing from an existing one only by case.
        """
        with self.transaction(fingerprint=fingerprint) as tx:
            tx.add(network, layer, acts, step=step, attrs=attrs, overwrite=overwrite,
                   chunk_rows=chunk_rows, dtype=dtype, timesteps=timesteps)

    def set_attrs(self, network: str, **attrs: Any) -> None:
        """Merge attributes into an existing network's metadata (a value of None removes a key)."""
        self._check_writable()
        attrs = check_attrs(attrs)
        merge_attrs(self._network_group(network), attrs)

    # -- for cca_scale's own writers (ingest, capture); not part of the user API ----------------
    def transaction(self, *, fingerprint: str | None = None) -> Transaction:
        """Stage several layers and commit them together (all or nothing).

        A context manager: layers staged with its ``writer`` / ``add`` land together when the
        block ends without an error; on an error everything staged is deleted. Used by
        :meth:`add`, :mod:`cca_scale.store.ingest` and :mod:`cca_scale.store.capture`.
        """
        self._check_writable()
        fingerprint = check_fingerprint(fingerprint)
        meta = self._meta()
        return Transaction(self, self._root, meta, fingerprint=fingerprint)

    def record_datapoints(self, n_datapoints: int, fingerprint: str | None = None) -> int:
        """Fix the datapoint count (and fingerprint) of a store created without one.

        Single writer. Nothing changes if a count is recorded already; returns the count the
        store records now.
        """
        self._check_writable()
        n_datapoints = check_n_datapoints(n_datapoints)
        meta = self._meta()
        if meta.get("n_datapoints") is None:
            meta = {**meta, "n_datapoints": n_datapoints,
                    "fingerprint": meta.get("fingerprint") or check_fingerprint(fingerprint)}
            self._root.update_attributes({layout.KEY: meta})
        return meta["n_datapoints"]

    def delete_if_empty(self) -> bool:
        """Delete the store if it holds no network (one just created for a write that failed).

        Only what cca_scale wrote goes: the store's files, and its folder only if :meth:`create`
        made that folder (an empty folder given by the user stays). Returns whether it did.
        """
        if self.networks():
            return False
        remove_written(self._location, keep_root=not self._made_root)
        return True


def _open_root(location: Location, zstore, mode: str) -> zarr.Group:
    """The root group, after checking its document (FileNotFoundError when there is none)."""
    where = documents.shown(location, "zarr.json")
    doc = documents.read_document(zstore, location, "")
    if doc is None:
        if node_exists(zstore, layout.NETWORKS) or node_exists(zstore, layout.STAGING):
            raise documents.damaged(where, "the store's root document is missing, though the "
                                           "folder holds an activation store's groups "
                                           f"({layout.NETWORKS}/, {layout.STAGING}/)")
        raise FileNotFoundError(where)
    documents.root_meta(doc, where, location)
    try:
        return zarr.open_group(zstore, mode="r" if mode == "r" else "r+", zarr_format=3)
    except (FileNotFoundError, zarr.errors.NodeTypeValidationError):
        raise FileNotFoundError(where) from None  # deleted since
    except Exception as exc:
        raise documents.damaged(where, f"Zarr cannot open the group ({type(exc).__name__}: "
                                       f"{exc})") from None
