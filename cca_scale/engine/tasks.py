"""Functions that run on Dask workers. They return small NumPy results, never CuPy arrays
(CuPy between workers over TCP needs numba), and write their own output chunks.

Each network is factored once (``prepare_task``: a :class:`Basis`, O(n_neurons^2) numbers) and,
when the cluster can hold them, also projected once (``coords_task``: the orthonormal
coordinates of a tile side's networks, stacked as the tiles' GEMMs take them, so one read of the
activations in the whole run and no copies in the tiles). Tile tasks form all their cross
products as one GEMM per block of datapoints; without held coordinates they read and project
the activations themselves into a stacked buffer. Both ways compute the same numbers bit for
bit: the same chunks, the same projection, the same GEMMs on operands of the same layout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cca_scale.core.backend import array_module, bulk_empty, synchronize, to_host
from cca_scale.core.basis import Basis, factor_chunks
from cca_scale.core.registry import get_metric
from cca_scale.core.validation import describe
from cca_scale.engine.output import read_tile_arrays, write_tile_arrays
from cca_scale.engine.tile_pairs import tile_pairs
from cca_scale.engine.tiles import Tile

__all__ = ["Coordinates", "coords_task", "prepare_task", "PreparedBasis", "reader_key",
           "reader_nbytes", "tile_task", "TileSpec", "TileSummary"]


def reader_key(reader) -> tuple:
    """What identifies a layer's activations in a run: network, layer, step, timestep and the
    write that stored them."""
    return (reader.network, reader.layer, reader.step, getattr(reader, "timestep", None),
            reader.write_id)


def reader_nbytes(reader) -> int:
    """The bytes of a layer's activations as stored (one pass over them)."""
    return int(np.prod(reader.shape)) * reader.dtype.itemsize


def _factor(xp, chunks, *, rtol: float | None, who: str, stored_dtype) -> Basis:
    """:func:`factor_chunks` over host chunks moved to ``xp`` in float64, of activations stored
    in ``stored_dtype`` (whose rounding the default tolerance discounts); a NumPy basis."""
    return factor_chunks(lambda: (xp.asarray(c, dtype=xp.float64) for c in chunks()),
                         rtol=rtol, who=who, stored_dtype=stored_dtype).to(np)


@dataclass(frozen=True, eq=False)
class PreparedBasis(Basis):
    """A :class:`Basis` as :func:`prepare_task` returns it, with the ``passes`` it made over the
    stored layer: one more than the Gram path's for the second pass (an ill-conditioned layer,
    or collinear or duplicated units), one more for the TSQR where that pass could not resolve
    the layer, so the run counts the bytes it really read."""

    passes: int = 1


def prepare_task(reader, *, dtype: str = "float64", backend: str = "numpy",
                 rtol: float | None = None) -> PreparedBasis:
    """Factor one network's layer by streaming over its datapoint chunks (memory ~ chunk + d^2).

    Returns a NumPy float64 :class:`PreparedBasis` without ``q`` (whatever the working
    ``dtype``: only the cross products run in it): O(n_neurons^2) numbers, cheap to move, and a
    task result, so the scheduler recomputes it if the worker holding it dies.
    """
    who = describe("x", network=reader.network, layer=reader.layer)
    passes = [0]

    def chunks():
        passes[0] += 1
        return reader.iter_chunks()

    basis = _factor(array_module(backend), chunks, rtol=rtol, who=who, stored_dtype=reader.dtype)
    return PreparedBasis(q=None, s=basis.s, vt=basis.vt, mean=basis.mean,
                         n_datapoints=basis.n_datapoints, rtol=basis.rtol,
                         n_rounding=basis.n_rounding, passes=passes[0])


@dataclass(frozen=True, eq=False)
class Coordinates:
    """The layers of one tile side's networks, each factored and projected once, stacked.

    ``bases``: one NumPy float64 :class:`Basis` per network, ``q=None``. ``blocks``: one NumPy
    array per block of datapoints (``block_rows`` wide, the last one narrower), C-contiguous, of
    shape (sum of the ranks, width) in the working dtype: network ``k``'s orthonormal
    coordinates ``((X_k - mean_k) @ whitener_k).T`` (projected in float64, then rounded) in rows
    ``offsets[k]:offsets[k + 1]``, the layout of a streaming tile's stacked buffer. Tiles
    multiply these blocks as they are. ``bytes_read``: activation bytes read to make them.
    """

    bases: tuple
    blocks: tuple
    offsets: np.ndarray
    bytes_read: int


def coords_task(readers, *, dtype: str, backend: str, rtol: float | None = None,
                block_rows: int) -> Coordinates:
    """Read each network's layer once, factor it (as :func:`prepare_task`, the same chunks) and
    project it in blocks of ``block_rows`` datapoints (as the tile tasks would) straight into its
    rows of the stacked blocks."""
    xp = array_module(backend)
    n = int(readers[0].shape[0])
    starts = range(0, n, block_rows)
    capacity = sum(int(r.shape[-1]) for r in readers)  # rows past the ranks are never touched
    blocks = [bulk_empty(xp, (capacity, min(n, s + block_rows) - s), dtype) for s in starts]
    bases, offsets, nbytes, raw = [], [0], 0, None
    for reader in readers:
        rows = reader.chunk_rows
        shape = (n, int(reader.shape[-1]))
        if raw is None or raw.shape != shape:  # one float64 buffer for the side's layers
            raw = bulk_empty(xp, shape, np.float64)  # (fresh memory costs more than GEMMs)
        for start in range(0, n, rows):  # filled chunk by chunk; factored and projected below
            chunk = reader.read(start, min(n, start + rows))  # through views of it
            nbytes += int(chunk.nbytes)
            raw[start:start + chunk.shape[0]] = xp.asarray(chunk)
        who = describe("x", network=reader.network, layer=reader.layer)
        basis = _factor(xp, lambda: (raw[s:s + rows] for s in range(0, n, rows)), rtol=rtol,
                        who=who, stored_dtype=reader.dtype)
        mean, whitener_t = _orthonormal_map(xp, basis.to(xp))
        raw -= mean.T  # centred once, in place: the same numbers _project makes block by block
        lo, hi = offsets[-1], offsets[-1] + basis.rank
        for start, block in zip(starts, blocks):
            _apply(xp, whitener_t, raw[start:start + block.shape[1]].T, block[lo:hi])
        bases.append(basis)
        offsets.append(hi)
    return Coordinates(bases=tuple(bases), blocks=tuple(to_host(b[:offsets[-1]]) for b in blocks),
                       offsets=np.asarray(offsets, dtype=np.int64), bytes_read=nbytes)


@dataclass(frozen=True)
class TileSpec:
    """Everything a tile task needs besides the bases (which arrive as task results)."""

    out_path: str
    tile: Tile
    row_readers: tuple
    col_readers: tuple
    variant: str
    keep: Any
    epsilon: float
    dtype: str
    backend: str
    chunk_rows: int
    metrics: tuple = ()  # ((metric name, its arrays' path prefix in the output), ...)
    metric: str | None = None  # shortcut: one metric of a format-3 output, at '<metric>/'

    def __post_init__(self):
        if not self.metrics and self.metric is not None:
            object.__setattr__(self, "metrics", ((self.metric, f"{self.metric}/"),))


@dataclass
class TileSummary:
    """What a finished tile reports back: counts and seconds, for progress and benchmarks."""

    bi: int
    bj: int
    pairs: int  # pairs whose cross product was used (at least one metric computed)
    gemm_flops: float
    seconds: dict = field(default_factory=dict)
    started: float = 0.0  # wall clock (time.time()) on the worker
    finished: float = 0.0
    pairs_by_metric: dict = field(default_factory=dict)  # metric -> pairs computed
    ill_posed: dict = field(default_factory=dict)  # metric -> ill-posed pairs computed
    bytes_read: int = 0  # activation bytes read from the store (decoded)
    #: Bytes the prepare tasks of this tile's networks read beyond one pass, by reader_key (a
    #: network in several tiles is reported by each; the run counts it once).
    prepare_extra_bytes: dict = field(default_factory=dict)


def tile_task(spec: TileSpec, row_inputs: list, col_inputs: list) -> TileSummary:
    """Compute and write one tile: all its pairs, for every metric of ``spec.metrics``, from one
    stacked cross product.

    ``row_inputs``/``col_inputs``: the side's :class:`Coordinates` (held, projected once, used
    as they are), or one :class:`Basis` per network (then the activations are read and projected
    here, block by block, into a stacked buffer of the same layout). The tile's cross products
    accumulate in float64 as one GEMM ``[Q_rows]^T [Q_cols]`` per block of ``spec.chunk_rows``
    datapoints in the working dtype (a SYRK on diagonal tiles).
    Then every metric's kernels run batched over the pairs (:mod:`cca_scale.engine.tile_pairs`).
    The bases are the full ones whatever the metrics: a metric with a per-layer truncation
    (SVCCA's top directions) reads the leading sub-block of the pair's block (the basis columns
    are in descending order of singular value), so every metric's numbers are the same whichever
    other metrics share the run.

    The whole tile is always computed the same way, whatever an earlier run left in it, so a
    rerun gives bit-identical numbers; for each metric, only the pairs still missing (NaN
    distance, or a chunk that was lost or could not be decoded) are written, and pairs already
    present (a resumed or extended run, a metric computed before) keep their values; a metric
    with nothing missing is not rewritten.
    """
    timings = {"io": 0.0, "project": 0.0, "gemm": 0.0, "pairs": 0.0, "write": 0.0}
    wall_start = time.time()
    t = time.perf_counter()
    tile = spec.tile
    work = []  # (metric, prefix, block, mirror, todo)
    for metric, prefix in spec.metrics:
        block, mirror = read_tile_arrays(spec.out_path, tile, prefix)
        todo = np.isnan(block["distance"])
        if mirror is not None:
            todo |= np.isnan(mirror["distance"]).T
        if tile.diagonal:
            todo = np.triu(todo | todo.T)  # each unordered pair once; (i, i) for its diagnostics
        if todo.any():
            work.append((metric, prefix, block, mirror, todo))
    timings["io"] += time.perf_counter() - t

    gemm_flops = 0.0
    pairs = 0
    by_metric: dict[str, int] = {}
    ill: dict[str, int] = {}
    nbytes = [0]
    if work:
        xp = array_module(spec.backend)
        same = tile.diagonal
        rows = _Side(row_inputs, spec.row_readers, xp)
        cols = rows if same else _Side(col_inputs, spec.col_readers, xp)
        cross = _cross_products(xp, spec, rows, cols, timings, nbytes)

        t = time.perf_counter()
        both = tile.mirrored
        used = np.zeros_like(work[0][4])
        for metric, prefix, block, mirror, todo in work:
            info = get_metric(metric)
            options = info.kernel_options(variant=spec.variant, keep=spec.keep,
                                          epsilon=spec.epsilon)
            i, j, res = tile_pairs(xp, cross, info, options, row_host=rows.host,
                                   col_host=cols.host, row_dev=rows.dev, col_dev=cols.dev,
                                   row_offsets=rows.offsets, col_offsets=cols.offsets,
                                   todo=todo, both=both)
            by_metric[metric], ill[metric] = _put(block, mirror, tile, i, j, res)
            used |= todo
        for i, j in zip(*np.nonzero(used)):
            if not (tile.diagonal and i == j):
                pairs += 2 if both else 1
                gemm_flops += 2.0 * rows.n * rows.rank(i) * cols.rank(j)
        timings["pairs"] += time.perf_counter() - t

    t = time.perf_counter()
    for metric, prefix, block, mirror, todo in work:
        write_tile_arrays(spec.out_path, tile, block, mirror, prefix)
    timings["write"] += time.perf_counter() - t
    extra = {reader_key(r): (b.passes - 1) * reader_nbytes(r)
             for readers, given in ((spec.row_readers, row_inputs), (spec.col_readers, col_inputs))
             if not isinstance(given, Coordinates)
             for r, b in zip(readers, given) if getattr(b, "passes", 1) > 1}
    return TileSummary(tile.bi, tile.bj, pairs, gemm_flops, timings, wall_start, time.time(),
                       pairs_by_metric=by_metric, ill_posed=ill, bytes_read=nbytes[0],
                       prepare_extra_bytes=extra)


class _Side:
    """One side of a tile: its networks' float64 bases (host and device), their offsets in the
    stacked coordinates, and where those come from, block by block of datapoints: held
    :class:`Coordinates` (used as they are) or the readers (read and projected here)."""

    def __init__(self, given, readers, xp):
        self.held = given if isinstance(given, Coordinates) else None
        bases = self.held.bases if self.held is not None else given
        self.host = [_aligned(b) for b in bases]
        self.dev = [b.to(xp) for b in self.host]
        ranks = [b.rank for b in self.host]
        self.offsets = np.concatenate([[0], np.cumsum(ranks)]).astype(np.int64)
        self.readers = readers
        self.maps = None if self.held is not None else [_orthonormal_map(xp, b) for b in self.dev]
        self.n = self.host[0].n_datapoints
        self._buffer = None

    def rank(self, k: int) -> int:
        return int(self.offsets[k + 1] - self.offsets[k])

    def block(self, xp, index: int, start: int, stop: int, dtype, timings, nbytes):
        """The stacked coordinates of datapoints ``[start, stop)`` (block ``index``): a
        C-contiguous array of shape (sum of ranks, stop - start) in ``dtype``."""
        t = time.perf_counter()
        if self.held is not None:
            out = xp.asarray(self.held.blocks[index])
            timings["io"] += time.perf_counter() - t
            return out
        width = stop - start
        if self._buffer is None or self._buffer.shape[1] != width:
            # allocated once per tile (and once more for a narrower last block): first-touch
            # page faults cost more than the GEMM
            self._buffer = bulk_empty(xp, (int(self.offsets[-1]), width), dtype)
        for k, reader in enumerate(self.readers):
            t = time.perf_counter()
            raw = reader.read(start, stop)
            nbytes[0] += int(raw.nbytes)
            timings["io"] += time.perf_counter() - t
            t = time.perf_counter()
            _project(xp, *self.maps[k], raw, self._buffer[self.offsets[k]:self.offsets[k + 1]])
            timings["project"] += time.perf_counter() - t
        return self._buffer


def _aligned(basis: Basis) -> Basis:
    """The basis with its arrays in fresh, aligned, C-contiguous memory, whether it was computed
    on this worker or received from another (where it may sit at any offset of its message, in
    the layout the serialiser chose): NumPy hands BLAS only aligned arrays and BLAS sums in an
    order that depends on the layout, so the same tile gives the same bits on every worker."""
    fresh = {k: np.array(getattr(basis, k), copy=True, order="C") for k in ("s", "vt", "mean")}
    return Basis(q=None, n_datapoints=basis.n_datapoints, rtol=basis.rtol, **fresh)


def _cross_products(xp, spec: TileSpec, rows: _Side, cols: _Side, timings, nbytes):
    """``[Q_rows]^T [Q_cols]`` in float64, accumulated over blocks of ``spec.chunk_rows``
    datapoints, each block's product in the working dtype."""
    dtype = np.dtype(spec.dtype)
    n = rows.n
    block_rows = min(spec.chunk_rows, n)
    cross = product = None
    for index, start in enumerate(range(0, n, block_rows)):
        stop = min(n, start + block_rows)
        q_r = rows.block(xp, index, start, stop, dtype, timings, nbytes)
        q_c = q_r if cols is rows else cols.block(xp, index, start, stop, dtype, timings, nbytes)
        t = time.perf_counter()
        if product is None:  # one buffer for every block's product: fresh memory costs more
            product = bulk_empty(xp, (q_r.shape[0], q_c.shape[0]), dtype)  # than the GEMMs
            cross = bulk_empty(xp, product.shape, np.float64)
        xp.matmul(q_r, q_c.T, out=product)  # a SYRK when q_c is q_r
        if index == 0:
            cross[...] = product  # the first block's product is the sum so far (0 + x is x)
        else:
            cross += product
        synchronize(xp)
        timings["gemm"] += time.perf_counter() - t
    return cross


def _put(block: dict, mirror, tile: Tile, i: np.ndarray, j: np.ndarray,
         res: dict) -> tuple[int, int]:
    """Write a metric's results for pairs ``(i, j)`` of the tile (and their mirrors); returns
    (directed pairs computed, of which ill-posed), self-pairs excluded."""
    self_pair = (i == j) if tile.diagonal else np.zeros(i.shape, dtype=bool)
    flag = res["ill_posed"].astype(bool) & ~self_pair  # d = 0 by definition, not by CCA
    entries = [(block, i, j, np.where(self_pair, 0.0, res["forward"]), res["rank_a"],
                res["rank_b"])]
    if tile.mirrored:
        entries.append((block if tile.diagonal else mirror, j, i,
                        np.where(self_pair, 0.0, res["backward"]), res["rank_b"], res["rank_a"]))
    for target, a, b, distance, rank_row, rank_col in entries:
        target["distance"][a, b] = distance
        target["ill_posed"][a, b] = flag
        target["rank_row"][a, b] = rank_row
        target["rank_col"][a, b] = rank_col
        target["rho_max"][a, b] = res["rho_max"]
        target["rho_min"][a, b] = res["rho_min"]
    per = 2 if tile.mirrored else 1
    others = ~self_pair
    return int(per * others.sum()), int(per * (flag & others).sum())


def _orthonormal_map(xp, basis: Basis):
    """``(mean, whitener^T)`` in float64, the whitener transposed and C-contiguous."""
    return basis.mean[:, None], xp.ascontiguousarray(basis.whitener.T)


def _project(xp, mean, whitener_t, raw, target) -> None:
    """``target[...] = whitener^T (raw^T - mean)``: orthonormal coordinates of a block of
    datapoints (``raw``: shape (width, n_neurons)), computed in float64 and rounded to
    ``target``'s dtype (shape (rank, width))."""
    _apply(xp, whitener_t, xp.asarray(raw, dtype=xp.float64).T - mean, target)


def _apply(xp, whitener_t, centred_t, target) -> None:
    """``target[...] = whitener^T centred_t`` (``centred_t``: float64, shape (n_neurons, width),
    the transpose of C-ordered centred rows: the same layout whether made here or by
    :func:`_project`, so the same GEMM and the same bits)."""
    if target.dtype == xp.float64 and target.flags.c_contiguous:
        xp.matmul(whitener_t, centred_t, out=target)
    else:  # a float32 target, or a block of a wider array: not a contiguous view
        target[...] = whitener_t @ centred_t
