"""A small picklable handle on one stored layer, for the engine's tasks."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import zarr

from cca_scale.errors import StoreError
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
    """

    __slots__ = ("location", "array_path", "network", "layer", "step", "timestep", "shape",
                 "dtype", "chunk_rows", "write_id", "_array")

    def __init__(self, location: Location, array_path: str, *, network: str, layer: str,
                 step: int | None, timestep: int | None, shape: tuple[int, int], dtype,
                 chunk_rows: int, write_id: str):
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

    # -- pickling: never ship the open array ----------------------------------------------------
    def __getstate__(self):
        return {name: getattr(self, name) for name in self.__slots__ if name != "_array"}

    def __setstate__(self, state):
        for name, value in state.items():
            setattr(self, name, value)
        self._array = None

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
                array = zarr.open_array(store=store, path=self.array_path, mode="r", zarr_format=3)
            except (FileNotFoundError, zarr.errors.NodeTypeValidationError) as exc:
                raise StoreError(
                    f"network {self.network!r}, layer {self.layer!r}: the array "
                    f"{self.array_path!r} is no longer in the store at {self.location} "
                    "(deleted, or an in-memory fsspec store read from another process)."
                ) from exc
            self._array = array
        return self._array

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Datapoints ``start:stop`` (all by default) as a 2-D NumPy array of the stored dtype."""
        n = self.shape[0]
        start, stop, _ = slice(start, stop).indices(n)
        array = self.open()
        if self.timestep is None:
            block = array[start:stop]
        else:
            block = array[start:stop, self.timestep, :]
        return np.asarray(block).reshape(max(stop - start, 0), self.shape[1])

    def __getitem__(self, key) -> np.ndarray:
        """NumPy-style indexing (rows then neurons), so that ``dask.array.from_array`` works."""
        if not isinstance(key, tuple):
            key = (key,)
        rows = key[0] if key else slice(None)
        cols = key[1] if len(key) > 1 else slice(None)
        array = self.open()
        block = array[rows, cols] if self.timestep is None else array[rows, self.timestep, cols]
        return np.asarray(block)

    def iter_chunks(self, rows: int | None = None) -> Iterator[np.ndarray]:
        """Yield consecutive row blocks of ``rows`` datapoints (default: the stored chunk size)."""
        rows = self.chunk_rows if rows is None else int(rows)
        if rows < 1:
            raise StoreError(
                f"The 'rows' parameter must be a positive integer. Got {rows!r} instead."
            )
        for start in range(0, self.shape[0], rows):
            yield self.read(start, min(start + rows, self.shape[0]))
