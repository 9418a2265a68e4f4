"""Benchmarks: the engine against the arithmetic it cannot avoid (the GEMM floor), the original
implementation's per-pair method and, where installed, netrep. Run through ``cca-scale bench``;
never used in timed tests.

Only the standard library, NumPy and threadpoolctl are imported at module level, so that
``benchmarks/peer_netrep.py`` can load this file for :func:`synthetic_activations` from a
benchmark venv that has no cca_scale installed; cca_scale's own modules are imported where used.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

__all__ = ["PHASES", "bench_core", "bench_engine", "bench_metrics", "find_peer_python",
           "gemm_floor_flops", "gemm_floor_seconds", "matmul_gflops", "passes_over_data",
           "phase_shares", "run_peer_netrep", "summarize", "synthetic_activations",
           "time_original_pwcca", "write_synthetic_store"]

#: Phases of a tile task's seconds (``timings["task_seconds"]``), in the order shown.
PHASES = ("prepare", "io", "project", "gemm", "pairs", "write")
#: What runs of another dtype or PWCCA variant are timed beside (``bench_engine(baseline=True)``).
BASELINE = ("float64", "paper")
PEER_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "peer_netrep.py"
FLOOR_DEFINITION = ("time of a SYRK of all networks' stacked orthonormal coordinates "
                    "(m x N*d): m*(N*d)^2 flops at the matmul GFLOP/s measured in this run "
                    "with as many BLAS threads as workers, in the benchmark's dtype")


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


def gemm_floor_flops(*, n_networks: int, n_datapoints: int, n_neurons: int) -> float:
    """Flops of the SYRK ``Q^T Q`` of the stacked coordinates ``Q`` (m x N*d): ``m * (N*d)^2``.

    A SYRK computes one triangle of the (N*d) x (N*d) product, half a GEMM's ``2 * m * n^2``; it
    holds every pair's cross product ``Q_i^T Q_j``, the arithmetic exact all-pairs CCA needs.
    """
    return float(n_datapoints) * float(n_networks * n_neurons) ** 2


def gemm_floor_seconds(*, n_networks: int, n_datapoints: int, n_neurons: int,
                       gflops: float) -> float:
    """Seconds of :func:`gemm_floor_flops` at ``gflops`` GFLOP/s (the measured matmul rate)."""
    return gemm_floor_flops(n_networks=n_networks, n_datapoints=n_datapoints,
                            n_neurons=n_neurons) / (gflops * 1e9)


def summarize(values) -> dict:
    """``{"min", "median", "max"}`` of a non-empty sequence of numbers (floats)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summarize() needs at least one value, got none")
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def phase_shares(task_seconds: dict) -> dict:
    """Each phase's fraction of the summed task seconds (``{"io": 0.2, ...}``, summing to 1).

    Known phases (:data:`PHASES`) come first in their order, others after; phases absent from
    ``task_seconds`` are left out. All zero (or empty): every share is 0.
    """
    keys = [p for p in PHASES if p in task_seconds] + \
        sorted(k for k in task_seconds if k not in PHASES)
    total = sum(float(task_seconds[k]) for k in keys)
    return {k: (float(task_seconds[k]) / total if total > 0 else 0.0) for k in keys}


def passes_over_data(bytes_read: float, *, n_networks: int, n_datapoints: int, n_neurons: int,
                     itemsize: int = 4) -> float:
    """Bytes read as passes over the stored activations: ``bytes / (N * m * d * itemsize)``
    (``itemsize`` 4: the store holds float32)."""
    return float(bytes_read) / (n_networks * n_datapoints * n_neurons * itemsize)


#: ``trained_like`` layers: the share of dead units in every network, and the decades over which
#: every other network's units are scaled (as in the demo's trained MLPs, where most hidden layers
#: have dead units and half have condition numbers above 1e3).
TRAINED_LIKE_DEAD = 0.05
TRAINED_LIKE_DECADES = 3.0


def trained_like_dead_units(n_neurons: int) -> int:
    """Dead units in each ``trained_like`` network of ``n_neurons`` units."""
    return round(TRAINED_LIKE_DEAD * n_neurons)


def synthetic_activations(n_networks: int, n_datapoints: int, n_neurons: int, *, seed: int = 0,
                          shared: int | None = None, trained_like: bool = False):
    """Yield ``(name, acts)`` for networks that share a latent signal plus their own noise:
    float32 ReLU activations of shape ``(n_datapoints, n_neurons)``.

    ``trained_like``: the same networks made to look like trained layers: in each,
    :data:`TRAINED_LIKE_DEAD` of the units dead (always 0), and in every other one the units
    scaled over :data:`TRAINED_LIKE_DECADES` decades (condition numbers of about 1e3-1e4, which
    the Gram path alone does not factor).
    """
    rng = np.random.default_rng(seed)
    damage = np.random.default_rng([seed, 1])  # the plain networks' draws stay as they were
    shared = shared or max(1, n_neurons // 4)
    latent = rng.standard_normal((n_datapoints, shared)).astype(np.float32)
    for k in range(n_networks):
        mix = rng.standard_normal((shared, n_neurons)).astype(np.float32)
        noise = rng.standard_normal((n_datapoints, n_neurons)).astype(np.float32)
        acts = np.maximum(latent @ mix + 0.5 * noise, 0.0)
        if trained_like:
            dead = damage.choice(n_neurons, size=trained_like_dead_units(n_neurons),
                                 replace=False)
            acts[:, dead] = 0.0
            if k % 2:
                scales = np.geomspace(1.0, 10.0 ** -TRAINED_LIKE_DECADES, n_neurons)
                acts *= scales[damage.permutation(n_neurons)].astype(np.float32)
        yield f"net{k:04d}", acts


def write_synthetic_store(path, *, n_networks: int, n_datapoints: int, n_neurons: int,
                          layer: str = "hidden", seed: int = 0, trained_like: bool = False):
    """A store of synthetic networks (:func:`synthetic_activations`) written through the public
    store API."""
    from cca_scale.store import ActivationStore

    store = ActivationStore.create(path, n_datapoints=n_datapoints, overwrite=True)
    for k, (name, acts) in enumerate(synthetic_activations(n_networks, n_datapoints, n_neurons,
                                                           seed=seed, trained_like=trained_like)):
        store.add(name, layer, acts, attrs={"seed": k})
    return store


def time_original_pwcca(*, n_networks: int, n_datapoints: int, n_neurons: int,
                        min_pairs: int = 5, min_seconds: float = 3.0, max_pairs: int = 200,
                        threads: int | None = None, seed: int = 0,
                        trained_like: bool = False) -> dict:
    """Seconds per directed pair of the original implementation's method, timed on sampled pairs.

    Calls :func:`cca_scale.core.pairs.original_pwcca_similarity` (a step-by-step transcription
    of google/svcca's ``compute_pwcca``: one direction per call) on distinct directed pairs of
    the synthetic networks (float64, up to 8 networks generated) until at least ``min_pairs``
    pairs AND ``min_seconds`` seconds are done (at most ``max_pairs``), with ``threads`` BLAS
    threads. Returns the method, pairs and seconds timed, and the mean seconds per pair.
    """
    from cca_scale.core.kernels import DEFAULT_EPSILON
    from cca_scale.core.pairs import original_pwcca_similarity

    k = max(2, min(n_networks, 8))
    nets = [a.astype(np.float64) for _, a in
            synthetic_activations(k, n_datapoints, n_neurons, seed=seed,
                                  trained_like=trained_like)]
    order = [(i, j) for i in range(k) for j in range(k) if i != j]
    order = [order[p] for p in np.random.default_rng(seed).permutation(len(order))]
    done, elapsed = 0, 0.0
    with threadpool_limits(threads):
        while done < max_pairs and (done < min_pairs or elapsed < min_seconds):
            i, j = order[done % len(order)]
            t = time.perf_counter()
            original_pwcca_similarity(nets[i], nets[j], DEFAULT_EPSILON)
            elapsed += time.perf_counter() - t
            done += 1
    return {"method": "cca_scale.core.pairs.original_pwcca_similarity (google/svcca "
                      "compute_pwcca transcribed, one direction per call, float64)",
            "pairs_timed": done, "seconds_timed": elapsed, "blas_threads": threads,
            "seconds_per_directed_pair": elapsed / done}


def bench_core(*, n_datapoints: int = 10_000, n_neurons: int = 128, pairs: int = 5,
               seed: int = 0, trained_like: bool = False) -> dict:
    """One pair on one thread: prepared path vs the original implementation's method
    (``trained_like`` layers: see :func:`synthetic_activations`)."""
    from cca_scale.core import compare, prepare
    from cca_scale.core.kernels import DEFAULT_EPSILON
    from cca_scale.core.pairs import original_pwcca_similarity

    nets = [a.astype(np.float64) for _, a in
            synthetic_activations(pairs + 1, n_datapoints, n_neurons, seed=seed,
                                  trained_like=trained_like)]
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
            original_pwcca_similarity(x, y, DEFAULT_EPSILON)  # one direction
        t_naive = (time.perf_counter() - t) / pairs
    flops = 2.0 * n_datapoints * bases[0].rank * bases[1].rank
    peak = matmul_gflops(threads=1)
    return {
        "shape": f"{n_datapoints} datapoints x {n_neurons} neurons, float64, 1 BLAS thread"
                 + (", trained-like layers" if trained_like else ""),
        "naive_method": "original_pwcca_similarity (google/svcca compute_pwcca)",
        "prepare_seconds_per_network": t_prepare,
        "prepared_seconds_per_pair_both_directions": t_pair,
        "naive_seconds_per_directed_pair": t_naive,
        "speedup_per_directed_pair": 2 * t_naive / t_pair,
        "pair_gemm_gflops": flops / t_pair / 1e9,
        "matmul_peak_gflops_1_thread": peak,
        "fraction_of_peak": flops / t_pair / 1e9 / peak,
    }


def _timed_compare(store_path, out_path, *, metrics, workers: int, dtype: str, gpu: bool,
                   tile: int | None, client=None, variant: str = "paper") -> dict:
    """One comparison, timed: in this process on ``client`` (a warm cluster: the engine alone),
    or, without a client, as a whole ``cca-scale compare`` process (imports, cluster start and
    teardown included). Returns ``seconds`` and what the output recorded: ``timings`` and
    ``bytes_read`` (of its timings; None where absent)."""
    from cca_scale.engine.results import load_distances

    if client is not None:
        from cca_scale.engine import compare

        t = time.perf_counter()
        matrix = compare(str(store_path), layer="hidden", out=str(out_path),
                         metric=metrics[0] if len(metrics) == 1 else list(metrics),
                         client=client, overwrite=True, dtype=dtype, tile=tile,
                         variant=variant, backend="cupy" if gpu else "auto")
        seconds = time.perf_counter() - t
        meta = (next(iter(matrix.values())) if isinstance(matrix, dict) else matrix).metadata
    else:
        cmd = [sys.executable, "-m", "cca_scale.cli.main", "compare", str(store_path),
               "--layer", "hidden", "--out", str(out_path), "--quiet", "--overwrite",
               "--metric", ",".join(metrics), "--workers", str(workers), "--dtype", dtype,
               "--variant", variant] + \
            (["--gpu"] if gpu else []) + (["--tile", str(tile)] if tile else [])
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - t
        meta = load_distances(out_path).metadata
    timings = meta.get("timings", {})
    return {"seconds": seconds, "timings": timings, "tile": meta.get("tile"),
            "bytes_read": timings.get("bytes_read")}


def _bench_client(workers: int, gpu: bool, whole_process: bool):
    """A warm local cluster for in-process timing, or None for whole-process timing."""
    if whole_process:
        return None
    from cca_scale.runtime import launch
    from cca_scale.runtime.embedded import embedded_client

    # the cluster 'cca-scale compare' starts for itself (threads in this process), kept warm
    return launch("local-gpu") if gpu else embedded_client(n_threads=workers, dashboard=False)


def _floor_gflops(dtype: str, workers: int, gpu: bool) -> float:
    """The matmul rate the GEMM floor is computed at: CPU with ``workers`` BLAS threads, or
    the GPU (CuPy, 8192-cube)."""
    if gpu:
        import cupy

        return matmul_gflops(dtype=dtype, size=8192, xp=cupy)
    return matmul_gflops(dtype=dtype, threads=workers)


def _mode_report(records: list[dict], floors: list[float], dims: dict) -> dict:
    """min/median/max over rounds of one timing mode's runs (``floors``: the round's floor)."""
    secs = [r["seconds"] for r in records]
    timings = [r["timings"] for r in records]
    shares = [phase_shares(t.get("task_seconds", {})) for t in timings]
    phases = [p for p in PHASES if any(p in s for s in shares)]
    read = [r["bytes_read"] for r in records if r["bytes_read"] is not None]
    out = {"seconds": summarize(secs),
           "ratio_to_floor": summarize([s / f for s, f in zip(secs, floors)]),
           "engine_wall_seconds": summarize([t.get("wall_seconds", float("nan"))
                                             for t in timings]),
           "pair_phase_seconds": summarize([t.get("pair_phase_seconds", float("nan"))
                                            for t in timings]),
           "task_seconds_total": summarize([sum(t.get("task_seconds", {}).values())
                                            for t in timings]),
           "phase_shares": {p: summarize([s.get(p, 0.0) for s in shares]) for p in phases},
           "bytes_read": summarize(read) if read else None,
           "passes_over_data": summarize([passes_over_data(b, **dims) for b in read])
           if read else None}
    return out


def bench_engine(*, n_networks: int = 32, n_datapoints: int = 10_000, n_neurons: int = 128,
                 workers: int | None = None, tile: int | None = None, dtype: str = "float64",
                 gpu: bool = False, rounds: int = 3, whole_process: bool = False,
                 naive_pairs: int = 5, naive_seconds: float = 3.0,
                 naive_threads: int = 1, against: str | None = None,
                 peer_python: str | None = None, workdir: str | None = None,
                 seed: int = 0, variant: str = "paper", baseline: bool = True,
                 trained_like: bool = False) -> dict:
    """``rounds`` rounds on one synthetic store, each: the whole ``cca-scale compare`` process
    and the engine on a warm in-process local cluster (order alternated between rounds; with
    ``whole_process`` the process only), then the GEMM floor's matmul rate measured again.

    Reports min/median/max over rounds of each time, of its ratio to that round's GEMM floor
    (:func:`gemm_floor_seconds`), of the per-phase shares of task seconds and of bytes read
    (also as passes over the data); the original implementation's method timed on sampled
    pairs (:func:`time_original_pwcca`, ``naive_threads`` BLAS threads, default 1: its small
    LAPACK calls gain nothing from more, and lose 10x when another process takes a core)
    and extrapolated to all directed pairs; and, with ``against="netrep"``, netrep's all-pairs
    times (:func:`run_peer_netrep`: its own helper and a loop over its cached fits). Speedups
    (``speedup_<mode>[_vs_<netrep timing>]``) are ratios of medians.

    With ``baseline`` (the default), a run of another dtype or variant than float64 ``paper``
    times the float64 paper variant too, beside it in every round and mode (order alternated),
    and reports its times under ``baseline`` and, per mode, ``ratio_to_baseline``: min/median/max
    over rounds of each round's ratio, so a machine's drift between runs does not enter it.

    ``trained_like``: layers that look trained (:func:`synthetic_activations`); the GEMM floor
    then counts the layers' ranks (their dead units take no part in the coordinates).
    """
    from cca_scale.errors import CcaScaleError
    from cca_scale.runtime import local_worker_count

    workers = workers or local_worker_count()
    if against is not None and trained_like:
        raise CcaScaleError("--against netrep needs plain layers: netrep's CCA (alpha=0) "
                            "whitens each layer's covariance, which its dead units make "
                            "singular. Leave out --trained-like to time netrep.")
    if against is not None:
        peer_python = find_peer_python(against, peer_python)
    dims = dict(n_networks=n_networks, n_datapoints=n_datapoints, n_neurons=n_neurons)
    rank = n_neurons - (trained_like_dead_units(n_neurons) if trained_like else 0)
    floor_dims = dict(dims, n_neurons=rank)
    modes = ["whole_process"] + ([] if whole_process else ["warm_client"])
    configs = [("run", dtype, variant)]
    if baseline and (dtype, variant) != BASELINE:
        configs.append(("baseline", *BASELINE))
    records: dict[str, dict[str, list]] = {key: {m: [] for m in modes} for key, *_ in configs}
    floors, rates = [], []
    tmp = tempfile.TemporaryDirectory(dir=workdir)
    root = Path(tmp.name)
    try:
        store_path = root / "bench.zarr"
        write_synthetic_store(store_path, seed=seed, trained_like=trained_like, **dims)
        client = _bench_client(workers, gpu, whole_process)
        try:
            for r in range(rounds):
                for mode in (modes if r % 2 == 0 else modes[::-1]):
                    for key, dt, var in (configs if r % 2 == 0 else configs[::-1]):
                        records[key][mode].append(_timed_compare(
                            store_path, root / f"{mode}-{key}.zarr", metrics=["pwcca"],
                            workers=workers, dtype=dt, gpu=gpu, tile=tile, variant=var,
                            client=client if mode == "warm_client" else None))
                rates.append(_floor_gflops(dtype, workers, gpu))
                floors.append(gemm_floor_seconds(gflops=rates[-1], **floor_dims))
        finally:
            if client is not None:
                client.close()
    finally:
        tmp.cleanup()
    report = {
        "workload": {"networks": n_networks, "datapoints": n_datapoints, "neurons": n_neurons,
                     "dtype": dtype, "workers": workers, "gpu": gpu, "rounds": rounds,
                     "tile": records["run"]["whole_process"][0]["tile"], "metric": "pwcca",
                     "variant": variant, "trained_like": trained_like, "rank": rank},
        "floor": {"definition": FLOOR_DEFINITION, "flops": gemm_floor_flops(**floor_dims),
                  "blas_threads": None if gpu else workers,
                  "matmul_gflops": summarize(rates), "seconds": summarize(floors)},
    }
    for mode in modes:
        report[mode] = _mode_report(records["run"][mode], floors, dims)
    if "baseline" in records:
        report["baseline"] = {"dtype": BASELINE[0], "variant": BASELINE[1]}
        for mode in modes:
            run, base = ([r["seconds"] for r in records[k][mode]] for k in ("run", "baseline"))
            report["baseline"][mode] = {"seconds": summarize(base)}
            report[mode]["ratio_to_baseline"] = summarize([a / b for a, b in zip(run, base)])
    directed = n_networks * (n_networks - 1)
    naive = time_original_pwcca(min_pairs=naive_pairs, min_seconds=naive_seconds,
                                threads=naive_threads, seed=seed, trained_like=trained_like,
                                **dims)
    naive["directed_pairs"] = directed
    naive["all_pairs_seconds_estimated"] = naive["seconds_per_directed_pair"] * directed
    report["naive"] = _with_speedups(naive, naive["all_pairs_seconds_estimated"], report, modes)
    if against is not None:
        peer = run_peer_netrep(python=peer_python, dtype=dtype, threads=workers, rounds=rounds,
                               seed=seed, **dims)
        for way in ("helper", "cached_loop"):
            _with_speedups(peer, peer[f"{way}_seconds"]["median"], report, modes, f"_vs_{way}")
        report["peer"] = peer
    return report


def _with_speedups(part: dict, seconds: float, report: dict, modes: list[str],
                   suffix: str = "") -> dict:
    """``part`` plus cca_scale's speedup over ``seconds`` for each timing mode (medians)."""
    for mode in modes:
        part[f"speedup_{mode}{suffix}"] = seconds / report[mode]["seconds"]["median"]
    return part


def find_peer_python(peer: str, python: str | None) -> str:
    """The Python that runs the peer benchmark: ``python`` if given, else this interpreter when
    it can import the peer. Raises CcaScaleError with how to get it otherwise."""
    from cca_scale.errors import CcaScaleError

    if peer != "netrep":
        raise CcaScaleError(f"The 'against' parameter must be 'netrep'. Got {peer!r} instead.")
    if not PEER_SCRIPT.is_file():
        raise CcaScaleError(f"--against netrep needs {PEER_SCRIPT} (a source checkout of "
                            "cca_scale); it is not there.")
    if python is not None:
        return python
    if importlib.util.find_spec("netrep") is not None:
        return sys.executable
    raise CcaScaleError(
        "netrep is not importable here; make a benchmark venv with `python "
        f"{PEER_SCRIPT} --make-venv /work/.bench-venv --netrep-src DIR` (DIR: netrep's "
        "source, github.com/ahwillia/netrep) and pass --peer-python /work/.bench-venv/bin/python")


def run_peer_netrep(*, python: str, n_networks: int, n_datapoints: int, n_neurons: int,
                    dtype: str = "float64", threads: int = 1, rounds: int = 1,
                    seed: int = 0) -> dict:
    """netrep's all-pairs on the same synthetic networks, run as ``python
    benchmarks/peer_netrep.py`` (a subprocess, so netrep lives only in the benchmark's venv).
    Returns the script's JSON report (see that script)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peer.json"
        cmd = [python, str(PEER_SCRIPT), "--networks", str(n_networks), "--datapoints",
               str(n_datapoints), "--neurons", str(n_neurons), "--dtype", dtype,
               "--threads", str(threads), "--rounds", str(rounds), "--seed", str(seed),
               "--json", str(out)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        return json.loads(out.read_text())


def bench_metrics(metrics: list[str], *, n_networks: int = 32, n_datapoints: int = 10_000,
                  n_neurons: int = 128, workers: int | None = None, tile: int | None = None,
                  dtype: str = "float64", gpu: bool = False, repeats: int = 3,
                  workdir: str | None = None, seed: int = 0,
                  whole_process: bool = False, trained_like: bool = False) -> dict:
    """Several metrics in one run (``--metric a,b,c``) against the first metric alone, on the
    same synthetic store, alternated, ``repeats`` times each: the engine on one warm local
    cluster, or with ``whole_process`` ``cca-scale compare`` processes.

    Reports the minimum over the repeats of the whole comparison and of the pair phase (first
    tile started to last tile finished, from the output's timings), and their ratios.
    """
    from cca_scale.runtime import local_worker_count

    workers = workers or local_worker_count()
    tmp = tempfile.TemporaryDirectory(dir=workdir)
    root = Path(tmp.name)
    try:
        store_path = root / "bench.zarr"
        write_synthetic_store(store_path, n_networks=n_networks, n_datapoints=n_datapoints,
                              n_neurons=n_neurons, seed=seed, trained_like=trained_like)
        runs = {"one": metrics[:1], "many": list(metrics)}
        best = {k: [float("inf"), float("inf")] for k in runs}
        client = _bench_client(workers, gpu, whole_process)
        try:
            for _ in range(repeats):
                for key, names in runs.items():
                    out = root / f"{key}.zarr"
                    run = _timed_compare(store_path, out, metrics=names, workers=workers,
                                         dtype=dtype, gpu=gpu, tile=tile, client=client)
                    elapsed, phase = run["seconds"], run["timings"]["pair_phase_seconds"]
                    best[key] = [min(best[key][0], elapsed), min(best[key][1], phase)]
        finally:
            if client is not None:
                client.close()
        return {
            "shape": f"N={n_networks} networks x {n_datapoints} datapoints x {n_neurons} "
                     f"neurons, {dtype}, {workers} worker(s){' on GPU' if gpu else ''}, "
                     f"min of {repeats}{', trained-like layers' if trained_like else ''}",
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
