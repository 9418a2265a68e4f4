"""Functions that run on Dask workers. They return small NumPy results, never CuPy arrays
(CuPy between workers over TCP needs numba), and write their own output chunks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cca_scale.core.backend import array_module, synchronize
from cca_scale.core.basis import Basis, BasisAccumulator
from cca_scale.core.registry import get_metric
from cca_scale.core.validation import describe
from cca_scale.engine.output import read_tile_arrays, write_tile_arrays
from cca_scale.engine.tiles import Tile

__all__ = ["prepare_task", "tile_task", "TileSpec", "TileSummary"]

def prepare_task(reader, *, dtype: str, backend: str, rtol: float | None = None) -> Basis:
    """Factor one network's layer by streaming over its datapoint chunks (memory ~ chunk + d^2).

    Returns a NumPy :class:`Basis` without ``q``: O(n_neurons^2) numbers, cheap to move, and a task
    result, so the scheduler recomputes it if the worker holding it dies.
    """
    xp = array_module(backend)
    who = describe("x", network=reader.network, layer=reader.layer)
    acc = BasisAccumulator(dtype=dtype, rtol=rtol, who=who)
    for chunk in reader.iter_chunks():
        acc.update(xp.asarray(chunk))
    return acc.finalize().to(np)


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


def tile_task(spec: TileSpec, row_bases: list[Basis], col_bases: list[Basis]) -> TileSummary:
    """Compute and write one tile: all its pairs, for every metric of ``spec.metrics``, from one
    stacked cross product.

    Streams the datapoints in chunks of ``spec.chunk_rows``: each network's chunk is mapped to its
    orthonormal coordinates ``(X - mean) @ whitener`` into a stacked buffer, and the tile's cross
    products accumulate as one GEMM ``[Q_rows]^T [Q_cols]`` per chunk (a SYRK on diagonal tiles).
    Then each pair is a small kernel per metric on its block. The bases are the full ones
    whatever the metrics: a metric with a per-layer truncation (SVCCA's top directions) reads the
    leading sub-block of the pair's block (the basis columns are in descending order of singular
    value), so every metric's numbers are the same whichever other metrics share the run.

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
    xp = array_module(spec.backend)
    dtype = np.dtype(spec.dtype)
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
        same = tile.diagonal

        def on_device(bases):
            return [Basis(q=None, s=b.s.astype(dtype), vt=b.vt.astype(dtype),
                          mean=b.mean.astype(dtype), n_datapoints=b.n_datapoints,
                          rtol=b.rtol).to(xp) for b in bases]

        r_bases = on_device(row_bases)
        c_bases = r_bases if same else on_device(col_bases)
        r_readers = list(spec.row_readers)
        c_readers = r_readers if same else list(spec.col_readers)
        r_off = np.concatenate([[0], np.cumsum([b.rank for b in r_bases])])
        c_off = r_off if same else np.concatenate([[0], np.cumsum([b.rank for b in c_bases])])
        maps = [_orthonormal_map(xp, b) for b in r_bases]
        c_maps = maps if same else [_orthonormal_map(xp, b) for b in c_bases]
        n = r_bases[0].n_datapoints
        block_rows = min(spec.chunk_rows, n)
        # Stacked coordinates, transposed: each network's block is a contiguous row range, and the
        # buffers are allocated once per tile (first-touch page faults cost more than the GEMM).
        qt_r = xp.empty((int(r_off[-1]), block_rows), dtype=dtype)
        qt_c = qt_r if same else xp.empty((int(c_off[-1]), block_rows), dtype=dtype)
        cross = xp.zeros((int(r_off[-1]), int(c_off[-1])), dtype=dtype)
        for start in range(0, n, block_rows):
            stop = min(n, start + block_rows)
            rows_r = _stack(xp, dtype, r_readers, maps, r_off, start, stop, qt_r, timings, nbytes)
            rows_c = rows_r if same else _stack(xp, dtype, c_readers, c_maps, c_off, start, stop,
                                                qt_c, timings, nbytes)
            t = time.perf_counter()
            cross += rows_r @ rows_c.T  # a SYRK when both sides are the same buffer
            synchronize(xp)
            timings["gemm"] += time.perf_counter() - t

        t = time.perf_counter()
        both = tile.mirrored
        used = np.zeros_like(work[0][4])
        for metric, prefix, block, mirror, todo in work:
            info = get_metric(metric)
            options = info.kernel_options(variant=spec.variant, keep=spec.keep,
                                          epsilon=spec.epsilon)
            prep_r = _prepared(info, options, row_bases, r_bases, dtype, xp)
            prep_c = prep_r if same else _prepared(info, options, col_bases, c_bases, dtype, xp)
            sides_r = [info.side_of(b, options) for b in prep_r]  # once per layer
            sides_c = sides_r if same else [info.side_of(b, options) for b in prep_c]
            count = flagged = 0
            for i, j in zip(*np.nonzero(todo)):
                ka, kb = prep_r[i].rank, prep_c[j].rank  # the leading block (a truncation)
                c_ij = cross[r_off[i]:r_off[i] + ka, c_off[j]:c_off[j] + kb]
                res = info.pair(c_ij, prep_r[i], prep_c[j], options,
                                sides=(sides_r[i], sides_c[j]), both=both)
                self_pair = tile.diagonal and i == j  # d = 0 by definition, not by CCA
                flag = res.ill_posed and not self_pair
                _put(block, i, j, 0.0 if self_pair else res.forward, res.rank_a, res.rank_b,
                     res.rho_max, res.rho_min, flag)
                if both:
                    _put(block if tile.diagonal else mirror, j, i,
                         0.0 if self_pair else res.backward, res.rank_b, res.rank_a,
                         res.rho_max, res.rho_min, flag)
                if not self_pair:
                    count += 2 if both else 1
                    flagged += (2 if both else 1) * bool(flag)
            by_metric[metric] = count
            ill[metric] = flagged
            used |= todo
        for i, j in zip(*np.nonzero(used)):
            if not (tile.diagonal and i == j):
                pairs += 2 if both else 1
                gemm_flops += 2.0 * n * r_bases[i].rank * c_bases[j].rank
        timings["pairs"] += time.perf_counter() - t

    t = time.perf_counter()
    for metric, prefix, block, mirror, todo in work:
        write_tile_arrays(spec.out_path, tile, block, mirror, prefix)
    timings["write"] += time.perf_counter() - t
    return TileSummary(tile.bi, tile.bj, pairs, gemm_flops, timings, wall_start, time.time(),
                       pairs_by_metric=by_metric, ill_posed=ill, bytes_read=nbytes[0])


def _prepared(info, options, bases64: list[Basis], bases: list[Basis], dtype, xp) -> list[Basis]:
    """The metric's per-layer step (``prepare_basis``, decided in the bases' own float64
    precision), as a truncation of the working-precision bases already on the device."""
    if info.prepare_basis is None:
        return bases
    out = []
    for b64, b in zip(bases64, bases):
        k = info.prepare(b64, options).rank
        out.append(b if k == b.rank else Basis(q=None, s=b.s[:k], vt=b.vt[:k], mean=b.mean,
                                               n_datapoints=b.n_datapoints, rtol=b.rtol))
    return out


def _put(block: dict, i: int, j: int, distance: float, rank_row: int, rank_col: int,
         rho_max: float, rho_min: float, ill_posed: bool) -> None:
    block["distance"][i, j] = distance
    block["ill_posed"][i, j] = ill_posed
    block["rank_row"][i, j] = rank_row
    block["rank_col"][i, j] = rank_col
    block["rho_max"][i, j] = rho_max
    block["rho_min"][i, j] = rho_min


def _orthonormal_map(xp, basis: Basis):
    """``(mean, whitener^T)`` with the whitener transposed and C-contiguous, for ``_stack``."""
    return basis.mean[:, None], xp.ascontiguousarray(basis.whitener.T)


def _stack(xp, dtype, readers, maps, offsets, start, stop, buffer, timings, nbytes):
    """Orthonormal coordinates of datapoints ``[start, stop)`` of each network, transposed and
    stacked into ``buffer`` (rows ``offsets[k]:offsets[k+1]`` for network ``k``); returns the view
    of the filled columns, shape (sum of ranks, stop - start).
    """
    width = stop - start
    out = buffer[:, :width]
    for k, (reader, (mean, whitener_t)) in enumerate(zip(readers, maps)):
        t = time.perf_counter()
        raw = reader.read(start, stop)
        nbytes[0] += int(raw.nbytes)
        chunk = xp.asarray(raw, dtype=dtype)
        timings["io"] += time.perf_counter() - t
        t = time.perf_counter()
        target = out[offsets[k]:offsets[k + 1]]
        if width == buffer.shape[1]:
            xp.matmul(whitener_t, (chunk.T - mean), out=target)
        else:  # the last, shorter block: not a contiguous view
            target[...] = whitener_t @ (chunk.T - mean)
        timings["project"] += time.perf_counter() - t
    return out
