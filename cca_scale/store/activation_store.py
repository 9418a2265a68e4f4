"""The activation store: many networks' layer activations in one Zarr (v3) store.

:class:`ActivationStore` is the facade. Its methods check their arguments and delegate: listing
and reading to :mod:`cca_scale.store.catalog`, writes to :mod:`cca_scale.store.transaction`,
leftovers of interrupted writes to :mod:`cca_scale.store.staging`. The on-disk layout is
documented in :mod:`cca_scale.store.layout`.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

import numpy as np
import zarr

from cca_scale.errors import StoreConflictError, StoreError
from cca_scale.store import layout, staging
from cca_scale.store.catalog import Catalog, open_root
from cca_scale.store.location import Location
from cca_scale.store.names import check_attrs, check_fingerprint, check_n_datapoints
from cca_scale.store.query import parse_query
from cca_scale.store.reader import LayerReader
from cca_scale.store.targets import check_output_target, creating, remove_written
from cca_scale.store.transaction import Transaction, iso_time, merge_attrs

__all__ = ["ActivationStore"]

_MODES = ("r", "a")


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
        self._catalog = Catalog(root.store, location)

    def __getstate__(self):
        # Pickles as an address (reopened on arrival), never as open Zarr objects.
        return {"location": self._location, "mode": self._mode}

    def __setstate__(self, state):
        location, mode = state["location"], state["mode"]
        root = open_root(location, location.zarr_store(read_only=mode == "r"), mode)
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
            root = open_root(location, zstore, mode)
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
        self._root = open_root(self._location, self._root.store, self._mode)

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
            return self._catalog.network_names()
        if isinstance(query, str):
            parsed = parse_query(query)  # refuse what is not a query before reading anything
            return parsed.select(self.attributes())
        if isinstance(query, (list, tuple, set, frozenset)) or hasattr(query, "__array__"):
            return self._catalog.select(query)
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

        records = self.attribute_records(networks)
        index = pd.Index(list(records), name="network", dtype=object)
        if not records:
            return pd.DataFrame(index=index)
        return pd.DataFrame.from_records(list(records.values()), index=index)

    def attribute_records(self, networks: str | list[str] | None = None) -> dict[str, dict]:
        """Network attributes as ``{network: {name: value}}`` in insertion order, as stored (the
        rows of :meth:`attributes`, without pandas). ``networks`` selects like :meth:`networks`."""
        docs = self._catalog.network_docs()
        if networks is not None:
            keep = set(self.networks(networks))
            docs = [(name, attrs) for name, attrs in docs if name in keep]
        return {name: dict(attrs) for name, attrs in docs}

    def layers(self, network: str) -> list[str]:
        """The network's layer names, in the order they were first written."""
        return self._catalog.layer_names(network)

    def steps(self, network: str, layer: str) -> list[int]:
        """Training steps stored for a layer, ascending; empty if it is stored without steps."""
        return self._catalog.arrays(network, layer)[0]

    def has_layer(self, network: str, layer: str, step: int | None = None) -> bool:
        """Whether :meth:`reader` would find this network, layer and step (None: no step)."""
        return self._catalog.has_array(network, layer, step)

    def timesteps(self, network: str, layer: str, step: int | None = None) -> list[int]:
        """Sequence timesteps of a recurrent layer (``[0, ..., T-1]``); empty for a 2-D layer."""
        return self._catalog.timesteps(network, layer, step)

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
        return self._catalog.reader(network, layer, step, timestep,
                                    n_datapoints=self.n_datapoints)

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
        return self._catalog.verify(self.networks(networks), read=read,
                                    n_datapoints=self.n_datapoints)

    def snapshot(self):
        """A context manager: within it, each metadata document is read once (a consistent view
        for the many questions resolving a comparison asks)."""
        return self._catalog.snapshot()

    def prefetch(self, networks: list[str], layers: list[str] | None = None) -> None:
        """Within :meth:`snapshot`: read these networks' documents (and, with ``layers``, those
        layers' array lists) concurrently, in one round trip."""
        self._catalog.prefetch(networks, layers)

    def prefetch_arrays(self, arrays: list[tuple[str, str, int | None]]) -> None:
        """Within :meth:`snapshot`: open the activation arrays ``(network, layer, step)``
        concurrently, in one round trip."""
        self._catalog.prefetch_arrays(arrays)

    def content_fingerprint(self, items: Iterable[Any]) -> str:
        """sha256 hex of what a computation read: ``n_datapoints`` plus, for each item in the
        order given, ``(network, layer, step, write_id)`` (and the timestep, when set).

        ``items`` are :class:`LayerReader` objects or ``(network, layer)`` /
        ``(network, layer, step)`` tuples. Any rewrite of an array changes its ``write_id`` and
        so the fingerprint.
        """
        return self._catalog.content_fingerprint(items, n_datapoints=self.n_datapoints)

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
        merge_attrs(self._catalog.network_group(self._root, network), attrs)

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

