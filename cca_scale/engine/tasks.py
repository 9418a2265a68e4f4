"""Functions that run on Dask workers. They return small NumPy results, never CuPy arrays
(CuPy between workers over TCP needs numba), and write their own output chunks.

Each network is factored once (``prepare_task``: a :class:`Basis`, O(n_neurons^2) numbers) and,
when the cluster can hold them, also projected once (``coords_task``: its orthonormal
coordinates, one read of its activations in the whole run). Tile tasks then stack the
coordinates of their networks chunk by chunk and form all their cross products as one GEMM per
chunk; without held coordinates they read and project the activations themselves. Both ways
compute the same numbers bit for bit: the same chunks, the same projection, the same GEMMs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cca_scale.core.backend import array_module, synchronize, to_host
from cca_scale.core.basis import Basis, factor_chunks
from cca_scale.core.registry import get_metric
from cca_scale.core.validation import describe
from cca_scale.engine.output import read_tile_arrays, write_tile_arrays
from cca_scale.engine.tile_pairs import tile_pairs
from cca_scale.engine.tiles import Tile

__all__ = ["Coordinates", "coords_task", "prepare_task", "tile_task", "TileSpec", "TileSummary"]


def _factor(xp, chunks, *, rtol: float | None, who: str) -> Basis:
    """:func:`factor_chunks` over host chunks moved to ``xp`` in float64; a NumPy basis."""
    return factor_chunks(lambda: (xp.asarray(c, dtype=xp.float64) for c in chunks()),
                         rtol=rtol, who=who).to(np)


def prepare_task(reader, *, dtype: str = "float64", backend: str = "numpy",
                 rtol: float | None = None) -> Basis:
    """Factor one network's layer by streaming over its datapoint chunks (memory ~ chunk + d^2).

    Returns a NumPy float64 :class:`Basis` without ``q`` (whatever the working ``dtype``: only
    the cross products run in it): O(n_neurons^2) numbers, cheap to move, and a task result, so
    the scheduler recomputes it if the worker holding it dies.
    """
    who = describe("x", network=reader.network, layer=reader.layer)
    return _factor(array_module(backend), reader.iter_chunks, rtol=rtol, who=who)


@dataclass(frozen=True, eq=False)
class Coordinates:
    """One network's layer, factored and projected once.

    ``basis``: NumPy float64, ``q=None``. ``qt``: NumPy array of shape (rank, n_datapoints) in
    the working dtype, the orthonormal coordinates ``((X - mean) @ whitener).T`` (projected in
    float64, then rounded). ``bytes_read``: activation bytes read to make it.
    """

    basis: Basis
    qt: np.ndarray
    bytes_read: int


def coords_task(reader, *, dtype: str, backend: str, rtol: float | None = None,
                block_rows: int) -> Coordinates:
    """Read one network's layer once, factor it (as :func:`prepare_task`, the same chunks) and
    project it in blocks of ``block_rows`` datapoints (as the tile tasks would)."""
    xp = array_module(backend)
    raw = reader.read()
    nbytes = int(raw.nbytes)
    raw = xp.asarray(raw, dtype=xp.float64)  # once: the chunks and blocks below are views
    n, rows = raw.shape[0], reader.chunk_rows
    who = describe("x", network=reader.network, layer=reader.layer)
    basis = _factor(xp, lambda: (raw[s:s + rows] for s in range(0, n, rows)), rtol=rtol,
                    who=who)
    mean, whitener_t = _orthonormal_map(xp, basis.to(xp))
    raw -= mean.T  # centred once, in place: the same numbers _project makes block by block
    qt = xp.empty((basis.rank, n), dtype=np.dtype(dtype))
    for start in range(0, n, block_rows):
        stop = min(n, start + block_rows)
        _apply(xp, whitener_t, raw[start:stop].T, qt[:, start:stop])
    return Coordinates(basis=basis, qt=to_host(qt), bytes_read=nbytes)


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


def tile_task(spec: TileSpec, row_inputs: list, col_inputs: list) -> TileSummary:
    """Compute and write one tile: all its pairs, for every metric of ``spec.metrics``, from one
    stacked cross product.

    ``row_inputs``/``col_inputs``: per network, its :class:`Coordinates` (held, projected once)
    or its :class:`Basis` (then its activations are read and projected here, chunk by chunk).
    Streams the datapoints in blocks of ``spec.chunk_rows``: each network's block of orthonormal
    coordinates goes into a stacked buffer, and the tile's cross products accumulate in float64
    as one GEMM ``[Q_rows]^T [Q_cols]`` per block in the working dtype (a SYRK on diagonal tiles).
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
        rows = [_Source(x, r, xp) for x, r in zip(row_inputs, spec.row_readers)]
        cols = rows if same else [_Source(x, r, xp) for x, r in zip(col_inputs, spec.col_readers)]
        cross, r_off, c_off = _cross_products(xp, spec, rows, cols, same, timings, nbytes)

        t = time.perf_counter()
        both = tile.mirrored
        used = np.zeros_like(work[0][4])
        r_host, r_dev = [s.host for s in rows], [s.dev for s in rows]
        c_host, c_dev = (r_host, r_dev) if same else ([s.host for s in cols],
                                                      [s.dev for s in cols])
        for metric, prefix, block, mirror, todo in work:
            info = get_metric(metric)
            options = info.kernel_options(variant=spec.variant, keep=spec.keep,
                                          epsilon=spec.epsilon)
            i, j, res = tile_pairs(xp, cross, info, options, row_host=r_host,
                                   col_host=c_host, row_dev=r_dev, col_dev=c_dev,
                                   row_offsets=r_off, col_offsets=c_off, todo=todo, both=both)
            by_metric[metric], ill[metric] = _put(block, mirror, tile, i, j, res)
            used |= todo
        for i, j in zip(*np.nonzero(used)):
            if not (tile.diagonal and i == j):
                pairs += 2 if both else 1
                gemm_flops += 2.0 * rows[0].n * rows[i].rank * cols[j].rank
        timings["pairs"] += time.perf_counter() - t

    t = time.perf_counter()
    for metric, prefix, block, mirror, todo in work:
        write_tile_arrays(spec.out_path, tile, block, mirror, prefix)
    timings["write"] += time.perf_counter() - t
    return TileSummary(tile.bi, tile.bj, pairs, gemm_flops, timings, wall_start, time.time(),
                       pairs_by_metric=by_metric, ill_posed=ill, bytes_read=nbytes[0])


class _Source:
    """One network of a tile: its float64 bases (host and device) and where its coordinates
    come from (held :class:`Coordinates`, or its reader and a projection)."""

    def __init__(self, given, reader, xp):
        held = isinstance(given, Coordinates)
        self.host = _aligned(given.basis if held else given)
        self.dev = self.host.to(xp)
        self.qt = given.qt if held else None
        self.reader = reader
        self.map = None if held else _orthonormal_map(xp, self.dev)
        self.rank = self.host.rank
        self.n = self.host.n_datapoints

    def fill(self, xp, start: int, stop: int, target, timings, nbytes) -> None:
        """Write the coordinates of datapoints ``[start, stop)`` into ``target`` (rank, width)."""
        t = time.perf_counter()
        if self.qt is not None:
            target[...] = xp.asarray(self.qt[:, start:stop])
            timings["io"] += time.perf_counter() - t
            return
        raw = self.reader.read(start, stop)
        nbytes[0] += int(raw.nbytes)
        timings["io"] += time.perf_counter() - t
        t = time.perf_counter()
        _project(xp, *self.map, raw, target)
        timings["project"] += time.perf_counter() - t


def _aligned(basis: Basis) -> Basis:
    """The basis with its arrays in fresh, aligned, C-contiguous memory, whether it was computed
    on this worker or received from another (where it may sit at any offset of its message, in
    the layout the serialiser chose): NumPy hands BLAS only aligned arrays and BLAS sums in an
    order that depends on the layout, so the same tile gives the same bits on every worker."""
    fresh = {k: np.array(getattr(basis, k), copy=True, order="C") for k in ("s", "vt", "mean")}
    return Basis(q=None, n_datapoints=basis.n_datapoints, rtol=basis.rtol, **fresh)


def _cross_products(xp, spec: TileSpec, rows: list, cols: list, same: bool, timings, nbytes):
    """``[Q_rows]^T [Q_cols]`` in float64, accumulated over blocks of ``spec.chunk_rows``
    datapoints, each block's product in the working dtype; and the networks' row/column
    offsets in it."""
    dtype = np.dtype(spec.dtype)
    r_off = np.concatenate([[0], np.cumsum([s.rank for s in rows])]).astype(np.int64)
    c_off = r_off if same else np.concatenate([[0], np.cumsum([s.rank for s in cols])]).astype(
        np.int64)
    n = rows[0].n
    block_rows = min(spec.chunk_rows, n)
    # Stacked coordinates, transposed: each network's block is a contiguous row range, and the
    # buffers are allocated once per tile (first-touch page faults cost more than the GEMM).
    qt_r = xp.empty((int(r_off[-1]), block_rows), dtype=dtype)
    qt_c = qt_r if same else xp.empty((int(c_off[-1]), block_rows), dtype=dtype)
    cross = xp.zeros((int(r_off[-1]), int(c_off[-1])), dtype=np.float64)
    for start in range(0, n, block_rows):
        stop = min(n, start + block_rows)
        blocks = []
        for sources, offsets, buffer in ((rows, r_off, qt_r), (cols, c_off, qt_c))[:1 if same
                                                                                  else 2]:
            out = buffer[:, :stop - start]
            for k, source in enumerate(sources):
                source.fill(xp, start, stop, out[offsets[k]:offsets[k + 1]], timings, nbytes)
            blocks.append(out)
        rows_r, rows_c = blocks[0], blocks[-1]
        t = time.perf_counter()
        cross += rows_r @ rows_c.T  # a SYRK when both sides are the same buffer
        synchronize(xp)
        timings["gemm"] += time.perf_counter() - t
    return cross, r_off, c_off


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
