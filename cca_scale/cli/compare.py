"""``cca-scale compare``: all-pairs distances of one layer across a store's networks."""

from __future__ import annotations

import argparse
import sys
import time

from cca_scale.cli.common import parse_selection, parse_step, show_progress

EXAMPLES = """\
examples:
  cca-scale compare acts.zarr --layer fc2 --out fc2.zarr
  cca-scale compare acts.zarr --layer fc2 --out fc2_lr.zarr --networks "lr == 0.01"
  cca-scale compare acts.zarr --layer fc2 --out dyn.zarr --networks net0 --step all \\
      --against net0 --against-step last            # every checkpoint vs the final one
  cca-scale compare acts.zarr --layer fc1 --against-layer fc2 --out fc1_vs_fc2.zarr
  cca-scale compare acts.zarr --layer fc2 --out fc2.zarr --scheduler tcp://10.0.0.5:8786
  cca-scale compare acts.zarr --layer conv3 --out conv3.zarr --gpu --dtype float32

Rerunning the same command resumes an interrupted run, and after networks were added to the
store computes only the new pairs ("resuming: K of T tiles already done"). The matrix is
directional: D[i, j] = d(row i, column j) with row i's projection weights.
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare", help="all-pairs PWCCA (or other) distances of a layer across networks",
        description=__doc__.split("\n")[0].strip("`") + "\n\n" + EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store",
                   help="activation store (local path or fsspec URL, e.g. s3://bucket/acts.zarr)")
    p.add_argument("--layer", required=True, help="layer to compare")
    p.add_argument("--out", required=True,
                   help="output Zarr group for the distance matrix: a new path, an empty "
                        "folder, or an output of cca-scale compare (resumed). Anything else "
                        "(other files, an activation store, '.', a symlink, a device, a path "
                        "overlapping STORE) is refused and left untouched")
    p.add_argument("--metric", default="pwcca",
                   choices=["pwcca", "mean_cca", "svcca", "cka", "cosine", "euclidean"],
                   help="distance (default: pwcca). cosine/euclidean are the paper's baselines, "
                        "cka linear CKA")
    p.add_argument("--variant", default="paper", choices=["paper", "svcca"],
                   help="PWCCA as the paper defines it (default) or as google/svcca computes it")
    p.add_argument("--networks", metavar="QUERY",
                   help="rows: comma-separated ids, or an attribute query like \"lr == 0.01\"")
    p.add_argument("--against", metavar="QUERY",
                   help="columns, for a rectangular comparison (default: same as rows)")
    p.add_argument("--step", help="training step of the rows: S, 'last' or 'all'")
    p.add_argument("--against-step", default="same", help="training step of the columns")
    p.add_argument("--against-layer", help="compare --layer (rows) against this layer (columns)")
    p.add_argument("--timestep", help="sequence timestep of recurrent layers: T or 'all'")
    p.add_argument("--keep", type=float, default=0.99,
                   help="svcca metric: variance fraction in (0, 1), or a number of directions")
    p.add_argument("--epsilon", type=float, default=1e-10, help="svcca variant's epsilon")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                   help="working precision (float32 agrees to ~1e-4; faster on GPUs)")
    where = p.add_argument_group("where it runs (default: a local cluster, one worker per core)")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="use a running Dask scheduler, e.g. tcp://host:8786 or tls://host:8786")
    where.add_argument("--cluster", choices=["local", "local-gpu", "slurm", "kubernetes"],
                       help="start a cluster with cca_scale.launch() (see deploy/README.md)")
    where.add_argument("--workers", type=int, help="local worker processes (default: cores)")
    where.add_argument("--wait-workers", type=int, metavar="N",
                       help="with --scheduler/--cluster: wait until N workers have joined")
    where.add_argument("--gpu", action="store_true",
                       help="compute with CuPy on workers declaring GPU=1 (local: dask-cuda)")
    p.add_argument("--tile", type=int, help="networks per tile side (default: fits memory)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing compare output computed with other "
                        "parameters; never replaces data cca-scale did not write")
    p.add_argument("--dry-run", action="store_true",
                   help="show what would be computed (tiles left, resume state) and stop")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _keep(value: float):
    return int(value) if value >= 1 and float(value).is_integer() else value


def run(args) -> int:
    from cca_scale.engine.compare import plan, submit

    timestep = None if args.timestep is None else (
        "all" if args.timestep == "all" else int(args.timestep))
    kwargs = dict(
        layer=args.layer, out=args.out, metric=args.metric, variant=args.variant,
        networks=parse_selection(args.networks), against=parse_selection(args.against),
        step=parse_step(args.step),
        against_step="same" if args.against_step == "same" else parse_step(args.against_step),
        against_layer=args.against_layer, timestep=timestep, dtype=args.dtype, tile=args.tile,
        keep=_keep(args.keep), epsilon=args.epsilon, overwrite=args.overwrite)
    if args.dry_run:
        info = plan(args.store, **kwargs)
        for key, value in info.items():
            print(f"{key}: {value}")
        return 0
    client = None
    if args.cluster:
        from cca_scale.deploy import launch

        client = launch(args.cluster, **({"n_workers": args.workers}
                                         if args.workers and args.cluster == "local" else {}))
    if args.wait_workers:
        from cca_scale.engine.cluster import open_client

        client, _ = open_client(client=client, scheduler=args.scheduler,
                                n_workers=args.workers or args.wait_workers, gpu=args.gpu)
        client.wait_for_workers(args.wait_workers, timeout=600)
    started = time.perf_counter()
    handle = submit(args.store, client=client, scheduler=args.scheduler, n_workers=args.workers,
                    backend="cupy" if args.gpu else "auto", **kwargs)
    print(handle.resume.line(), file=sys.stderr, flush=True)
    bar = None
    if show_progress(args.quiet):
        from tqdm import tqdm

        bar = tqdm(total=handle.resume.total, initial=handle.resume.done, unit="tile",
                   file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
    pairs = 0

    def on_tile(summary):
        nonlocal pairs
        pairs += summary.pairs
        if bar is not None:
            elapsed = time.perf_counter() - started
            bar.set_postfix_str(f"{pairs / max(elapsed, 1e-9):,.0f} pairs/s", refresh=False)
            bar.update(1)

    try:
        matrix = handle.result(on_tile=on_tile)
    finally:
        if bar is not None:
            bar.close()
        if client is not None:
            client.close()  # also closes a cluster launch() started
    elapsed = time.perf_counter() - started
    rate = f", {pairs / elapsed:,.0f} pairs/s" if pairs else ""
    print(f"wrote {args.out}: {matrix.shape[0]} x {matrix.shape[1]} {args.metric} distances "
          f"({pairs} pairs computed in {elapsed:.1f} s{rate})")
    return 0
