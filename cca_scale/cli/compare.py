"""``cca-scale compare``: all-pairs distances of layers across a store's networks."""

from __future__ import annotations

import argparse
import sys

from cca_scale.cli.common import (
    SELECTION_HELP,
    TileProgress,
    add_metric_argument,
    finite_float,
    parse_selection,
    parse_step,
    parse_timestep,
    positive_int,
    selection_epilog,
)

EXAMPLES = """\
examples:
  cca-scale compare acts.zarr --layer fc2 --out fc2.zarr
  cca-scale compare acts.zarr --layer fc2 --out fc2_lr.zarr --networks "lr == 0.01"
  cca-scale compare acts.zarr --layer fc2 --out dyn.zarr --networks net0 --step all \\
      --against net0 --against-step last            # every checkpoint vs the final one
  cca-scale compare acts.zarr --layer fc1 --against-layer fc2 --out fc1_vs_fc2.zarr
  cca-scale compare acts.zarr --layer fc2 --out fc2.zarr --scheduler tcp://10.0.0.5:8786
  cca-scale compare acts.zarr --layer conv3 --out conv3.zarr --gpu --dtype float32
  cca-scale compare acts.zarr --layer fc1,fc2,fc3 --metric pwcca,cka,mean_cca --out all.zarr
      # one pass: a (N*3) x (N*3) matrix labelled network/layer, per metric in all.zarr/<metric>/

Rerunning the same command resumes an interrupted run, and after networks were added to the
store computes only the new pairs ("resuming: K of T tiles already done"). The matrix is
directional: D[i, j] = d(row i, column j) with row i's projection weights.
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare", help="all-pairs PWCCA (or other) distances of a layer across networks",
        description=__doc__.split("\n")[0].strip("`") + "\n\n" + EXAMPLES + "\n"
        + selection_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store",
                   help="activation store (local path or fsspec URL, e.g. s3://bucket/acts.zarr)")
    p.add_argument("--layer", required=True,
                   help="layer to compare; or a comma-separated list (fc1,fc2) or 'all': every "
                        "(network, layer) item against every other, labelled network/layer")
    p.add_argument("--out", required=True,
                   help="output Zarr group for the distance matrix: a new path, an empty "
                        "folder, or an output of cca-scale compare (resumed). Anything else "
                        "(other files, an activation store, '.', a symlink, a device, a path "
                        "overlapping STORE) is refused and left untouched")
    add_metric_argument(p, many=True)
    p.add_argument("--variant", default="paper", choices=["paper", "svcca"],
                   help="PWCCA as the paper defines it (default) or as google/svcca computes it")
    p.add_argument("--networks", metavar="QUERY", help=f"rows (default: all): {SELECTION_HELP}")
    p.add_argument("--against", metavar="QUERY",
                   help=f"columns, for a rectangular comparison (default: same as rows): "
                        f"{SELECTION_HELP}")
    p.add_argument("--step", help="training step of the rows: S, 'last' or 'all'")
    p.add_argument("--against-step", default="same", help="training step of the columns")
    p.add_argument("--against-layer", help="compare --layer (rows) against this layer (columns)")
    p.add_argument("--timestep", help="sequence timestep of recurrent layers: T or 'all'")
    p.add_argument("--keep", type=float, default=0.99,
                   help="svcca metric: variance fraction in (0, 1), or a number of directions")
    p.add_argument("--epsilon", type=finite_float, default=1e-10,
                   help="svcca variant's variance cut-off and ridge (finite, >= 0)")
    p.add_argument("--allow-underdetermined", action="store_true",
                   help="accept layers with n_datapoints <= n_neurons for the CCA metrics, where "
                        "every canonical correlation tends to 1 (refused by default)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                   help="precision of the cross-product GEMMs (float32: about twice as fast, "
                        "agrees to ~1e-6; bases and pair kernels stay float64)")
    where = p.add_argument_group("where it runs (default: a local cluster, a thread per core)")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="use a running Dask scheduler, e.g. tcp://host:8786 or tls://host:8786")
    where.add_argument("--cluster", choices=["local", "local-gpu", "slurm", "kubernetes"],
                       help="start a cluster with cca_scale.launch() (see deploy/README.md)")
    where.add_argument("--workers", type=positive_int,
                       help="parallel tasks of the local cluster: its threads (default: cores)")
    where.add_argument("--wait-workers", type=positive_int, metavar="N",
                       help="with --scheduler/--cluster: wait until N workers have joined")
    where.add_argument("--gpu", action="store_true",
                       help="compute with CuPy on workers declaring GPU=1 (local: dask-cuda)")
    p.add_argument("--tile", type=positive_int,
                   help="networks per tile side (default: fits memory; a tile too large for a "
                        "worker's memory is refused)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing compare output computed with other "
                        "parameters; never replaces data cca-scale did not write")
    p.add_argument("--dry-run", action="store_true",
                   help="show what would be computed (tiles left, resume state) and stop")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar, and no dashboard address (printed once a run has "
                        "many tiles or takes over CCA_SCALE_DASHBOARD_AFTER=5 seconds)")
    p.set_defaults(run=run)


def _keep(value: float):
    return int(value) if value >= 1 and float(value).is_integer() else value


def run(args) -> int:
    from cca_scale.engine.compare import plan, submit

    kwargs = dict(
        layer=args.layer, out=args.out, metric=args.metric, variant=args.variant,
        networks=parse_selection(args.networks), against=parse_selection(args.against),
        step=parse_step(args.step),
        against_step="same" if args.against_step == "same" else parse_step(args.against_step),
        against_layer=args.against_layer, timestep=parse_timestep(args.timestep), dtype=args.dtype,
        tile=args.tile, keep=_keep(args.keep), epsilon=args.epsilon,
        allow_underdetermined=args.allow_underdetermined, overwrite=args.overwrite)
    if args.dry_run:
        info = plan(args.store, **kwargs)
        for key, value in info.items():
            print(f"{key}: {value}")
        return 0
    from cca_scale.cli.dashboard import DashboardNotice, client_dashboard
    from cca_scale.engine.request import ComparisonRequest
    from cca_scale.runtime.client import command_line_client

    # Every option is checked before --cluster/--wait-workers start anything.
    ComparisonRequest.build(**{k: v for k, v in kwargs.items() if k != "out"})
    client = command_line_client(cluster=args.cluster, scheduler=args.scheduler,
                                 n_workers=args.workers, wait_workers=args.wait_workers,
                                 gpu=args.gpu)
    handle = submit(args.store, client=client, scheduler=args.scheduler, n_workers=args.workers,
                    backend="cupy" if args.gpu else "auto", **kwargs)
    print(handle.resume.line(), file=sys.stderr, flush=True)
    progress = TileProgress(handle.resume.total, handle.resume.done, quiet=args.quiet)
    notice = DashboardNotice(client_dashboard(handle.client), quiet=args.quiet,
                             tiles_left=handle.resume.total - handle.resume.done)
    try:
        summary = handle.wait(on_tile=progress)  # the matrix stays in the output, unread
    finally:
        notice.cancel()
        progress.close()
        if client is not None:
            client.close()  # also closes a cluster launch() started
    for line in summary.lines():
        print(line, file=sys.stderr)
    pairs, elapsed = progress.pairs, progress.elapsed
    rate = f", {pairs / elapsed:,.0f} pairs/s" if pairs else ""
    print(f"wrote {args.out}: {handle.shape[0]} x {handle.shape[1]} {args.metric} distances "
          f"({pairs} pairs computed in {elapsed:.1f} s{rate})")
    return 0
