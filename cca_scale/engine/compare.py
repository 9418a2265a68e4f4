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
from typing import Any, Callable

import numpy as np

from cca_scale.core.backend import BACKENDS
from cca_scale.core.pairs import DEFAULT_EPSILON
from cca_scale.engine.handle import Comparison, RunSummary
from cca_scale.engine.output import PAIR_ARRAYS, ComparisonOutput
from cca_scale.engine.request import DEFAULT_CHUNK_ROWS, ComparisonRequest, check_count
from cca_scale.engine.selection import (
    Resolved,
    StepSpec,
    item_records,
    open_store,
    resolve_request,
)
from cca_scale.engine.tasks import (TileSpec, TileSummary, coords_task, prepare_task,
                                    reader_key, reader_nbytes, tile_task)
from cca_scale.engine.tiles import block_rows, choose_tile, iter_tiles
from cca_scale.errors import CcaScaleError, StoreError
from cca_scale.matrix import DistanceMatrix
from cca_scale.runtime.client import open_client, worker_memory_bytes, workers_with_gpus
from cca_scale.store.targets import check_output_target

__all__ = ["Comparison", "RunSummary", "compare", "plan", "submit"]

logger = logging.getLogger(__name__)

#: Bases before any tile: a tile can only start once all of its networks are prepared.
PREPARE_PRIORITY = 1 << 40
#: Each network's orthonormal coordinates are computed once and held in the worker's memory
#: (one read of the activations per run) when the cluster is one worker (the embedded cluster:
#: threads sharing its memory) and all of them take at most this share of its memory; otherwise
#: every tile reads and projects its networks itself. Across worker processes, moving held
#: coordinates to a tile's worker (serialised, over TCP) cost more than reading the store again
#: (measured on 2 local worker processes, 32 x 10,000 x 128: 10.3 s held vs 7.0 s streamed).
HOLD_MEMORY_FRACTION = 0.25
#: The cluster memory assumed when the workers report no limit.
FALLBACK_CLUSTER_MEMORY = 4 << 30


def _versions(backend: str) -> dict:
    from cca_scale._env import package_versions

    names = ("cca-scale", "numpy", "scipy", "dask", "distributed", "zarr")
    return package_versions(names + (("cupy",) if backend == "cupy" else ()))


def _check_backend(backend: str, client) -> str:
    """The backend the tasks use, once the cluster is known (the name was checked before)."""
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


def _tile(req: ComparisonRequest, res: Resolved, memory: int, chunk_rows: int) -> int:
    return choose_tile(req.tile, n_items=res.side, max_neurons=res.max_neurons,
                       chunk_rows=chunk_rows, itemsize=np.dtype(req.dtype).itemsize,
                       memory=memory, n_pair_arrays=len(PAIR_ARRAYS) * len(req.metrics))


def submit(
    store,
    *,
    layer: str | list[str],
    out=None,
    metric: str | list[str] = "pwcca",
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
    allow_underdetermined: bool = False,
    overwrite: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Comparison:
    """Start an all-pairs comparison and return at once; see :func:`compare` for the parameters.

    Several comparisons can be in flight together on one ``client``; they share the per-network
    preparation tasks when their inputs and precision agree. (One comparison with a list of
    layers and metrics is cheaper: one cross product per tile serves every metric.)
    """
    req = ComparisonRequest.build(
        layer=layer, metric=metric, variant=variant, networks=networks, against=against,
        step=step, against_step=against_step, against_layer=against_layer, timestep=timestep,
        dtype=dtype, tile=tile, keep=keep, epsilon=epsilon, rtol=rtol,
        allow_underdetermined=allow_underdetermined, overwrite=overwrite, chunk_rows=chunk_rows)
    n_workers = check_count(n_workers, "n_workers")
    if backend not in ("auto",) + BACKENDS:
        raise CcaScaleError(
            f"The 'backend' parameter must be one of {['auto', *BACKENDS]}. "
            f"Got {backend!r} instead."
        )
    store = open_store(store)
    with store.snapshot():  # one view of the store: each document read once, for both steps
        res = resolve_request(store, req)
        row_records = item_records(store, res.rows, res.row_readers)
        col_records = row_records if res.square else item_records(store, res.cols,
                                                                  res.col_readers)

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
    else:  # refuse a path that is not ours before any cluster starts
        check_output_target(out, kind="comparison", inputs=(store.path,))
    client, owned = open_client(client=client, scheduler=scheduler, n_workers=n_workers,
                                gpu=backend == "cupy")
    output = None
    try:
        backend = _check_backend(backend, client)
        chunk_rows = block_rows((r.chunk_rows for r in res.readers), req.chunk_rows)
        tile_in_force = _tile(req, res, worker_memory_bytes(client), chunk_rows)
        extra = {"store": store.path, "input_fingerprint": store.content_fingerprint(res.readers),
                 "versions": _versions(backend), "backend": backend,
                 "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        output, resume, tile_in_force = ComparisonOutput.open_for_run(
            out, params=req.output_params(res.n_datapoints, [r.dtype for r in res.readers]),
            rows=row_records, cols=col_records, square=res.square, tile=None if req.tile is None else tile_in_force,
            default_tile=tile_in_force, overwrite=req.overwrite, extra_meta=extra,
            inputs=(store.path,), metrics={m: req.metric_params(m) for m in req.metrics},
            add_metrics=req.many_metrics)
        n_pairs = len(res.rows) * len(res.cols) - (len(res.rows) if res.square else 0)
        handle = Comparison(out=output, resume=resume, tile=tile_in_force, client=client,
                            owned=owned, temporary_dir=temporary_dir, metrics=req.metrics,
                            many=req.many_metrics, pairs_per_matrix=n_pairs,
                            shape=(len(res.rows), len(res.cols)))
        _submit_tiles(handle, res, req, backend=backend, chunk_rows=chunk_rows)
        return handle
    except BaseException:
        if output is not None:
            output.release()
        if owned:
            client.close()  # also closes a cluster launch() started
        if temporary_dir is not None:
            shutil.rmtree(temporary_dir, ignore_errors=True)
        raise


def _single_worker_memory(client) -> int:
    """The memory limit of a one-worker cluster (:data:`FALLBACK_CLUSTER_MEMORY` where unknown);
    0 for a cluster of several workers (coordinates are then not held)."""
    workers = list(client.scheduler_info(n_workers=-1)["workers"].values())
    if len(workers) != 1:
        return 0
    return int(workers[0].get("memory_limit") or 0) or FALLBACK_CLUSTER_MEMORY


def hold_coordinates(readers, *, dtype: str, memory: int) -> bool:
    """Whether the networks' orthonormal coordinates (``n_datapoints x n_neurons`` values each,
    at most, in ``dtype``) fit in :data:`HOLD_MEMORY_FRACTION` of the cluster's ``memory`` bytes.
    (Tiles use them where they are held, without copies.)"""
    itemsize = np.dtype(dtype).itemsize
    sizes = [int(r.shape[0]) * int(r.shape[-1]) * itemsize for r in readers]
    return bool(sizes) and sum(sizes) <= HOLD_MEMORY_FRACTION * memory


def _submit_tiles(handle: Comparison, res: Resolved, req: ComparisonRequest, *, backend: str,
                  chunk_rows: int) -> None:
    """Submit one task per tile not done yet, each depending on what it needs of all its
    networks: their held coordinates (``coords_task``, each network read once) when they fit in
    the cluster's memory, else their bases (``prepare_task``; the tile reads the activations).

    Tiles already done can be any subset (earlier runs, extension, damaged chunks found by
    :meth:`ComparisonOutput.done_mask`): every network a remaining tile needs, on either axis, is
    submitted, once per distinct input.
    """
    from dask.base import tokenize

    client = handle.client
    resources = {"GPU": 1} if backend == "cupy" else None
    mask = handle.out.done_mask(req.metrics)
    layout = tuple((m, handle.out.prefix(m)) for m in req.metrics)
    tiles = [t for t in iter_tiles(len(res.rows), len(res.cols), handle.tile, square=res.square)
             if not mask[t.bi, t.bj]]
    needed = {reader_key(r): r for t in tiles for r in (res.row_readers[t.r0:t.r1]
                                                        + res.col_readers[t.c0:t.c1])}
    memory = _single_worker_memory(client)
    hold = hold_coordinates(needed.values(), dtype=req.dtype, memory=memory)
    submitted: dict[str, Any] = {}

    def once(task, key_kind: str, token: str, what, nbytes: int, **kwargs):
        """``task(what, ...)``, submitted the first time ``token`` is asked for (it reads
        ``nbytes`` of activations)."""
        if token not in submitted:
            handle.prepared_bytes += nbytes
            submitted[token] = client.submit(
                task, what, dtype=req.dtype, backend=backend, rtol=req.rtol, **kwargs,
                key=f"cca-{key_kind}-{token}", resources=resources, retries=3,
                priority=PREPARE_PRIORITY)
        return submitted[token]

    def inputs(readers: tuple):
        """What a tile needs of one side's networks: their held coordinates, stacked (one
        ``coords_task`` per tile side, each network read once), or one basis per network."""
        store = handle.out.meta.get("store")
        if hold:
            token = tokenize(store, [reader_key(r) for r in readers], req.dtype, backend, req.rtol,
                             chunk_rows)
            return once(coords_task, "coords", token, readers, sum(map(reader_nbytes, readers)),
                        block_rows=chunk_rows)
        return [once(prepare_task, "prepare",
                     tokenize(store, reader_key(r), req.dtype, backend, req.rtol), r,
                     reader_nbytes(r))
                for r in readers]

    handle.data_bytes += sum(reader_nbytes(r) for r in needed.values())
    run = tokenize(handle.out.path, time.time())
    for t in tiles:
        spec = TileSpec(
            out_path=handle.out.path, tile=t,
            row_readers=tuple(res.row_readers[t.r0:t.r1]),
            col_readers=tuple(res.col_readers[t.c0:t.c1]),
            metrics=layout, variant=req.variant, keep=req.keep, epsilon=req.epsilon,
            dtype=req.dtype, backend=backend, chunk_rows=chunk_rows)
        handle.futures.append(client.submit(
            tile_task, spec, inputs(spec.row_readers), inputs(spec.col_readers),
            key=f"cca-tile-{run}-{t.bi}-{t.bj}", resources=resources, retries=3, pure=False,
            priority=t.n_pairs))  # largest tiles first; the half-size diagonal ones fill in
        handle.pairs_total += t.n_pairs
    # The handle holds the tile futures; the networks' results stay alive only as their
    # dependencies, released as soon as the last tile needing them is done.
    submitted.clear()


def compare(store, *, layer: str | list[str], out=None, metric: str | list[str] = "pwcca",
            variant: str = "paper",
            networks=None, against=None, step: StepSpec = None, against_step: StepSpec = "same",
            against_layer: str | None = None, timestep=None, client=None,
            scheduler: str | None = None, n_workers: int | None = None, backend: str = "auto",
            dtype: Any = None, tile: int | None = None, keep: int | float = 0.99,
            epsilon: float = DEFAULT_EPSILON, rtol: float | None = None,
            allow_underdetermined: bool = False, overwrite: bool = False,
            on_tile: Callable[[TileSummary], None] | None = None
            ) -> DistanceMatrix | dict[str, DistanceMatrix]:
    """All-pairs distances between the networks of an activation store, on Dask.

    Parameters
    ----------
    store : ActivationStore or str
        The activations (opened read-only when a path is given).
    layer : str, list of str, or 'all'
        The layer compared (rows; also columns unless ``against_layer``). A list (or
        ``'fc1,fc2'``), or ``'all'`` (the layers every selected network holds), compares every
        (network, layer) item with every other in one run: one (N*L) x (N*L) matrix, items
        network by network, labelled ``network/layer`` (then ``@step``, ``/tT`` as below; the
        label grammar is ``NETWORK[/LAYER][@STEP][/tT]``); ``row_info``/``col_info`` hold the
        ``network``, ``layer``, ``step``, ``timestep`` columns. Layers of different widths are
        fine except for the neuron-aligned metrics (cosine, euclidean), refused naming them.
    out : str, optional
        Output Zarr group. Rerunning with the same parameters resumes it (or extends it with
        networks added to the store since); different parameters are refused unless
        ``overwrite``. None (only with the embedded local cluster): a temporary group, deleted
        once the matrix is returned, so nothing can be resumed. A path that holds anything but
        a cca_scale comparison output is never written to (see the README's Guarantees), and
        one run at a time writes an output (a second gets ``OutputBusyError``).
    metric : {'pwcca', 'mean_cca', 'svcca', 'cka', 'cosine', 'euclidean'} or list of them
        A list (or ``'pwcca,cka'``) computes every metric from the same cross product per tile
        (one pass over the activations); the output then holds one matrix per metric
        (``OUT/<metric>/...``), and adding a metric to an existing output computes that metric
        only. Unknown names, duplicates and empty lists are refused before anything starts.
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
        A ``distributed.Client``, or a scheduler address, or (neither) an embedded in-process
        LocalCluster with ``n_workers`` task threads (default: one per core) and one BLAS thread
        per task while it runs (see :mod:`cca_scale.runtime.embedded`).
    backend : {'auto', 'numpy', 'cupy'}
        ``'cupy'`` runs tasks on workers declaring ``GPU=1``; ``'auto'`` picks it when there are.
    dtype : {None, 'float32', 'float64'}
        Precision of the cross products, the one datapoint-sized GEMM per tile (float64 default).
        With float32 the layers are still factored and projected in float64, the coordinates
        rounded to float32 for the GEMM, and the cross products accumulated and every pair's
        kernel run in float64: it agrees with float64 to about 1e-6 on well-conditioned layers,
        twice as fast on the GEMM (more on GPUs).
    tile : int, optional
        Networks per tile side; the default fits a quarter of a worker's memory and keeps at least
        two blocks per side. A tile that would not fit in a worker's memory is refused. Fixed for
        the life of an output.
    keep, epsilon, rtol
        SVCCA's kept directions, the svcca variant's epsilon (finite, >= 0), the rank tolerance.
    allow_underdetermined : bool
        Accept layers with ``n_datapoints <= n_neurons`` for the CCA metrics, as the one-pair
        functions do with the same option; refused by default, before anything runs.
    overwrite : bool
        Discard an existing comparison output with other parameters. Never replaces anything
        cca_scale did not write: a path holding other data, an activation store, a symbolic
        link, a device, the working directory or a path overlapping ``store`` is refused with
        :class:`~cca_scale.errors.UnsafeOutputError`, with or without ``overwrite``.
    on_tile : callable, optional
        Called with each finished tile's :class:`TileSummary` (progress reporting).

    Returns
    -------
    DistanceMatrix, or dict of str to DistanceMatrix
        ``values[i, j] = d(row i, column j)``, float64, also stored in ``out``: one matrix for a
        metric given as a plain name, a dict ``{metric: matrix}`` (in the order asked) for a list.
        ``metadata["run_summary"]`` holds the run's :class:`RunSummary` as a dict (pairs
        computed, resumed and ill-posed per metric, wall time, bytes read, the output).
    """
    handle = submit(store, layer=layer, out=out, metric=metric, variant=variant,
                    networks=networks, against=against, step=step, against_step=against_step,
                    against_layer=against_layer, timestep=timestep, client=client,
                    scheduler=scheduler, n_workers=n_workers, backend=backend, dtype=dtype,
                    tile=tile, keep=keep, epsilon=epsilon, rtol=rtol,
                    allow_underdetermined=allow_underdetermined, overwrite=overwrite)
    logger.info(handle.resume.line())
    return handle.result(on_tile=on_tile)


def plan(store, *, layer: str, out, dtype: Any = None, tile: int | None = None,
         **options: Any) -> dict:
    """What :func:`submit` would do, without a cluster and without writing: a dict for display.

    Takes the options of :func:`submit` (unknown names are refused) and checks them, and the
    selected layers, exactly as :func:`submit` does.
    """
    options.pop("client", None), options.pop("scheduler", None), options.pop("backend", None)
    check_count(options.pop("n_workers", None), "n_workers")
    req = ComparisonRequest.build(layer=layer, dtype=dtype, tile=tile, **options)
    store = open_store(store)
    res = resolve_request(store, req)
    info = {"rows": len(res.rows), "columns": len(res.cols), "square": res.square,
            "metric": ",".join(req.metrics)}
    check_output_target(out, kind="comparison", inputs=(store.path,))  # refused here too
    existing = None
    try:
        existing = ComparisonOutput.open(out)
    except (StoreError, FileNotFoundError):
        pass
    if existing is not None and not req.overwrite:
        done, total = existing.resume_state(len(res.rows), len(res.cols), res.square,
                                            metrics=req.metrics)
        info.update(tile=int(existing.meta["tile"]), tiles_total=total, tiles_done=done,
                    tiles_left=total - done, output="exists (resume)")
    else:
        chunk_rows = block_rows((r.chunk_rows for r in res.readers), req.chunk_rows)
        size = _tile(req, res, 0, chunk_rows)
        tiles = list(iter_tiles(len(res.rows), len(res.cols), size, square=res.square))
        info.update(tile=f"{size} (default for a 4 GiB worker; the cluster's memory decides)"
                    if tile is None else size, tiles_total=len(tiles), tiles_done=0,
                    tiles_left=len(tiles), output="new" if existing is None else "overwrite")
    return info
