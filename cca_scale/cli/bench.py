"""``cca-scale bench``: time the engine against the GEMM floor, the original method and netrep."""

from __future__ import annotations

import argparse
import json

from cca_scale.cli.common import positive_int

DESCRIPTION = """\
Time all-pairs PWCCA on a synthetic store (N networks x m datapoints x d neurons, float32 in
the store) and put the times next to what they cannot beat.

Each of --rounds rounds times (order alternated between rounds):
  whole process   a whole 'cca-scale compare' process: imports, cluster start, engine, teardown
  warm client     the engine alone, in this process, on a local cluster started once
then measures this machine's matmul rate again for the GEMM floor.

The GEMM floor is the time a SYRK of all networks' stacked orthonormal coordinates (an
m x (N*d) matrix) takes at this machine's matmul rate: m * (N*d)^2 flops divided by the matmul
GFLOP/s measured in the same run with as many BLAS threads as workers, in the benchmark's dtype.
That product holds every pair's cross product: the arithmetic exact all-pairs CCA cannot avoid.

Figures (min / median / max over the rounds; the machine may be shared: compare minimums):
  ratio to floor     each time over its round's floor (1.0 would be the GEMM alone)
  ratio to baseline  with --dtype float32 or --variant svcca: each time over that of the float64
                     'paper' run beside it in the same round and mode (times under "baseline")
  phase shares       fractions of the summed tile-task seconds: prepare (if recorded), io (read
                     and decode), project (to orthonormal coordinates), gemm (cross products),
                     pairs (per-pair kernels), write
  bytes read         activation bytes read from the store per run, and that as passes over the
                     data: bytes / (N * m * d * 4); 1.0 means each network read once
  naive              the original implementation's method (google/svcca compute_pwcca as
                     cca_scale.core.pairs.original_pwcca_similarity) on sampled directed pairs
                     (>= --naive-pairs and --naive-seconds), extrapolated to all N*(N-1)
  peer (--against netrep)  netrep's all-pairs on the same networks (benchmarks/peer_netrep.py,
                     --peer-python): its own pairwise_distances with cached fits ("helper"),
                     and a loop of one GEMM and one SVD per pair over its fits ("cached loop")
"""

EXAMPLES = """\
examples:
  cca-scale bench --networks 32 --datapoints 10000 --neurons 128            # 3 rounds
  cca-scale bench --networks 32 --datapoints 10000 --neurons 128 --against netrep \\
      --peer-python /work/.bench-venv/bin/python --json bench.json
  cca-scale bench --networks 16 --datapoints 50000 --neurons 256 --whole-process
  cca-scale bench --networks 16 --datapoints 50000 --neurons 256 --dtype float32  # vs float64
  cca-scale bench --variant svcca                         # vs the paper variant, per round
  cca-scale bench --networks 16 --datapoints 50000 --neurons 256 --trained-like  # dead units
  cca-scale bench --core                                  # one pair, one thread
  cca-scale bench --gpu --dtype float32 --networks 64 --datapoints 50000 --neurons 512
  cca-scale bench --metrics pwcca,mean_cca,cka --compare-single   # one pass vs pwcca alone
netrep is never a dependency: see benchmarks/README.md for its venv.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="time the engine against the GEMM floor and the naive method",
                       description=DESCRIPTION + "\n" + EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks", type=positive_int, default=32, help="N (default 32)")
    p.add_argument("--datapoints", type=positive_int, default=10_000, help="m (default 10000)")
    p.add_argument("--neurons", type=positive_int, default=128, help="d (default 128)")
    p.add_argument("--workers", type=positive_int,
                   help="local workers, and BLAS threads of the floor and peer timings "
                        "(default: cores)")
    p.add_argument("--tile", type=positive_int)
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--variant", choices=["paper", "svcca"], default="paper", help="PWCCA's")
    p.add_argument("--trained-like", action="store_true",
                   help="layers that look trained: 5%% dead units in every network, units "
                        "scaled over 3 decades in every other one (condition ~1e3-1e4)")
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="with --dtype float32 or --variant svcca: do not also time float64 "
                        "'paper' runs beside them (halves the time; no ratio to baseline)")
    p.add_argument("--gpu", action="store_true",
                   help="run the engine on local GPUs (dask-cuda); the floor uses the GPU's rate")
    p.add_argument("--rounds", type=positive_int, default=3, help="rounds (default 3)")
    p.add_argument("--whole-process", action="store_true",
                   help="time only whole 'cca-scale compare' processes (no warm client)")
    p.add_argument("--naive-pairs", type=positive_int, default=5,
                   help="least directed pairs timed for the original's method (default 5)")
    p.add_argument("--naive-seconds", type=float, default=3.0,
                   help="least seconds spent timing the original's method (default 3)")
    p.add_argument("--naive-threads", type=positive_int, default=1,
                   help="BLAS threads of the original's method (default 1: small LAPACK calls)")
    p.add_argument("--against", choices=["netrep"], help="also time this peer library")
    p.add_argument("--peer-python", metavar="PATH",
                   help="the Python that imports the peer (default: this one, if it can)")
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON here")
    p.add_argument("--core", action="store_true",
                   help="only: per-pair time of the prepared path vs the original's (1 thread)")
    p.add_argument("--metrics", metavar="NAME[,NAME...]",
                   help="with --compare-single: the metrics computed together in one run")
    p.add_argument("--compare-single", action="store_true",
                   help="only: time --metrics in one run against the first metric alone, on the "
                        "same store (alternated, min of --repeats)")
    p.add_argument("--repeats", type=positive_int, default=3,
                   help="runs of each side for --compare-single (the minimum is shown)")
    p.add_argument("--workdir", help="where the synthetic store goes (default: a temp dir)")
    p.set_defaults(run=run)


def _shown(value) -> str:
    if isinstance(value, dict) and set(value) == {"min", "median", "max"}:
        return " / ".join(_shown(value[k]) for k in ("min", "median", "max"))
    if isinstance(value, float):
        return f"{value:,.4g}"
    return str(value)


def _lines(report: dict, indent: str = "  "):
    for key, value in report.items():
        if isinstance(value, dict) and set(value) != {"min", "median", "max"}:
            yield f"{indent}{key.replace('_', ' ')}:"
            yield from _lines(value, indent + "  ")
        else:
            yield f"{indent}{key.replace('_', ' '):<{46 - len(indent)}} {_shown(value)}"


def _show(title: str, report: dict) -> None:
    print(title)
    for line in _lines(report):
        print(line)


def run(args) -> int:
    from cca_scale.bench import bench_core, bench_engine, bench_metrics

    if args.core:
        report = bench_core(n_datapoints=args.datapoints, n_neurons=args.neurons,
                            trained_like=args.trained_like)
        title = "core: one pair"
    elif args.compare_single:
        from cca_scale.engine.request import check_metrics

        metrics = check_metrics(args.metrics or "pwcca,mean_cca,cka")
        metrics = list(metrics) if isinstance(metrics, tuple) else [metrics]
        title = f"engine: {','.join(metrics)} in one run vs {metrics[0]} alone"
        report = bench_metrics(metrics, n_networks=args.networks, n_datapoints=args.datapoints,
                               n_neurons=args.neurons, workers=args.workers, tile=args.tile,
                               dtype=args.dtype, gpu=args.gpu, repeats=args.repeats,
                               workdir=args.workdir, whole_process=args.whole_process,
                               trained_like=args.trained_like)
    else:
        report = bench_engine(n_networks=args.networks, n_datapoints=args.datapoints,
                              n_neurons=args.neurons, workers=args.workers, tile=args.tile,
                              dtype=args.dtype, gpu=args.gpu, rounds=args.rounds,
                              whole_process=args.whole_process, naive_pairs=args.naive_pairs,
                              naive_seconds=args.naive_seconds,
                              naive_threads=args.naive_threads, against=args.against,
                              peer_python=args.peer_python, workdir=args.workdir,
                              variant=args.variant, baseline=args.baseline,
                              trained_like=args.trained_like)
        title = (f"engine: all-pairs pwcca, {args.rounds} round(s), min / median / max "
                 "(a shared machine is noisy: compare minimums)")
    _show(title, report)
    if args.json:
        from cca_scale._json import json_safe

        with open(args.json, "w") as f:
            json.dump(json_safe(report), f, indent=2)
        print(f"wrote {args.json}")
    return 0
