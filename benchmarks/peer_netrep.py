#!/usr/bin/env python
"""netrep's all-pairs CCA distance on cca_scale's synthetic networks, timed.

Peer benchmark for ``cca-scale bench --against netrep``. netrep (github.com/ahwillia/netrep) is
not on PyPI and is never a dependency of cca_scale: it lives only in a benchmark venv, made by
``--make-venv VENV --netrep-src DIR`` (``pip install --no-deps DIR`` plus numpy, scipy,
scikit-learn, tqdm and threadpoolctl).

The distance: ``netrep.metrics.LinearMetric(alpha=0)`` (alpha 0: any invertible linear map, i.e.
CCA), centred, angular score: ``arccos`` of the mean canonical correlation, symmetric, so
N(N-1)/2 unordered pairs. Two timings, each including the per-network fits (``partial_fit``:
centre and whiten, once per network):

- ``helper``: netrep's own ``netrep.multiset.pairwise_distances(metric, data,
  enable_caching=True)``. It caches the per-network whitening, but its ``score`` maps both whole
  networks again per pair ((X - mean) @ W, 2 * m * d^2 flops per side) before the angle.
- ``cached_loop``: the same distance with all m-sized work per pair reduced to one GEMM: with
  ``Xw``, ``Yw`` the cached whitened networks and ``s`` the singular values of ``Xw^T Yw``,
  netrep's score is ``arccos(sum(s) / (|Xw|_F |Yw|_F))`` (its transforms are ``Xw U`` and
  ``Yw V``). The fastest fair use of netrep's fits; the report checks it equals ``helper``.

Networks: ``synthetic_activations`` of cca_scale/bench.py (loaded from this checkout by path,
so cca_scale need not be installed here), cast to ``--dtype``. BLAS threads: ``--threads``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_networks(n_networks: int, n_datapoints: int, n_neurons: int, *, seed: int, dtype):
    """The synthetic networks cca-scale bench stores, as in-memory arrays (m x d each)."""
    spec = importlib.util.spec_from_file_location("_cca_scale_bench", ROOT / "cca_scale/bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return [a.astype(dtype) for _, a in
            bench.synthetic_activations(n_networks, n_datapoints, n_neurons, seed=seed)]


def helper_all_pairs(data):
    """netrep's ``multiset.pairwise_distances`` with cached per-network fits: N x N."""
    from netrep.metrics import LinearMetric
    from netrep.multiset import pairwise_distances

    metric = LinearMetric(alpha=0.0, center_columns=True, score_method="angular")
    return pairwise_distances(metric, data, verbose=False, enable_caching=True)


def cached_loop_all_pairs(data):
    """The same distances from netrep's cached fits with one GEMM and one SVD per pair."""
    import numpy as np
    from netrep.metrics import LinearMetric

    metric = LinearMetric(alpha=0.0, center_columns=True, score_method="angular")
    whitened = [metric.partial_fit(x)[1] for x in data]
    norms = [np.linalg.norm(w) for w in whitened]
    n = len(data)
    dist = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            s = np.linalg.svd(whitened[i].T @ whitened[j], compute_uv=False)
            dist[i, j] = dist[j, i] = np.arccos(np.clip(s.sum() / (norms[i] * norms[j]), -1, 1))
    return dist


def summarize(values) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def bench(*, networks: int, datapoints: int, neurons: int, dtype: str, threads: int,
          rounds: int, seed: int) -> dict:
    """Both timings, alternated, ``rounds`` times; returns the JSON report."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    data = load_networks(networks, datapoints, neurons, seed=seed, dtype=np.dtype(dtype))
    times = {"helper": [], "cached_loop": []}
    results = {}
    with threadpool_limits(threads):
        helper_all_pairs(data[:2])  # untimed warm-up: imports, BLAS threads, first-touch memory
        cached_loop_all_pairs(data[:2])
        for r in range(rounds):
            for name in (("helper", "cached_loop") if r % 2 == 0 else
                         ("cached_loop", "helper")):
                fn = helper_all_pairs if name == "helper" else cached_loop_all_pairs
                t = time.perf_counter()
                results[name] = fn(data)
                times[name].append(time.perf_counter() - t)
    best = min(times, key=lambda k: statistics.median(times[k]))
    return {
        "name": "netrep",
        "version": _netrep_version(),
        "distance": "LinearMetric(alpha=0, center_columns=True, score_method='angular'): "
                    "arccos of the mean canonical correlation (symmetric)",
        "unordered_pairs": networks * (networks - 1) // 2,
        "dtype": dtype, "blas_threads": threads, "rounds": rounds,
        "helper_seconds": summarize(times["helper"]),
        "cached_loop_seconds": summarize(times["cached_loop"]),
        "max_abs_difference_helper_vs_cached_loop":
            float(np.max(np.abs(results["helper"] - results["cached_loop"]))),
        "fastest": best,
        "all_pairs_seconds": summarize(times[best]),
    }


def _netrep_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("netrep")
    except PackageNotFoundError:
        return "unknown"


def make_venv(path: str, netrep_src: str) -> None:
    """A venv at ``path`` with netrep from its source (no deps) and what netrep imports."""
    venv.create(path, with_pip=True)
    pip = [str(Path(path) / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["numpy", "scipy", "scikit-learn", "tqdm", "threadpoolctl"], check=True)
    subprocess.run(pip + ["--no-deps", netrep_src], check=True)
    print(f"made {path}: pass --peer-python {Path(path) / 'bin' / 'python'} to cca-scale bench")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks", type=int, default=32)
    p.add_argument("--datapoints", type=int, default=10_000)
    p.add_argument("--neurons", type=int, default=128)
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the report here (default: print it)")
    p.add_argument("--make-venv", metavar="VENV", help="only make a benchmark venv, then exit")
    p.add_argument("--netrep-src", metavar="DIR", help="netrep's source dir (with --make-venv)")
    args = p.parse_args(argv)
    if args.make_venv:
        if not args.netrep_src:
            p.error("--make-venv needs --netrep-src DIR (a copy of github.com/ahwillia/netrep)")
        make_venv(args.make_venv, args.netrep_src)
        return 0
    report = bench(networks=args.networks, datapoints=args.datapoints, neurons=args.neurons,
                   dtype=args.dtype, threads=args.threads, rounds=args.rounds, seed=args.seed)
    text = json.dumps(report, indent=2)
    if args.json:
        Path(args.json).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
