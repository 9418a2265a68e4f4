"""Streaming, validating writes of one layer into the store's staging area.

A :class:`LayerWriter` takes batches of datapoints in order, checks each one (dtype, shape,
NaN/Inf, datapoint count) with :func:`cca_scale.core.validation.check_activations`, gathers rows
until a whole chunk is ready and writes every chunk exactly once into ``_staging/<uuid4>``.
:meth:`LayerWriter.finish` checks the total; the store then moves the array into place. On any
error :meth:`LayerWriter.abort` deletes the staged array, so a failed write leaves nothing behind.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any, Iterable, Iterator

import numpy as np
import zarr
from array_api_compat import is_cupy_array
from zarr.codecs import Crc32cCodec

from cca_scale.core.validation import check_activations, describe
from cca_scale.errors import ActivationError, StoreConflictError
from cca_scale.store import layout
from cca_scale.store.zarr_io import delete_node

__all__ = ["LayerWriter", "activation_compressors", "default_chunk_rows", "iter_batches",
           "storage_dtype", "to_array", "to_numpy"]

def activation_compressors() -> list:
    """Zarr ``compressors`` of new activation arrays: no compression, a CRC-32C checksum.

    Chosen with ``benchmarks/store_codecs.py`` (its docstring has the table): the engine reads
    each network many times and disk is cheap, so read speed decides. Uncompressed float32 reads
    at ~2-4 GB/s here; the checksum costs ~0.1-1 ms per 8 MiB chunk and makes a corrupt chunk of
    the right size fail to decode (DamagedStoreError) instead of reading as numbers. Zstandard
    (Zarr's default, used before) read 3-9x slower for 1.08x (dense) to 1.8x (ReLU) less disk;
    LZ4, the cheapest per byte saved, still costs ~1 ms of decode per MB saved, against ~0.3 ms
    to read that MB from the page cache. Arrays of older stores keep their codec: Zarr reads it
    from each array's metadata.
    """
    return [Crc32cCodec()]


#: Default size of one stored chunk. Reads of a few chunks stay well inside worker memory.
TARGET_CHUNK_BYTES = 8 * 2**20


def default_chunk_rows(n_neurons: int, itemsize: int, n_datapoints: int | None = None) -> int:
    """Datapoints per chunk: about 8 MiB of one (timestep of a) layer, at least 1 row."""
    rows = max(1, TARGET_CHUNK_BYTES // max(1, n_neurons * itemsize))
    return int(min(rows, n_datapoints)) if n_datapoints else int(rows)


def storage_dtype(input_dtype, dtype=None) -> np.dtype:
    """float64 input stays float64; everything else is stored as float32 unless ``dtype`` says."""
    if dtype is not None:
        return np.dtype(dtype)
    return np.dtype("float64") if np.dtype(input_dtype) == np.float64 else np.dtype("float32")


def to_array(x: Any):
    """NumPy or CuPy view of ``x``; PyTorch tensors are detached and moved to the CPU."""
    if isinstance(x, np.ndarray) or is_cupy_array(x):
        return x
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu()
        if not x.dtype.is_floating_point or x.dtype.itemsize < 4:  # bfloat16/half/int
            x = x.double() if not x.dtype.is_floating_point else x.float()
        return x.numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError):
        return np.asarray(x, dtype=object)


def to_numpy(x):
    """``x`` as a NumPy array: a CuPy array is copied to the host, anything else viewed."""
    return x.get() if is_cupy_array(x) else np.asarray(x)


def _is_array_like(x: Any) -> bool:
    return (isinstance(x, np.ndarray) or is_cupy_array(x) or hasattr(x, "__array__")
            or hasattr(x, "__array_interface__") or hasattr(x, "__cuda_array_interface__"))


def iter_batches(acts: Any, *, rows_hint: int | None = None) -> tuple[Iterator[Any], int | None]:
    """Split ``acts`` into batches of datapoints; also return the total count when it is known.

    An in-memory NumPy/CuPy array is one batch (checked as a whole). A memory-mapped array
    (``np.load(..., mmap_mode='r')``) or another array-like with a shape (Zarr, h5py, Dask) is
    read in row blocks, so it never has to fit in memory. Any other iterable (a list, a
    generator) is a sequence of batches.
    """
    if isinstance(acts, (str, bytes, dict)):
        raise ActivationError(
            f"activations must be an array or an iterable of 2-D batches; got a "
            f"{type(acts).__name__}."
        )
    in_memory = (isinstance(acts, np.ndarray) and not isinstance(acts, np.memmap)) \
        or is_cupy_array(acts) or (hasattr(acts, "detach") and hasattr(acts, "cpu"))
    if in_memory:
        return iter([acts]), int(acts.shape[0]) if getattr(acts, "ndim", 0) >= 1 else None
    shape = getattr(acts, "shape", None)
    if (_is_array_like(acts) and shape is not None and len(shape) >= 2
            and hasattr(acts, "__getitem__")):
        n = int(shape[0])
        width = int(np.prod(shape[1:]))
        itemsize = np.dtype(getattr(acts, "dtype", np.float64)).itemsize
        rows = rows_hint or default_chunk_rows(width, itemsize)

        def blocks():
            for start in range(0, n, rows):
                block = acts[start:start + rows]
                yield block.compute() if hasattr(block, "compute") else block

        return blocks(), n
    if _is_array_like(acts):  # 0-D/1-D array-likes: one batch, refused by the checks
        return iter([acts]), None
    try:
        return iter(acts), None
    except TypeError:
        raise ActivationError(
            f"activations must be an array or an iterable of 2-D batches; got a "
            f"{type(acts).__name__}."
        ) from None


class LayerWriter:
    """Write one layer, batch by batch, into the staging area of a store's root group.

    Parameters
    ----------
    root : zarr.Group
        The store's root group, opened for writing.
    network, layer, step :
        Already-checked names (used for the array attributes and for messages).
    expected_n : int or None
        The store's datapoint count, or None when it is not fixed yet.
    timesteps : bool
        Batches are ``(n, n_timesteps, n_neurons)`` (recurrent layers), not ``(n, n_neurons)``.
    chunk_rows : int or None
        Datapoints per chunk; default from :func:`default_chunk_rows`.
    dtype : numpy dtype or None
        Stored dtype; default from :func:`storage_dtype` applied to the first batch.
    """

    def __init__(self, root: zarr.Group, *, network: str, layer: str, step: int | None,
                 expected_n: int | None, timesteps: bool = False, chunk_rows: int | None = None,
                 dtype=None, source: str | None = None):
        self.root = root
        self.network, self.layer, self.step = network, layer, step
        self.expected_n = expected_n
        self.timesteps = bool(timesteps)
        self.chunk_rows = chunk_rows
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.source = source
        self.write_id = uuid.uuid4().hex
        self.staging_path = f"{layout.STAGING}/{self.write_id}"
        self.n_received = 0
        self.n_written = 0
        self._array: zarr.Array | None = None
        self._inner_shape: tuple[int, ...] | None = None  # shape of one datapoint
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._held: list[Any] = []  # a first batch of a single row, checked with the next one
        self._last_row: np.ndarray | None = None  # one checked row, to check 1-row batches
        self.done = False  # finished or aborted
        self.committed = False  # set by the transaction once the array is in place

    @property
    def who(self) -> str:
        text = describe("acts", network=self.network, layer=self.layer)
        return text + (f", step {self.step}" if self.step is not None else "")

    # -- input checks ----------------------------------------------------------------------------
    def _check_ndim(self, batch) -> None:
        if self.timesteps:
            if getattr(batch, "ndim", None) != 3:
                raise ActivationError(
                    f"{self.who}: with timesteps=True activations must be a 3-D array of shape "
                    f"(n_datapoints, n_timesteps, n_neurons); got a {np.ndim(batch)}-D array of "
                    f"shape {tuple(np.shape(batch))}. Pass timesteps=False for a 2-D layer."
                )
        elif getattr(batch, "ndim", None) != 2:
            # check_activations words it (non-numeric dtype first, then "2-D" with flatten_conv).
            check_activations(batch, network=self.network, layer=self.layer,
                              ensure_overdetermined=False)

    def _check_rows(self, flat):
        """Validate a 2-D block of >= 1 rows; returns it in the stored dtype (NumPy)."""
        kwargs = dict(network=self.network, layer=self.layer, dtype=self.dtype,
                      ensure_overdetermined=False)
        if flat.shape[0] >= 2 or self._last_row is None:
            checked = check_activations(flat, **kwargs)
        else:  # check_activations wants 2 rows; pair the row with one already checked.
            checked = check_activations(np.concatenate([self._last_row, to_numpy(flat)]),
                                        **kwargs)[1:]
        checked = to_numpy(checked)
        self._last_row = checked[-1:]
        return checked

    def mismatch_error(self, received: int, *, more: bool) -> StoreConflictError:
        """The refusal of ``received`` datapoints (``more``: at least that many) when the store
        holds ``expected_n``."""
        got = (f"more than {self.expected_n} datapoints (at least {received} received)" if more
               else f"{received} datapoints")
        return StoreConflictError(
            f"{self.who}: {got}, but the store's datapoint set has {self.expected_n} datapoints. "
            "Every layer in a store must hold activations for the same datapoints in the same "
            "order; record this layer over the store's datapoints (or use another store)."
        )

    # -- writing ---------------------------------------------------------------------------------
    def push(self, batch: Any) -> None:
        """Check one batch of datapoints and buffer it (whole chunks are written at once)."""
        if self.done:
            raise RuntimeError("LayerWriter.push after finish/abort")
        batch = to_array(batch)
        self._check_ndim(batch)
        if batch.shape[0] == 0:
            return
        inner = tuple(int(s) for s in batch.shape[1:])
        if self._inner_shape is None:
            self._inner_shape = inner
            if self.dtype is None:
                self.dtype = storage_dtype(batch.dtype)
        elif inner != self._inner_shape:
            raise ActivationError(
                f"{self.who}: a batch has shape {tuple(batch.shape)}, but earlier batches had "
                f"datapoints of shape {self._inner_shape}. Every batch must have the same number "
                "of neurons" + (" and timesteps." if self.timesteps else ".")
            )
        if self._held:
            batch = np.concatenate([to_numpy(b) for b in self._held] + [to_numpy(batch)])
            self._held = []
        width = self._inner_shape[-1]
        flat = batch.reshape(-1, width) if self.timesteps else batch
        if flat.shape[0] < 2 and self._last_row is None:
            self._held.append(batch)  # checked together with the next batch (or at finish)
            return
        checked = self._check_rows(flat)
        if self.timesteps:
            checked = checked.reshape((-1,) + self._inner_shape)
        new_total = self.n_received + checked.shape[0]
        if self.expected_n is not None and new_total > self.expected_n:
            raise self.mismatch_error(new_total, more=True)
        self.n_received = new_total
        self._buffer.append(checked)
        self._buffered += checked.shape[0]
        self._flush(final=False)

    def _create(self) -> zarr.Array:
        width = self._inner_shape[-1]
        if self.chunk_rows is None:
            self.chunk_rows = default_chunk_rows(width, self.dtype.itemsize, self.expected_n)
        n = self.expected_n if self.expected_n is not None else 0
        shape = (n,) + self._inner_shape
        chunks = (self.chunk_rows,) + ((1, width) if self.timesteps else (width,))
        attrs = {layout.KEY: {
            "kind": "activations", "network": self.network, "layer": self.layer,
            "step": self.step, "timesteps": self.timesteps, "write_id": self.write_id,
            "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "source": self.source,
        }}
        # Fill value NaN: no activation is NaN (refused above), so a chunk lost later (an
        # interrupted copy of the store) reads as NaN and the reader reports it, never as zeros.
        return self.root.create_array(self.staging_path, shape=shape, chunks=chunks,
                                      dtype=self.dtype, fill_value=float("nan"),
                                      compressors=activation_compressors(), attributes=attrs)

    def _flush(self, *, final: bool) -> None:
        if self._buffered == 0:
            return
        if self._array is None:
            self._array = self._create()
        rows = self.chunk_rows
        n_out = self._buffered if final else (self._buffered // rows) * rows
        if n_out == 0:
            return
        block = self._buffer[0] if len(self._buffer) == 1 else np.concatenate(self._buffer)
        out, rest = block[:n_out], block[n_out:]
        start, stop = self.n_written, self.n_written + n_out
        if self.expected_n is None:
            self._array.resize((stop,) + self._inner_shape)
        self._array[start:stop] = out
        self.n_written = stop
        self._buffer = [rest] if rest.shape[0] else []
        self._buffered = rest.shape[0]

    def finish(self) -> int:
        """Write the last partial chunk and check the total; returns the datapoint count."""
        if self._held:
            held = np.concatenate([to_numpy(b) for b in self._held])
            self._held = []
            # A single datapoint in all: check_activations refuses it ("at least 2 datapoints").
            flat = held.reshape(-1, self._inner_shape[-1]) if self.timesteps else held
            check_activations(flat, network=self.network, layer=self.layer, dtype=self.dtype,
                              ensure_overdetermined=False)
        if self.n_received == 0:
            raise ActivationError(f"{self.who}: no datapoints were given (every batch was empty).")
        if self.expected_n is not None and self.n_received != self.expected_n:
            raise self.mismatch_error(self.n_received, more=False)
        self._flush(final=True)
        self.done = True
        return self.n_received

    def abort(self) -> None:
        """Delete whatever was staged. Safe to call more than once."""
        self.done = True
        self._buffer, self._held = [], []
        if self._array is not None:
            delete_node(self.root.store, self.staging_path)
            self._array = None

    def write_all(self, batches: Iterable[Any]) -> int:
        """Push every batch, then finish; abort on any error."""
        try:
            for batch in batches:
                self.push(batch)
            return self.finish()
        except BaseException:
            self.abort()
            raise
