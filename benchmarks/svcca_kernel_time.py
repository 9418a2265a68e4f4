"""Per-pair time of the pwcca kernel, paper variant against the svcca variant, one BLAS thread.

    .venv/bin/python benchmarks/svcca_kernel_time.py [--d 64 128 256] [--m 10000] [--wall]

Synthetic ReLU layers (``cca_scale.bench.synthetic_activations``), bases from ``prepare``, the
cross products and the svcca variant's per-layer ``SvccaSide`` computed beforehand (as the
engine does), so only the kernels are timed: three pairs per round, rounds interleaved, the
minimum per pair kept. CPU time of the calling thread by default (robust on a shared machine);
``--wall`` for wall-clock time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from cca_scale.bench import synthetic_activations
from cca_scale.core import prepare
from cca_scale.core.kernels import SvccaSide, pwcca_kernel

PAIRS = ((0, 1), (1, 2), (0, 2))


def time_kernels(d: int, m: int, rounds: int, clock) -> dict:
    """Minimum per-pair seconds of ``pwcca_kernel`` for each variant, and of ``SvccaSide.of``."""
    nets = [a.astype(np.float64) for _, a in synthetic_activations(3, m, d, seed=0)]
    bases = [prepare(x) for x in nets]
    sides = [SvccaSide.of(b) for b in bases]
    cross = {p: bases[p[0]].q.T @ bases[p[1]].q for p in PAIRS}

    def run(variant):
        t = clock()
        for i, j in PAIRS:
            pwcca_kernel(cross[i, j], bases[i], bases[j], variant=variant,
                         sides=(sides[i], sides[j]) if variant == "svcca" else None)
        return (clock() - t) / len(PAIRS)

    run("svcca")  # first call imports scipy.linalg.lapack
    best = {"paper": np.inf, "svcca": np.inf, "side": np.inf}
    for _ in range(rounds):
        for variant in ("paper", "svcca"):
            best[variant] = min(best[variant], run(variant))
        t = clock()
        SvccaSide.of(bases[0])
        best["side"] = min(best["side"], clock() - t)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, nargs="*", default=[64, 128, 256])
    parser.add_argument("--m", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--wall", action="store_true")
    args = parser.parse_args(argv)
    clock = time.perf_counter if args.wall else time.thread_time
    print("| d | paper kernel | svcca kernel | ratio | SvccaSide.of (per layer) |")
    print("|---|---|---|---|---|")
    with threadpool_limits(1):
        for d in args.d:
            b = time_kernels(d, args.m, args.rounds if d < 256 else max(5, args.rounds // 3),
                             clock)
            print(f"| {d} | {b['paper'] * 1e3:.2f} ms | {b['svcca'] * 1e3:.2f} ms | "
                  f"{b['svcca'] / b['paper']:.2f}x | {b['side'] * 1e3:.2f} ms |", flush=True)


if __name__ == "__main__":
    main()
