"""``cca-scale ingest``: put activations saved as .npy/.npz files into an activation store."""

from __future__ import annotations

import argparse
import sys

from cca_scale.errors import ActivationError, StoreError

DESCRIPTION = """\
Add activations saved with numpy.save (.npy, streamed from disk) or numpy.savez (.npz) to an
activation store, creating the store if needed. Each file is one layer of one network, shape
(n_datapoints, n_neurons), datapoints in the same order in every file. Values are checked (NaN,
Inf, shape, dtype, datapoint count) before anything is written; a refused file changes nothing.

One file:
  cca-scale ingest acts.zarr net0 fc1 net0_fc1.npy --attr lr=0.01 --attr seed=0
  cca-scale ingest acts.zarr net0 fc1 net0_fc1_step500.npy --step 500
  cca-scale ingest acts.zarr net0 conv2 net0_conv2.npy --conv mean     # (n, h, w, c) files
  cca-scale ingest s3://bucket/acts.zarr net0 fc1 fc1.npy --storage-option anon=false

A manifest (CSV with columns network,layer,path[,step] and any attribute columns):
  cca-scale ingest acts.zarr --manifest sweep.csv
  where sweep.csv is
    network,layer,path,lr,seed
    net0,fc1,net0/fc1.npy,0.01,0
    net0,fc2,net0/fc2.npy,0.01,0
    net1,fc1,net1/fc1.npy,0.1,1
  Relative paths are relative to the manifest. Attribute columns are numbers when every value
  is one. A manifest is ingested all or nothing.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "ingest", help="add activations from .npy/.npz files or a CSV manifest to a store",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("store", metavar="STORE",
                        help="activation store: a local path (acts.zarr) or an fsspec URL "
                             "(s3://bucket/acts.zarr); created if it does not exist or is an "
                             "empty folder. Anything that is not an activation store (other "
                             "files, '.', a symlink, a device) is refused and left untouched")
    parser.add_argument("network", metavar="NETWORK", nargs="?", help="network id")
    parser.add_argument("layer", metavar="LAYER", nargs="?", help="layer name")
    parser.add_argument("file", metavar="FILE", nargs="?",
                        help="activations, shape (n_datapoints, n_neurons): .npy or .npz")
    parser.add_argument("--manifest", metavar="CSV",
                        help="CSV with columns network,layer,path[,step] and attribute columns "
                             "(instead of NETWORK LAYER FILE)")
    parser.add_argument("--attr", metavar="KEY=VALUE", action="append", default=[],
                        help="network attribute (repeatable); numbers are stored as numbers")
    parser.add_argument("--step", type=int, metavar="S", help="training step of these activations")
    parser.add_argument("--key", metavar="NAME", help="array to read from an .npz holding several")
    parser.add_argument("--conv", choices=("mean", "positions"),
                        help="reduce channels-last conv activations (n, *spatial, c): 'mean' "
                             "averages over positions (the paper's choice), 'positions' makes "
                             "every position a datapoint")
    parser.add_argument("--timesteps", action="store_true",
                        help="files are recurrent layers, (n_datapoints, n_timesteps, n_neurons)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace layers that already exist (otherwise they are refused); "
                             "never replaces data cca-scale did not write")
    parser.add_argument("--n-datapoints", type=int, metavar="N",
                        help="datapoints per layer, recorded when the store is created (needed "
                             "for several writers at once); checked against an existing store")
    parser.add_argument("--fingerprint", metavar="ID",
                        help="your identifier of the dataset and its order; recorded on "
                             "creation, and a store with a different one is refused")
    parser.add_argument("--dtype", choices=("float32", "float64"),
                        help="stored dtype (default: float64 files stay float64, others float32)")
    parser.add_argument("--chunk-rows", type=int, metavar="R",
                        help="datapoints per stored chunk (default: about 8 MiB per chunk)")
    parser.add_argument("--storage-option", metavar="KEY=VALUE", action="append", default=[],
                        help="fsspec option for a URL store (repeatable)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from cca_scale.store.ingest import open_or_create, parse_attr

    positional = [args.network, args.layer, args.file]
    if args.manifest is not None:
        if any(p is not None for p in positional):
            raise StoreError("give either NETWORK LAYER FILE or --manifest CSV, not both.")
        for option in ("attr", "step", "key"):
            if getattr(args, option) not in (None, []):
                raise StoreError(
                    f"--{option} applies to a single file; with --manifest put it in the CSV."
                )
    elif any(p is None for p in positional):
        raise StoreError(
            "give NETWORK LAYER FILE (one file) or --manifest CSV; see 'cca-scale ingest --help'."
        )
    storage_options = dict(parse_attr(item) for item in args.storage_option) or None
    attrs = dict(parse_attr(item) for item in args.attr)
    store, created = open_or_create(args.store, n_datapoints=args.n_datapoints,
                                    fingerprint=args.fingerprint, storage_options=storage_options)
    try:
        try:
            return _ingest(args, store, attrs)
        except ActivationError as exc:
            if "flatten_conv" not in str(exc):
                raise
            raise ActivationError(
                f"{exc} On the command line: --conv mean or --conv positions (files saved "
                "channels-last), or --timesteps for recurrent layers (n, n_timesteps, n_neurons)."
            ) from exc
    except BaseException:
        if created:  # the store was made for this command: a refused write leaves no trace
            store.delete_if_empty()
        raise


def _ingest(args: argparse.Namespace, store, attrs: dict) -> int:
    from cca_scale.store.ingest import ingest_file, ingest_manifest

    common = dict(overwrite=args.overwrite, conv=args.conv, timesteps=args.timesteps,
                  chunk_rows=args.chunk_rows, dtype=args.dtype, fingerprint=args.fingerprint)
    if args.manifest is None:
        ingest_file(store, args.network, args.layer, args.file, step=args.step, attrs=attrs,
                    key=args.key, **common)
        timestep = 0 if args.timesteps else None
        reader = store.reader(args.network, args.layer, step=args.step, timestep=timestep)
        print(f"stored network {args.network!r}, layer {args.layer!r}"
              + (f", step {args.step}" if args.step is not None else "")
              + f": {reader.shape[0]} datapoints x {reader.shape[1]} neurons ({reader.dtype}) "
              f"in {args.store}")
        return 0

    from tqdm import tqdm

    with tqdm(desc="ingest", unit="layer", file=sys.stderr,
              disable=True if args.quiet else None) as bar:
        def progress(row, done, total):
            if row is None:
                bar.reset(total=total)
                return
            bar.set_postfix_str(f"{row.network}/{row.layer}", refresh=False)
            bar.update(1)

        done = ingest_manifest(store, args.manifest, progress=progress, **common)
    networks = {row.network for row in done}
    print(f"stored {len(done)} layer(s) of {len(networks)} network(s) from {args.manifest} "
          f"in {args.store}")
    return 0

