"""``cca-scale info``: what an activation store holds; library versions and GPU for bug reports."""

from __future__ import annotations

import argparse

from cca_scale.cli.common import SELECTION_HELP, parse_selection, selection_epilog
from cca_scale.errors import StoreError

DESCRIPTION = """\
Show what an activation store holds: its datapoint count and dataset fingerprint, every network
with its attributes (in insertion order), and each layer's shape, dtype, training steps and
timesteps. It also checks that every metadata document parses and every chunk file is in place
(a store copied or synced incompletely is reported, with the path of what is lost); --verify also
decodes every chunk (reads all the data). With --versions, also the versions of the libraries
cca_scale uses and whether a GPU is usable (include this in bug reports).

Examples:
  cca-scale info acts.zarr
  cca-scale info acts.zarr --query "lr == 0.01 and labels in ['true', 'random']"
  cca-scale info acts.zarr --verify              # after copying a store: read every chunk back
  cca-scale info s3://bucket/acts.zarr --storage-option anon=true
  cca-scale info --versions
  cca-scale info acts.zarr --discard-staged     # remove what writers killed mid-write left behind
"""

def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "info", help="show what an activation store holds (and library versions)",
        description=DESCRIPTION + "\n" + selection_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("store", metavar="STORE", nargs="?",
                        help="activation store: a local path (acts.zarr) or an fsspec URL "
                             "(s3://bucket/acts.zarr)")
    parser.add_argument("--query", metavar="QUERY",
                        help=f"only these networks: {SELECTION_HELP}")
    parser.add_argument("--versions", action="store_true",
                        help="also show library versions and whether a GPU is present")
    parser.add_argument("--verify", action="store_true",
                        help="also decode every chunk and check it holds finite values (reads "
                             "the whole store; without it only chunk files' presence is checked)")
    parser.add_argument("--discard-staged", metavar="HOURS", nargs="?", type=float, const=24.0,
                        help="delete unfinished writes left by killed processes, older than HOURS "
                             "(default 24, so a write still streaming is never touched)")
    parser.add_argument("--storage-option", metavar="KEY=VALUE", action="append", default=[],
                        help="fsspec option for a URL store (repeatable)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.store is None and not args.versions:
        raise StoreError("give a STORE to describe, or --versions; see 'cca-scale info --help'.")
    query = parse_selection(args.query)
    if args.versions:
        from cca_scale._env import versions_text

        print(versions_text())
    if args.store is not None:
        from cca_scale.store import ActivationStore
        from cca_scale.store.ingest import parse_attr
        from cca_scale.store.summary import describe_store

        options = dict(parse_attr(item) for item in args.storage_option) or None
        mode = "r" if args.discard_staged is None else "a"
        store = ActivationStore.open(args.store, mode=mode, storage_options=options)
        if args.discard_staged is not None:
            gone = store.discard_staged(older_than=args.discard_staged * 3600)
            print(f"discarded {len(gone)} unfinished write(s) older than "
                  f"{args.discard_staged:g} h")
        if args.versions:
            print()
        print(describe_store(store, query=query))
        checked = store.verify(query, read=args.verify)
        print(f"\nchecked {checked} activation array(s): "
              + ("every chunk read back as finite numbers" if args.verify
                 else "every chunk file in place (--verify also decodes them)"))
        staged = store.staged()
        if staged:
            print(f"\n{len(staged)} unfinished write(s) in _staging/ (a write in progress, or left "
                  "by a process killed mid-write; never read as layers). 'cca-scale info STORE "
                  "--discard-staged' removes those older than a day.")
    return 0
