"""A small picklable handle on one stored layer, for the engine's tasks.

Every block it returns is checked on the way out, so that a damaged store never reads as
numbers. Activation arrays are written with fill value NaN and never hold NaN or Inf (ingest
refuses them), so one reduction per block (``isfinite`` of the block's dot product with itself)
finds a chunk that is gone (read back as the fill value); the element scan runs only to word
the error. Arrays of older stores were written with fill value 0, where a lost chunk reads as
zeros: for them the reader checks that the chunk keys covering each block exist (one
``exists`` per chunk). A chunk that cannot be decoded (garbage, truncated) is reported with its
key. All are :class:`~cca_scale.errors.DamagedStoreError`.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import zarr

from cca_scale.errors import CcaScaleError, DamagedStoreError, StoreError
from cca_scale.store import zarr_io
from cca_scale.store.documents import open_activation_array, shown
from cca_scale.store.location import Location

__all__ = ["LayerReader"]


class LayerReader:
    """Read one layer's activations ``(n_datapoints, n_neurons)`` from a store, lazily.

    Holds only the store's :class:`~cca_scale.store.location.Location`, the array's path inside it
    and a few numbers read when the reader was made; the Zarr array is opened read-only on first
    use. Pickles cheaply, so it can be sent to Dask workers (except for in-memory stores, which
    can be read in their own process only: another process gets a :class:`StoreError`).
    Get one from :meth:`ActivationStore.reader`.

    Attributes
    ----------
    network, layer : str
    step : int or None
        Training step, or None for a layer stored without steps.
    timestep : int or None
        Sequence timestep of a recurrent layer, or None.
    shape : tuple (n_datapoints, n_neurons)
    dtype : numpy.dtype
        float32 or float64, as stored.
    chunk_rows : int
        Datapoints per stored chunk; reads aligned to it touch each chunk once.
    write_id : str
        uuid4 hex, new every time the array is (re)written.
    array : zarr.Array, optional
        The array, already opened by whoever made the reader (in this process only: a pickled
        reader opens it again where it is read).
    """

    __slots__ = ("location", "array_path", "network", "layer", "step", "timestep", "shape",
                 "dtype", "chunk_rows", "write_id", "_array", "_nan_fill")
    _LOCAL = ("_array", "_nan_fill")  # per process, never pickled

    def __init__(self, location: Location, array_path: str, *, network: str, layer: str,
                 step: int | None, timestep: int | None, shape: tuple[int, int], dtype,
                 chunk_rows: int, write_id: str, array: zarr.Array | None = None):
        self.location = location
        self.array_path = array_path
        self.network = network
        self.layer = layer
        self.step = step
        self.timestep = timestep
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.chunk_rows = int(chunk_rows)
        self.write_id = write_id
        self._array = None
        self._nan_fill = True
        if array is not None:
            self._adopt(array)

    # -- pickling: never ship the open array ----------------------------------------------------
    def __getstate__(self):
        return {name: getattr(self, name) for name in self.__slots__ if name not in self._LOCAL}

    def __setstate__(self, state):
        for name, value in state.items():
            setattr(self, name, value)
        self._array = None
        self._nan_fill = True

    def __dask_tokenize__(self):
        return ("cca_scale.LayerReader", str(self.location), self.array_path, self.write_id,
                self.timestep)

    def __repr__(self) -> str:
        where = f"step={self.step}, " if self.step is not None else ""
        where += f"timestep={self.timestep}, " if self.timestep is not None else ""
        return (f"LayerReader(network={self.network!r}, layer={self.layer!r}, {where}"
                f"shape={self.shape}, dtype={self.dtype}, chunk_rows={self.chunk_rows})")

    @property
    def n_datapoints(self) -> int:
        return self.shape[0]

    @property
    def n_neurons(self) -> int:
        return self.shape[1]

    @property
    def ndim(self) -> int:
        return 2

    def open(self) -> zarr.Array:
        """The underlying Zarr array, opened read-only (3-D for a recurrent layer)."""
        if self._array is None:
            store = self.location.zarr_store(read_only=True)
            try:
                array = open_activation_array(store, self.location, self.array_path)
            except FileNotFoundError:
                array = None
            if array is None:
                raise StoreError(
                    f"network {self.network!r}, layer {self.layer!r}: the array "
                    f"{self.array_path!r} is no longer in the store at {self.location} "
                    "(deleted, or an in-memory fsspec store read from another process)."
                )
            self._adopt(array)
        return self._array

    def _adopt(self, array: zarr.Array) -> None:
        try:
            self._nan_fill = math.isnan(float(array.metadata.fill_value))
        except (TypeError, ValueError):
            self._nan_fill = False
        self._array = array

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Datapoints ``start:stop`` (all by default) as a 2-D NumPy array of the stored dtype."""
        n = self.shape[0]
        start, stop, _ = slice(start, stop).indices(n)
        block = self._checked(slice(start, stop), slice(None))
        return block.reshape(max(stop - start, 0), self.shape[1])

    def __getitem__(self, key) -> np.ndarray:
        """NumPy-style indexing (rows then neurons), so that ``dask.array.from_array`` works."""
        if not isinstance(key, tuple):
            key = (key,)
        rows = key[0] if key else slice(None)
        cols = key[1] if len(key) > 1 else slice(None)
        return self._checked(rows, cols)

    def iter_chunks(self, rows: int | None = None) -> Iterator[np.ndarray]:
        """Yield consecutive row blocks of ``rows`` datapoints (default: the stored chunk size)."""
        rows = self.chunk_rows if rows is None else int(rows)
        if rows < 1:
            raise StoreError(
                f"The 'rows' parameter must be a positive integer. Got {rows!r} instead."
            )
        for start in range(0, self.shape[0], rows):
            yield self.read(start, min(start + rows, self.shape[0]))

    # -- damage checks ---------------------------------------------------------------------------
    def _selection(self, rows, cols) -> tuple:
        return (rows, cols) if self.timestep is None else (rows, self.timestep, cols)

    def _checked(self, rows, cols) -> np.ndarray:
        """``array[rows, cols]`` (at the timestep), checked for lost and corrupt chunks."""
        array = self.open()
        try:
            block = np.asarray(array[self._selection(rows, cols)])
        except (CcaScaleError, OSError):  # our own errors; I/O failures are not damage
            raise
        except Exception as exc:  # the codecs raise RuntimeError, ValueError, ...
            raise self._undecodable(array, rows, exc) from exc
        if not self._nan_fill:  # an older store: a lost chunk reads as zeros, look for its key
            self._check_keys(array, self._row_chunks(array, rows))
        if block.size and not np.isfinite(_reduce(block)):
            self._check_finite(array, block, rows)
        return block

    def _row_chunks(self, array, rows) -> list[int]:
        """Indices along datapoints of the chunks that ``rows`` touches."""
        size, n = int(array.chunks[0]), self.shape[0]
        if isinstance(rows, slice):
            start, stop, step = rows.indices(n)
            if step == 1:
                return list(range(start // size, (stop - 1) // size + 1)) if stop > start else []
        return np.unique(np.atleast_1d(np.arange(n)[rows]) // size).tolist()

    def _coords(self, array, chunk: int, timestep: int | None = None) -> list[tuple]:
        """Chunk coordinates of row chunk ``chunk`` (every column chunk; one in our layout)."""
        timestep = self.timestep if timestep is None else timestep
        across = -(-int(array.shape[-1]) // int(array.chunks[-1]))
        middle = () if array.ndim == 2 else (timestep // int(array.chunks[1]),)
        return [(chunk, *middle, j) for j in range(across)]

    def _key(self, array, coords: tuple) -> str:
        return f"{array.store_path.path}/{array.metadata.encode_chunk_key(coords)}"

    def _check_keys(self, array, chunks, present: set | None = None,
                    timesteps: list[int | None] | None = None) -> None:
        """Raise if a chunk key of these row chunks is missing (all of ``timesteps``)."""
        coords = [c for t in (timesteps or [None]) for i in chunks
                  for c in self._coords(array, i, t)]
        keys = [self._key(array, c) for c in coords]
        if present is None:
            found = zarr_io.exist_many(array.store_path.store, keys)
        else:
            found = [key in present for key in keys]
        missing = [c for c, ok in zip(coords, found) if not ok]
        if missing:
            raise self._damage(array, missing[0], _LOST if self._nan_fill else _LOST_OLD,
                               more=len(missing) - 1)

    def _check_finite(self, array, block: np.ndarray, rows) -> None:
        """The element scan after a non-finite reduction: name the first chunk with NaN/Inf."""
        index = np.atleast_1d(np.arange(self.shape[0])[rows])
        bad = index[~np.isfinite(block.reshape(index.size, -1)).all(axis=1)]
        if not bad.size:
            return  # finite values whose reduction overflowed
        chunks = np.unique(bad // int(array.chunks[0]))
        coords = self._coords(array, int(chunks[0]))[0]
        there = zarr_io.exists(array.store_path.store, self._key(array, coords))
        problem = _NON_FINITE if there else _LOST
        raise self._damage(array, coords, problem, more=len(chunks) - 1)

    def _undecodable(self, array, rows, exc: Exception) -> DamagedStoreError:
        """Find the chunk that does not decode (read one chunk at a time; error path only)."""
        size, n = int(array.chunks[0]), self.shape[0]
        for chunk in self._row_chunks(array, rows):
            try:
                array[self._selection(slice(chunk * size, min(n, (chunk + 1) * size)),
                                      slice(None))]
            except Exception as inner:
                return self._damage(array, self._coords(array, chunk)[0],
                                    _UNDECODABLE.format(f"{type(inner).__name__}: {inner}"))
        return DamagedStoreError(
            f"the activation store is damaged: {self._who()}: reading datapoints {rows} failed "
            f"({type(exc).__name__}: {exc}). {_WHAT_TO_DO}"
        )

    def _who(self, timestep: int | None = None) -> str:
        who = f"network {self.network!r}, layer {self.layer!r}"
        who += f", step {self.step}" if self.step is not None else ""
        timestep = self.timestep if timestep is None else timestep
        return who + (f", timestep {timestep}" if timestep is not None else "")

    def _damage(self, array, coords: tuple, problem: str, *, more: int = 0) -> DamagedStoreError:
        size = int(array.chunks[0])
        first, last = coords[0] * size, min((coords[0] + 1) * size, self.shape[0]) - 1
        timestep = coords[1] * int(array.chunks[1]) if array.ndim == 3 else None
        others = f" ({more} more chunk{'s' if more > 1 else ''} of this read too)" if more else ""
        return DamagedStoreError(
            f"the activation store is damaged: {self._who(timestep)}: datapoints {first} to "
            f"{last} {problem}{others}. Chunk: {shown(self.location, self._key(array, coords))}. "
            f"{_WHAT_TO_DO}"
        )

    def check_complete(self, present: set | None = None) -> None:
        """Raise DamagedStoreError if a chunk of the stored array is missing, at any timestep.

        Nothing is decoded. ``present``: every key under the store's ``networks/`` (one listing
        shared by many arrays); by default this array's keys are listed.
        """
        array = self.open()
        if present is None:
            present = set(zarr_io.list_prefix(array.store_path.store,
                                              f"{array.store_path.path}/"))
        timesteps = list(range(int(array.shape[1]))) if array.ndim == 3 else None
        chunks = range(-(-self.shape[0] // int(array.chunks[0])))
        self._check_keys(array, chunks, present, timesteps)


_LOST = "are missing: their chunk file is not in the store (lost in an interrupted copy or sync?)"
# Zarr does not write a chunk equal to the fill value: with fill value 0 (older stores) a chunk of
# all zeros was never written, and cannot be told from a lost one.
_LOST_OLD = (_LOST + "; this array comes from an older cca_scale (fill value 0), where a chunk of "
             "all zeros was not written either: re-ingesting the layer settles it")
_NON_FINITE = ("read back as NaN or Inf, which an activation store never holds (a corrupt chunk "
               "file)")
_UNDECODABLE = "cannot be read: their chunk file is corrupt or truncated ({})"
_WHAT_TO_DO = ("A damaged chunk is never read as numbers. Restore the store from its source (the "
               "copy or backup it was made from), or re-ingest this layer (store.add(..., "
               "overwrite=True) or 'cca-scale ingest ... --overwrite').")


def _reduce(block: np.ndarray):
    """One number that is NaN or Inf if any element is: a dot product of the block with itself
    (BLAS; about twice as fast as ``sum``). Finite values may overflow it to Inf, so a non-finite
    result is confirmed element by element."""
    if block.flags.c_contiguous:
        flat = block.reshape(-1)
        return np.dot(flat, flat)
    return block.sum()
