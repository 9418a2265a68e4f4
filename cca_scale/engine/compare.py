"""All-pairs comparison of a store's networks: ``compare`` (blocking) and ``submit`` (a handle).

The submitting process does no heavy math: it resolves which layers to compare, creates or reopens
the output, and submits O(N) ``prepare`` tasks (one per network) and O(N^2 / B^2) tile tasks to the
Dask scheduler. Bases are task results, never scattered data, so a dead worker only costs the
recomputation of what it held.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from cca_scale.core.pairs import (
    ALIGNED_METRICS,
    DEFAULT_EPSILON,
    check_aligned,
    check_keep,
    check_metric,
)
from cca_scale.core.validation import resolve_dtype
from cca_scale.engine.cluster import open_client, worker_memory_bytes, workers_with_gpus
from cca_scale.engine.output import ComparisonOutput, ResumeState
from cca_scale.engine.selection import StepSpec, item_records, open_store, resolve_axes
from cca_scale.engine.tasks import BACKENDS, TileSpec, TileSummary, prepare_task, tile_task
from cca_scale.engine.tiles import iter_tiles, tile_size
from cca_scale.errors import CcaScaleError, StoreError
from cca_scale.matrix import DistanceMatrix

__all__ = ["Comparison", "compare", "plan", "submit"]

logger = logging.getLogger(__name__)

#: Datapoints per streamed block in a tile task (the GEMM's inner dimension per step).
DEFAULT_CHUNK_ROWS = 4096
#: Share of a worker's memory limit one tile task may plan to use.
TILE_MEMORY_FRACTION = 0.25
FALLBACK_TILE_MEMORY = 1 << 30
#: Bases before any tile: a tile can only start once all of its networks are prepared.
PREPARE_PRIORITY = 1 << 40

def _versions(backend: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("cca-scale", "numpy", "scipy", "dask", "distributed", "zarr") + (
            ("cupy",) if backend == "cupy" else ()):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


@dataclass
class Comparison:
    """A comparison in flight on a Dask cluster (from :func:`submit`).

    ``progress()`` counts tiles; ``result()`` waits and returns the DistanceMatrix; ``cancel()``
    stops it (what was written stays, and the same call later resumes).
    """

    out: ComparisonOutput
    resume: ResumeState
    tile: int
    client: Any
    owned: bool
    futures: list = field(default_factory=list)
    pairs_total: int = 0
    started: float = field(default_factory=time.perf_counter)
    summaries: list[TileSummary] = field(default_factory=list)
    _completed: set = field(default_factory=set)
    _cluster_closed: bool = False
    temporary_dir: str | None = None  # out=None: removed once the matrix is read

    @property
    def path(self) -> str:
        return self.out.path

    def progress(self) -> tuple[int, int]:
        """``(tiles done, tiles total)``, counting tiles done by earlier runs."""
        finished = self._completed | {f.key for f in self.futures if f.status == "finished"}
        return self.resume.done + len(finished), self.resume.total

    def done(self) -> bool:
        return all(f.done() for f in self.futures)

    def result(self, *, on_tile: Callable[[TileSummary], None] | None = None) -> DistanceMatrix:
        """Wait for every tile, record timings in the output, and return the matrix.

        ``on_tile`` is called with each tile's summary as it completes (progress bars).
        """
        from distributed import as_completed

        try:
            for future in as_completed(self.futures):
                summary = future.result()  # raises the task's own error
                self.summaries.append(summary)
                self._completed.add(future.key)
                future.release()  # the result is saved in the output; let the cluster forget it
                if on_tile is not None:
                    on_tile(summary)
            self._finish()
            matrix = self.out.read()
            if matrix.n_ill_posed:
                logger.warning(matrix.ill_posed_line())
            return matrix
        finally:
            self._close()
            self._remove_temporary()

    def cancel(self) -> None:
        """Stop the remaining tiles. Finished tiles stay in the output; rerunning resumes."""
        try:
            if self.futures:
                self.client.cancel(self.futures)
        finally:
            self._close()
            self._remove_temporary()

    def _finish(self) -> None:
        wall = time.perf_counter() - self.started
        totals: dict[str, float] = {}
        for s in self.summaries:
            for k, v in s.seconds.items():
                totals[k] = totals.get(k, 0.0) + v
        flops = sum(s.gemm_flops for s in self.summaries)
        pairs = sum(s.pairs for s in self.summaries)
        pair_phase = (max(s.finished for s in self.summaries)
                      - min(s.started for s in self.summaries)) if self.summaries else 0.0
        self.out.update_meta(
            state="ready", complete=True,
            timings={"wall_seconds": wall, "task_seconds": totals, "pairs_computed": pairs,
                     "tiles_computed": len(self.summaries),
                     "gemm_gflop": flops / 1e9, "pair_phase_seconds": pair_phase,
                     "pairs_per_second": pairs / wall if wall > 0 else None},
        )

    def _remove_temporary(self) -> None:
        if self.temporary_dir is not None:
            shutil.rmtree(self.temporary_dir, ignore_errors=True)
            self.temporary_dir = None

    def _close(self) -> None:
        if self.owned and not self._cluster_closed:
            self._cluster_closed = True
            self.client.close()  # also closes a cluster launch() started


def _block_rows(readers, preferred: int) -> int:
    """Datapoints per streamed block: a multiple of the stored chunk rows near ``preferred``.

    A block that is not aligned to the store's chunks decodes some chunks twice.
    """
    stored = max(int(getattr(r, "chunk_rows", 0) or 0) for r in readers)
    if not stored:
        return preferred
    return max(stored, (preferred // stored) * stored)


def _check_backend(backend: str, client) -> str:
    if backend not in ("auto",) + BACKENDS:
        raise CcaScaleError(
            f"The 'backend' parameter must be one of {['auto', *BACKENDS]}. "
            f"Got {backend!r} instead."
        )
    gpus = workers_with_gpus(client)
    if backend == "auto":
        return "cupy" if gpus else "numpy"
    if backend == "cupy" and not gpus:
        raise CcaScaleError(
            "backend='cupy' needs workers that declare a GPU (resources GPU=1), and this cluster "
            "has none. Start workers with 'dask worker ADDRESS --resources GPU=1', use "
            "'cca-scale compare --gpu' (a local dask-cuda cluster), or use backend='numpy'."
        )
    return backend


def submit(
    store,
    *,
    layer: str,
    out=None,
    metric: str = "pwcca",
    variant: str = "paper",
    networks=None,
    against=None,
    step: StepSpec = None,
    against_step: StepSpec = "same",
    against_layer: str | None = None,
    timestep=None,
    client=None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    backend: str = "auto",
    dtype: Any = None,
    tile: int | None = None,
    keep: int | float = 0.99,
    epsilon: float = DEFAULT_EPSILON,
    rtol: float | None = None,
    overwrite: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Comparison:
    """Start an all-pairs comparison and return at once; see :func:`compare` for the parameters.

    Several comparisons (layers x metrics) can be in flight together on one ``client``; they share
    the per-network preparation tasks when their inputs and precision agree.
    """
    check_metric(metric, variant)
    if metric == "svcca":
        check_keep(keep)
    dtype = resolve_dtype(dtype).name
    if tile is not None and (int(tile) != tile or tile < 1):
        raise CcaScaleError(f"tile must be a positive int. Got {tile!r} instead.")
    store = open_store(store)
    rows, cols, square = resolve_axes(store, layer=layer, networks=networks, against=against,
                                      step=step, against_step=against_step,
                                      against_layer=against_layer, timestep=timestep)
    row_readers = [store.reader(i.network, i.layer, step=i.step, timestep=i.timestep) for i in rows]
    col_readers = row_readers if square else [
        store.reader(i.network, i.layer, step=i.step, timestep=i.timestep) for i in cols]
    n_datapoints = {int(r.shape[0]) for r in row_readers + col_readers}
    if len(n_datapoints) != 1:
        raise CcaScaleError(f"The selected layers have different numbers of datapoints: "
                            f"{sorted(n_datapoints)}.")
    if metric in ALIGNED_METRICS:
        widths = sorted({int(r.shape[1]) for r in row_readers + col_readers})
        check_aligned(metric, widths[0], widths[-1])
    params = {
        "metric": metric, "variant": variant if metric == "pwcca" else None,
        "keep": keep if metric == "svcca" else None,
        "epsilon": epsilon if (metric, variant) == ("pwcca", "svcca") else None,
        "layer": layer, "against_layer": against_layer, "networks": networks,
        "against": against, "step": step, "against_step": against_step, "timestep": timestep,
        "dtype": dtype, "rtol": rtol, "n_datapoints": n_datapoints.pop(),
    }
    row_records, _ = item_records(store, rows, row_readers)
    col_records = row_records if square else item_records(store, cols, col_readers)[0]

    temporary_dir = None
    if out is None:
        if client is not None or scheduler:
            raise CcaScaleError(
                "out=None keeps the results in a temporary folder on this machine, which only a "
                "cluster started here can reach. With client= or scheduler=, pass out=PATH, a "
                "location every worker can reach (a shared file system or an fsspec URL)."
            )
        temporary_dir = tempfile.mkdtemp(prefix="cca-scale-")
        out = f"{temporary_dir}/distances.zarr"
    client, owned = open_client(client=client, scheduler=scheduler, n_workers=n_workers,
                                gpu=backend == "cupy")
    try:
        backend = _check_backend(backend, client)
        max_neurons = max(int(r.shape[1]) for r in row_readers + col_readers)
        chunk_rows = _block_rows(row_readers + col_readers, chunk_rows)
        memory = worker_memory_bytes(client)
        budget = int(memory * TILE_MEMORY_FRACTION) if memory else FALLBACK_TILE_MEMORY
        default_tile = tile_size(max(len(rows), len(cols)), max_rank=max_neurons,
                                 max_neurons=max_neurons, chunk_rows=chunk_rows,
                                 memory_bytes=budget, itemsize=np.dtype(dtype).itemsize)
        extra = {"store": store.path, "input_fingerprint": store.content_fingerprint(
                     row_readers + ([] if square else col_readers)),
                 "versions": _versions(backend), "backend": backend,
                 "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        out, resume, tile_in_force = ComparisonOutput.prepare(
            out, params=params, rows=row_records, cols=col_records, square=square, tile=tile,
            default_tile=default_tile, overwrite=overwrite, extra_meta=extra)
        handle = Comparison(out=out, resume=resume, tile=tile_in_force, client=client, owned=owned,
                            temporary_dir=temporary_dir)
        _submit_tiles(handle, rows, cols, row_readers, col_readers, square=square, metric=metric,
                      variant=variant, keep=keep, epsilon=epsilon, dtype=dtype, backend=backend,
                      rtol=rtol, chunk_rows=chunk_rows)
        return handle
    except BaseException:
        if owned:
            client.close()  # also closes a cluster launch() started
        if temporary_dir is not None:
            shutil.rmtree(temporary_dir, ignore_errors=True)
        raise


def _submit_tiles(handle: Comparison, rows, cols, row_readers, col_readers, *, square, metric,
                  variant, keep, epsilon, dtype, backend, rtol, chunk_rows) -> None:
    from dask.base import tokenize

    client = handle.client
    resources = {"GPU": 1} if backend == "cupy" else None
    mask = handle.out.done_mask()
    tiles = [t for t in iter_tiles(len(rows), len(cols), handle.tile, square=square)
             if not mask[t.bi, t.bj]]
    if not tiles:
        return
    needed_rows = sorted({i for t in tiles for i in range(t.r0, t.r1)})
    needed_cols = sorted({j for t in tiles for j in range(t.c0, t.c1)})

    prepared: dict[str, Any] = {}

    def basis_future(reader):
        token = tokenize(handle.out.meta.get("store"), reader.network, reader.layer, reader.step,
                         getattr(reader, "timestep", None), reader.write_id, dtype, backend, rtol)
        if token not in prepared:
            prepared[token] = client.submit(
                prepare_task, reader, dtype=dtype, backend=backend, rtol=rtol,
                key=f"cca-prepare-{token}", resources=resources, retries=3,
                priority=PREPARE_PRIORITY)
        return prepared[token]

    row_basis = {i: basis_future(row_readers[i]) for i in needed_rows}
    col_basis = row_basis if square else {j: basis_future(col_readers[j]) for j in needed_cols}
    run = tokenize(handle.out.path, time.time())
    for t in tiles:
        spec = TileSpec(
            out_path=handle.out.path, tile=t,
            row_readers=tuple(row_readers[t.r0:t.r1]), col_readers=tuple(col_readers[t.c0:t.c1]),
            metric=metric, variant=variant, keep=keep, epsilon=epsilon, dtype=dtype,
            backend=backend, chunk_rows=chunk_rows)
        handle.futures.append(client.submit(
            tile_task, spec, [row_basis[i] for i in range(t.r0, t.r1)],
            [col_basis[j] for j in range(t.c0, t.c1)],
            key=f"cca-tile-{run}-{t.bi}-{t.bj}", resources=resources, retries=3, pure=False,
            priority=t.n_pairs))  # largest tiles first; the half-size diagonal ones fill in
        handle.pairs_total += t.n_pairs
    # The handle holds the tile futures; the bases stay alive only as their dependencies.
    del row_basis, col_basis
    prepared.clear()


def compare(store, *, layer: str, out=None, metric: str = "pwcca", variant: str = "paper",
            networks=None, against=None, step: StepSpec = None, against_step: StepSpec = "same",
            against_layer: str | None = None, timestep=None, client=None,
            scheduler: str | None = None, n_workers: int | None = None, backend: str = "auto",
            dtype: Any = None, tile: int | None = None, keep: int | float = 0.99,
            epsilon: float = DEFAULT_EPSILON, rtol: float | None = None,
            overwrite: bool = False,
            on_tile: Callable[[TileSummary], None] | None = None) -> DistanceMatrix:
    """All-pairs distances between the networks of an activation store, on Dask.

    Parameters
    ----------
    store : ActivationStore or str
        The activations (opened read-only when a path is given).
    layer : str
        The layer compared (rows; also columns unless ``against_layer``).
    out : str, optional
        Output Zarr group. Rerunning with the same parameters resumes it (or extends it with
        networks added to the store since); different parameters are refused unless
        ``overwrite``. None (only with the embedded local cluster): a temporary group, deleted
        once the matrix is returned, so nothing can be resumed.
    metric : {'pwcca', 'mean_cca', 'svcca', 'cka', 'cosine', 'euclidean'}
    variant : {'paper', 'svcca'}
        PWCCA's definition (see :func:`cca_scale.pwcca_distance`).
    networks : None, list of str, or str
        Row networks: all, ids, or an attribute query such as ``"lr == 0.01"``.
    against : None, list of str, or str
        Column networks for a rectangular comparison (default: the rows, N x N).
    step, against_step : int, 'last', 'all' or None
        Training step of the rows (and columns; ``'same'`` = as the rows). ``'all'`` makes each
        stored step its own row, labelled ``network@step``.
    against_layer : str, optional
        Compare ``layer`` (rows) against another layer (columns).
    timestep : int, 'all' or None
        Sequence timestep of recurrent layers; ``'all'`` gives a T x T comparison.
    client, scheduler, n_workers
        A ``distributed.Client``, or a scheduler address, or (neither) an embedded LocalCluster
        with ``n_workers`` single-threaded worker processes (default: one per core).
    backend : {'auto', 'numpy', 'cupy'}
        ``'cupy'`` runs tasks on workers declaring ``GPU=1``; ``'auto'`` picks it when there are.
    dtype : {None, 'float32', 'float64'}
        Working precision (float64 default; float32 is faster on GPUs, to about 1e-4).
    tile : int, optional
        Networks per tile side; the default fits a quarter of a worker's memory and keeps at least
        two blocks per side. Fixed for the life of an output.
    keep, epsilon, rtol
        SVCCA's kept directions, the svcca variant's epsilon, the rank tolerance.
    overwrite : bool
        Discard an existing output with other parameters.
    on_tile : callable, optional
        Called with each finished tile's :class:`TileSummary` (progress reporting).

    Returns
    -------
    DistanceMatrix
        ``values[i, j] = d(row i, column j)``, float64, also stored in ``out``.
    """
    handle = submit(store, layer=layer, out=out, metric=metric, variant=variant,
                    networks=networks, against=against, step=step, against_step=against_step,
                    against_layer=against_layer, timestep=timestep, client=client,
                    scheduler=scheduler, n_workers=n_workers, backend=backend, dtype=dtype,
                    tile=tile, keep=keep, epsilon=epsilon, rtol=rtol, overwrite=overwrite)
    logger.info(handle.resume.line())
    return handle.result(on_tile=on_tile)


def plan(store, *, layer: str, out, metric: str = "pwcca", variant: str = "paper",
         networks=None, against=None, step: StepSpec = None, against_step: StepSpec = "same",
         against_layer: str | None = None, timestep=None, dtype: Any = None,
         tile: int | None = None, keep: int | float = 0.99, epsilon: float = DEFAULT_EPSILON,
         overwrite: bool = False, **_ignored) -> dict:
    """What :func:`submit` would do, without a cluster and without writing: a dict for display."""
    check_metric(metric, variant)
    store = open_store(store)
    rows, cols, square = resolve_axes(store, layer=layer, networks=networks, against=against,
                                      step=step, against_step=against_step,
                                      against_layer=against_layer, timestep=timestep)
    info = {"rows": len(rows), "columns": len(cols), "square": square, "metric": metric}
    existing = None
    try:
        existing = ComparisonOutput.open(out)
    except (StoreError, FileNotFoundError):
        pass
    if existing is not None and not overwrite:
        done, total = existing.resume_state(len(rows), len(cols), square)
        info.update(tile=int(existing.meta["tile"]), tiles_total=total, tiles_done=done,
                    tiles_left=total - done, output="exists (resume)")
    else:
        width = max(int(store.reader(i.network, i.layer, step=i.step, timestep=i.timestep).shape[1])
                    for i in rows[:1] + cols[:1])
        size = tile or tile_size(max(len(rows), len(cols)), max_rank=width, max_neurons=width,
                                 chunk_rows=DEFAULT_CHUNK_ROWS, memory_bytes=FALLBACK_TILE_MEMORY,
                                 itemsize=np.dtype(resolve_dtype(dtype)).itemsize)
        tiles = list(iter_tiles(len(rows), len(cols), size, square=square))
        info.update(tile=f"{size} (default for a 4 GiB worker; the cluster's memory decides)"
                    if tile is None else size, tiles_total=len(tiles), tiles_done=0,
                    tiles_left=len(tiles), output="new" if existing is None else "overwrite")
    return info
