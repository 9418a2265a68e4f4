"""Benchmarks: the prepared path and the engine against the naive per-pair method and the
machine's own matmul peak. Run through ``cca-scale bench``; never used in timed tests.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from cca_scale.core import compare, prepare
from cca_scale.core.reference import reference_pwcca_svcca

__all__ = ["bench_core", "bench_engine", "bench_metrics", "matmul_gflops",
           "synthetic_activations", "write_synthetic_store"]


def matmul_gflops(*, dtype="float64", size: int = 2048, threads: int | None = None,
                  repeats: int = 3, xp=np) -> float:
    """Best-of-``repeats`` GFLOP/s of a ``size``-cube matmul (``2 * size^3`` flops)."""
    a = xp.asarray(np.random.default_rng(0).standard_normal((size, size)), dtype=dtype)
    b = xp.asarray(np.random.default_rng(1).standard_normal((size, size)), dtype=dtype)
    best = float("inf")
    with threadpool_limits(threads):
        for _ in range(repeats + 1):
            t = time.perf_counter()
            _ = a @ b
            if xp is not np:
                xp.cuda.Stream.null.synchronize()
            best = min(best, time.perf_counter() - t)
    return 2.0 * size**3 / best / 1e9


def synthetic_activations(n_networks: int, n_datapoints: int, n_neurons: int, *, seed: int = 0,
                          shared: int | None = None):
    """Yield ``(name, acts)`` for networks that share a latent signal plus their own noise."""
    rng = np.random.default_rng(seed)
    shared = shared or max(1, n_neurons // 4)
    latent = rng.standard_normal((n_datapoints, shared)).astype(np.float32)
    for k in range(n_networks):
        mix = rng.standard_normal((shared, n_neurons)).astype(np.float32)
        noise = rng.standard_normal((n_datapoints, n_neurons)).astype(np.float32)
        yield f"net{k:04d}", np.maximum(latent @ mix + 0.5 * noise, 0.0)


def write_synthetic_store(path, *, n_networks: int, n_datapoints: int, n_neurons: int,
                          layer: str = "hidden", seed: int = 0):
    """A store of synthetic networks written through the public store API."""
    from cca_scale.store import ActivationStore

    store = ActivationStore.create(path, n_datapoints=n_datapoints, overwrite=True)
    for k, (name, acts) in enumerate(synthetic_activations(n_networks, n_datapoints, n_neurons,
                                                           seed=seed)):
        store.add(name, layer, acts, attrs={"seed": k})
    return store


def bench_core(*, n_datapoints: int = 10_000, n_neurons: int = 128, pairs: int = 5,
               seed: int = 0) -> dict:
    """One pair on one thread: prepared path vs the naive covariance method (the original's)."""
    nets = [a.astype(np.float64) for _, a in
            synthetic_activations(pairs + 1, n_datapoints, n_neurons, seed=seed)]
    with threadpool_limits(1):
        t = time.perf_counter()
        bases = [prepare(x) for x in nets]
        t_prepare = (time.perf_counter() - t) / len(nets)
        t = time.perf_counter()
        for a, b in zip(bases[:-1], bases[1:]):
            compare(a, b)  # both directions from one SVD
        t_pair = (time.perf_counter() - t) / pairs
        t = time.perf_counter()
        for x, y in zip(nets[:-1], nets[1:]):
            reference_pwcca_svcca(x, y)
        t_naive = (time.perf_counter() - t) / pairs
    flops = 2.0 * n_datapoints * bases[0].rank * bases[1].rank
    peak = matmul_gflops(threads=1)
    return {
        "shape": f"{n_datapoints} datapoints x {n_neurons} neurons, float64, 1 BLAS thread",
        "prepare_seconds_per_network": t_prepare,
        "prepared_seconds_per_pair_both_directions": t_pair,
        "naive_seconds_per_directed_pair": t_naive,
        "speedup_per_directed_pair": 2 * t_naive / t_pair,
        "pair_gemm_gflops": flops / t_pair / 1e9,
        "matmul_peak_gflops_1_thread": peak,
        "fraction_of_peak": flops / t_pair / 1e9 / peak,
    }


def _timed_compare(store_path, out_path, *, metrics, workers: int, dtype: str, gpu: bool,
                   tile: int | None, client=None) -> float:
    """Seconds one comparison takes: in this process on ``client`` (a warm cluster: the engine
    alone), or, without a client, as a whole ``cca-scale compare`` process (imports, cluster
    start and teardown included)."""
    if client is not None:
        from cca_scale.engine import compare

        t = time.perf_counter()
        compare(str(store_path), layer="hidden", out=str(out_path),
                metric=metrics[0] if len(metrics) == 1 else list(metrics),
                client=client, overwrite=True, dtype=dtype, tile=tile,
                backend="cupy" if gpu else "auto")
        return time.perf_counter() - t
    cmd = [sys.executable, "-m", "cca_scale.cli.main", "compare", str(store_path),
           "--layer", "hidden", "--out", str(out_path), "--quiet", "--overwrite",
           "--metric", ",".join(metrics), "--workers", str(workers), "--dtype", dtype] + \
        (["--gpu"] if gpu else []) + (["--tile", str(tile)] if tile else [])
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - t


def _bench_client(workers: int, gpu: bool, whole_process: bool):
    """A warm local cluster for in-process timing, or None for whole-process timing."""
    if whole_process:
        return None
    from cca_scale.runtime import launch

    return launch("local-gpu") if gpu else launch("local", n_workers=workers,
                                                  dashboard_address="127.0.0.1:0")


def bench_engine(*, n_networks: int = 32, n_datapoints: int = 10_000, n_neurons: int = 128,
                 workers: int | None = None, tile: int | None = None, dtype: str = "float64",
                 gpu: bool = False, naive_pairs: int = 3, workdir: str | None = None,
                 seed: int = 0, whole_process: bool = False) -> dict:
    """One comparison on a synthetic store: the engine in this process on a warm local cluster,
    or with ``whole_process`` the ``cca-scale compare`` command as a separate process.

    Reports pairs per second, achieved GFLOP/s on the unavoidable GEMM work
    (``2 * m * d_a * d_b`` per unordered pair) during the pair phase, the machine's matmul GFLOP/s
    measured now with as many threads as workers (or on the GPU), their ratio, and the speedup of
    the whole process over the naive per-pair loop timed on sampled pairs.
    """
    from cca_scale.runtime import local_worker_count
    from cca_scale.engine.results import load_distances

    workers = workers or local_worker_count()
    tmp = tempfile.TemporaryDirectory(dir=workdir)
    root = Path(tmp.name)
    try:
        store_path, out_path = root / "bench.zarr", root / "bench_out.zarr"
        t = time.perf_counter()
        write_synthetic_store(store_path, n_networks=n_networks, n_datapoints=n_datapoints,
                              n_neurons=n_neurons, seed=seed)
        t_write = time.perf_counter() - t
        client = _bench_client(workers, gpu, whole_process)
        try:
            t_process = _timed_compare(store_path, out_path, metrics=["pwcca"], workers=workers,
                                       dtype=dtype, gpu=gpu, tile=tile, client=client)
        finally:
            if client is not None:
                client.close()
        matrix = load_distances(out_path)
        timings = matrix.metadata["timings"]
        pair_phase = timings["pair_phase_seconds"]
        gflop = timings["gemm_gflop"]
        n_pairs = n_networks * (n_networks - 1)
        if gpu:
            import cupy

            peak = matmul_gflops(dtype="float32" if dtype == "float32" else "float64",
                                 size=8192, xp=cupy)
        else:
            peak = matmul_gflops(dtype=dtype, threads=workers)
        nets = [a.astype(np.float64) for _, a in
                synthetic_activations(min(n_networks, naive_pairs + 1), n_datapoints, n_neurons,
                                      seed=seed)]
        t = time.perf_counter()
        for x, y in zip(nets[:-1], nets[1:]):
            reference_pwcca_svcca(x, y)
        naive_per_pair = (time.perf_counter() - t) / max(1, len(nets) - 1)
        return {
            "shape": f"N={n_networks} networks x {n_datapoints} datapoints x {n_neurons} neurons, "
                     f"{dtype}, {workers} worker(s){' on GPU' if gpu else ''}, "
                     f"tile {matrix.metadata['tile']}",
            "store_write_seconds": t_write,
            "timed": "whole cca-scale compare process" if whole_process
                     else "engine on a warm local cluster (in process)",
            "compare_seconds": t_process,
            "directed_pairs": n_pairs,
            "pairs_per_second_end_to_end": n_pairs / t_process,
            "pair_phase_seconds": pair_phase,
            "pair_phase_gemm_gflops": gflop / pair_phase if pair_phase else float("nan"),
            "matmul_peak_gflops": peak,
            "fraction_of_peak": (gflop / pair_phase / peak) if pair_phase else float("nan"),
            "naive_seconds_per_directed_pair": naive_per_pair,
            "naive_loop_seconds_estimated": naive_per_pair * n_pairs,
            "speedup_vs_naive_end_to_end": naive_per_pair * n_pairs / t_process,
            "max_abs_asymmetry": float(np.nanmax(np.abs(matrix.values - matrix.values.T))),
        }
    finally:
        tmp.cleanup()


def bench_metrics(metrics: list[str], *, n_networks: int = 32, n_datapoints: int = 10_000,
                  n_neurons: int = 128, workers: int | None = None, tile: int | None = None,
                  dtype: str = "float64", gpu: bool = False, repeats: int = 3,
                  workdir: str | None = None, seed: int = 0,
                  whole_process: bool = False) -> dict:
    """Several metrics in one run (``--metric a,b,c``) against the first metric alone, on the
    same synthetic store, alternated, ``repeats`` times each: the engine on one warm local
    cluster, or with ``whole_process`` ``cca-scale compare`` processes.

    Reports the minimum over the repeats of the whole comparison and of the pair phase (first
    tile started to last tile finished, from the output's timings), and their ratios.
    """
    from cca_scale.engine.results import load_distances
    from cca_scale.runtime import local_worker_count

    workers = workers or local_worker_count()
    tmp = tempfile.TemporaryDirectory(dir=workdir)
    root = Path(tmp.name)
    try:
        store_path = root / "bench.zarr"
        write_synthetic_store(store_path, n_networks=n_networks, n_datapoints=n_datapoints,
                              n_neurons=n_neurons, seed=seed)
        runs = {"one": metrics[:1], "many": list(metrics)}
        best = {k: [float("inf"), float("inf")] for k in runs}
        client = _bench_client(workers, gpu, whole_process)
        try:
            for _ in range(repeats):
                for key, names in runs.items():
                    out = root / f"{key}.zarr"
                    elapsed = _timed_compare(store_path, out, metrics=names, workers=workers,
                                             dtype=dtype, gpu=gpu, tile=tile, client=client)
                    phase = load_distances(out).metadata["timings"]["pair_phase_seconds"]
                    best[key] = [min(best[key][0], elapsed), min(best[key][1], phase)]
        finally:
            if client is not None:
                client.close()
        return {
            "shape": f"N={n_networks} networks x {n_datapoints} datapoints x {n_neurons} "
                     f"neurons, {dtype}, {workers} worker(s){' on GPU' if gpu else ''}, "
                     f"min of {repeats}",
            f"process_seconds_{metrics[0]}": best["one"][0],
            f"process_seconds_{'+'.join(metrics)}": best["many"][0],
            "process_ratio": best["many"][0] / best["one"][0],
            f"pair_phase_seconds_{metrics[0]}": best["one"][1],
            f"pair_phase_seconds_{'+'.join(metrics)}": best["many"][1],
            "pair_phase_ratio": best["many"][1] / best["one"][1] if best["one"][1] else
            float("nan"),
        }
    finally:
        tmp.cleanup()
