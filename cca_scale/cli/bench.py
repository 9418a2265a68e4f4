"""``cca-scale bench``: measure the engine against the naive method and the machine's matmul."""

from __future__ import annotations

import argparse

from cca_scale.cli.common import positive_int

EXAMPLES = """\
examples:
  cca-scale bench --core                                  # one pair, one thread
  cca-scale bench --networks 32 --datapoints 10000 --neurons 128
  cca-scale bench --networks 16 --datapoints 50000 --neurons 256
  cca-scale bench --gpu --dtype float32 --networks 64 --datapoints 50000 --neurons 512
  cca-scale bench --metrics pwcca,mean_cca,cka --compare-single   # one pass vs pwcca alone

The naive baseline is the original implementation's method (covariances, inverse square roots and
an SVD for every directed pair), timed on a few sampled pairs in the same run and extrapolated.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark against the naive method and matmul peak",
                       description=__doc__.split(":", 1)[1].strip() + "\n\n" + EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--core", action="store_true",
                   help="per-pair time of the prepared path vs the naive one (1 thread)")
    p.add_argument("--networks", type=positive_int, default=32)
    p.add_argument("--datapoints", type=positive_int, default=10_000)
    p.add_argument("--neurons", type=positive_int, default=128)
    p.add_argument("--workers", type=positive_int, help="local workers (default: cores)")
    p.add_argument("--tile", type=positive_int)
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--gpu", action="store_true", help="run the engine on local GPUs (dask-cuda)")
    p.add_argument("--naive-pairs", type=positive_int, default=3,
                   help="pairs timed for the naive method")
    p.add_argument("--metrics", metavar="NAME[,NAME...]",
                   help="with --compare-single: the metrics computed together in one run")
    p.add_argument("--compare-single", action="store_true",
                   help="time --metrics in one run against the first metric alone, on the same "
                        "store (processes alternated, min of --repeats)")
    p.add_argument("--repeats", type=positive_int, default=3,
                   help="runs of each side for --compare-single (the minimum is shown)")
    p.add_argument("--whole-process", action="store_true",
                   help="time whole 'cca-scale compare' processes (imports, cluster start and "
                        "teardown included) instead of the engine on a warm local cluster")
    p.add_argument("--workdir", help="where the synthetic store goes (default: a temp dir)")
    p.set_defaults(run=run)


def _show(title: str, report: dict) -> None:
    print(title)
    for key, value in report.items():
        shown = f"{value:,.4g}" if isinstance(value, float) else value
        print(f"  {key.replace('_', ' '):<44} {shown}")


def run(args) -> int:
    from cca_scale.bench import bench_core, bench_engine, bench_metrics

    if args.core:
        _show("core: one pair", bench_core(n_datapoints=args.datapoints, n_neurons=args.neurons))
        return 0
    if args.compare_single:
        from cca_scale.engine.request import check_metrics

        metrics = check_metrics(args.metrics or "pwcca,mean_cca,cka")
        metrics = list(metrics) if isinstance(metrics, tuple) else [metrics]
        _show(f"engine: {','.join(metrics)} in one run vs {metrics[0]} alone",
              bench_metrics(metrics, n_networks=args.networks, n_datapoints=args.datapoints,
                            n_neurons=args.neurons, workers=args.workers, tile=args.tile,
                            dtype=args.dtype, gpu=args.gpu, repeats=args.repeats,
                            workdir=args.workdir, whole_process=args.whole_process))
        return 0
    timed = "whole process" if args.whole_process else "in process, warm cluster"
    _show(f"engine: one comparison ({timed})",
          bench_engine(n_networks=args.networks, n_datapoints=args.datapoints,
                       n_neurons=args.neurons, workers=args.workers, tile=args.tile,
                       dtype=args.dtype, gpu=args.gpu, naive_pairs=args.naive_pairs,
                       workdir=args.workdir, whole_process=args.whole_process))
    return 0
