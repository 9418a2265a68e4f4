"""``cca-scale info``: what an activation store holds; library versions and GPU for bug reports."""

from __future__ import annotations

import argparse
import platform

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

_LIBRARIES = ("numpy", "scipy", "scikit-learn", "pandas", "dask", "distributed", "zarr",
              "numcodecs", "fsspec", "array-api-compat", "torch", "cupy", "dask-cuda")
_CUPY_WHEELS = ("cupy", "cupy-cuda12x", "cupy-cuda13x", "cupy-cuda11x", "cupy-rocm-6-0")


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
        print(versions_text())
    if args.store is not None:
        from cca_scale.store import ActivationStore
        from cca_scale.store.ingest import parse_attr

        options = dict(parse_attr(item) for item in args.storage_option) or None
        mode = "r" if args.discard_staged is None else "a"
        store = ActivationStore.open(args.store, mode=mode, storage_options=options)
        if args.discard_staged is not None:
            gone = store.discard_staged(older_than=args.discard_staged * 3600)
            print(f"discarded {len(gone)} unfinished write(s) older than "
                  f"{args.discard_staged:g} h")
        if args.versions:
            print()
        print(store_text(store, query=query))
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


def versions_text() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from cca_scale import __version__

    lines = [f"{'cca-scale':<16} {__version__}", f"{'python':<16} {platform.python_version()}"]
    for name in _LIBRARIES:
        found = None
        for dist in (_CUPY_WHEELS if name == "cupy" else (name,)):
            try:
                found = f"{version(dist)}" + (f" ({dist})" if dist != name else "")
                break
            except PackageNotFoundError:
                continue
        lines.append(f"{name:<16} {found or 'not installed'}")
    lines.append(f"{'GPU':<16} {gpu_text()}")
    return "\n".join(lines)


def gpu_text() -> str:
    try:
        import cupy
    except ImportError:
        return "no (CuPy is not installed)"
    try:
        if not cupy.cuda.is_available():
            return "no (CuPy is installed but finds no CUDA device)"
        count = cupy.cuda.runtime.getDeviceCount()
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        name = name.decode() if isinstance(name, bytes) else name
        return f"yes: {count} device(s), {name}"
    except Exception as exc:  # a broken CUDA install: say so rather than crash a bug report
        return f"no (CuPy error: {type(exc).__name__}: {exc})"


def _steps_text(steps: list[int]) -> str:
    if len(steps) <= 6:
        return "steps " + ", ".join(str(s) for s in steps)
    shown = ", ".join(str(s) for s in steps[:3]) + ", ..., " + ", ".join(str(s) for s in steps[-2:])
    return f"{len(steps)} steps {shown}"


def store_text(store, *, query: str | list[str] | None = None) -> str:
    """The human-readable description of a store that ``cca-scale info STORE`` prints."""
    import pandas as pd

    networks = store.networks(query)
    where = store.path if store.path is not None else "(in memory)"
    lines = [
        f"Activation store {where}",
        f"  datapoints:  {'(not set yet)' if store.n_datapoints is None else store.n_datapoints}",
        f"  fingerprint: {store.fingerprint if store.fingerprint is not None else '(none)'}",
        f"  networks:    {len(networks)}" + (f" matching {query!r}" if query else ""),
    ]
    if not networks:
        return "\n".join(lines)
    table = store.attributes(networks)
    lines += ["", "Networks and attributes:"]
    if table.shape[1]:
        with pd.option_context("display.max_rows", None, "display.max_columns", None,
                               "display.width", 200):
            lines += ["  " + line for line in table.to_string().splitlines()]
    else:
        lines += [f"  {name}" for name in networks] + ["  (no attributes)"]
    lines += ["", "Layers:"]
    rows = []
    for network in networks:
        for layer in store.layers(network):
            steps = store.steps(network, layer)
            has_plain = store.has_layer(network, layer)
            step = None if has_plain else (steps[0] if steps else None)
            if not has_plain and not steps:
                rows.append((network, layer, "(empty)", "", ""))
                continue
            timesteps = store.timesteps(network, layer, step)
            reader = store.reader(network, layer, step=step, timestep=0 if timesteps else None)
            shape = f"{reader.shape[0]} x {reader.shape[1]}"
            extra = []
            if timesteps:
                extra.append(f"{len(timesteps)} timesteps")
            if steps:
                extra.append(_steps_text(steps) + (" (and without step)" if has_plain else ""))
            rows.append((network, layer, shape, str(reader.dtype), "; ".join(extra)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        text = "  " + "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths))
        lines.append((text + "  " + row[4]).rstrip())
    return "\n".join(lines)
