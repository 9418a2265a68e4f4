"""Entry point of ``cca-scale``. Each command lives in ``cca_scale/cli/<name>.py`` and provides
``add_parser(subparsers)`` and ``run(args) -> int``; heavy imports happen inside ``run`` so that
``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from cca_scale.errors import CcaScaleError

# Order shown in --help. Each name is a module of this package.
COMMANDS = ("demo", "ingest", "info", "compare", "export", "cluster", "groups", "dynamics",
            "bench", "tls_certs")

DESCRIPTION = """\
Compare the internal representations of many neural networks with projection weighted CCA
(PWCCA, Morcos, Raghu & Bengio 2018).

A typical session:
  cca-scale demo                                  # train a small sweep, compare, cluster, report
  cca-scale ingest acts.zarr net0 fc1 net0_fc1.npy --attr lr=0.01
  cca-scale info acts.zarr                        # what the store holds
  cca-scale compare acts.zarr --layer fc1 --out fc1.zarr
  cca-scale cluster fc1.zarr --by lr --plot fc1.png
  cca-scale export fc1.zarr --format csv -o fc1.csv

Run 'cca-scale COMMAND --help' for each command's options.
"""


def build_parser() -> argparse.ArgumentParser:
    from cca_scale import __version__

    parser = argparse.ArgumentParser(
        prog="cca-scale", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cca-scale {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show full tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:  # a missing command module is a broken install: let it raise
        importlib.import_module(f"cca_scale.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.debug:
        # Dask reads this when imported, here and in the worker processes it starts.
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    try:
        return int(args.run(args) or 0)
    except CcaScaleError as exc:
        if args.debug:
            raise
        print(f"cca-scale {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"cca-scale {args.command}: interrupted; rerun the same command to resume.",
              file=sys.stderr)
        return 130


#: Commands after which :func:`program` ends the process without the interpreter's teardown.
FAST_EXIT = ("compare",)


def program() -> None:
    """The ``cca-scale`` program: :func:`main` on ``sys.argv``, then exit.

    After ``compare`` (whose writes are all complete and whose cluster is closed when it returns)
    the process ends with ``os._exit`` once the exit handlers have run and stdout/stderr are
    flushed: the interpreter's teardown of the modules a comparison loads (Dask, Zarr, pandas)
    took 0.3-0.4 s of every run, and nothing is left for it to do.
    """
    code = main()
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if command in FAST_EXIT:
        import atexit

        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # closed or a broken pipe: nothing more to say
                pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    program()
