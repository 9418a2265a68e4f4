"""``cca-scale tls-certs``: a private certificate authority and TLS certificates for a cluster."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Write a self-signed certificate authority (ca.pem) and a certificate + key for each role of a Dask
cluster (scheduler.pem / scheduler-key.pem, worker.pem / worker-key.pem, client.pem /
client-key.pem) into DIR, for TLS between client, scheduler and workers. Keys are mode 0600 and
the CA's own key is never written. Processes of the cluster trust only certificates of this CA:
a client without them is refused.

Examples:
  cca-scale tls-certs ~/cca-tls --host node01 --host 10.0.0.5
  eval "$(cca-scale tls-certs "$RUN_DIR/tls" --env)"     # in a job script: every dask process
                                                         # started afterwards uses TLS
  cca-scale compare acts.zarr --layer fc1 --out fc1.zarr --scheduler tls://10.0.0.5:8786

See deploy/README.md for the SLURM and Kubernetes recipes.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "tls-certs", help="make TLS certificates for a multi-host cluster",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("directory", metavar="DIR",
                        help="directory to write into (created with mode 0700 if missing)")
    parser.add_argument("--host", action="append", default=[], metavar="H",
                        help="host name or IP address of a scheduler or worker machine, "
                             "added to localhost and 127.0.0.1 (repeat for several)")
    parser.add_argument("--days", type=int, default=365,
                        help="validity of the certificates in days (default: 365)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace certificates already in DIR")
    parser.add_argument("--env", action="store_true",
                        help="print only the shell 'export DASK_DISTRIBUTED__COMM__...' lines that "
                             "make Dask processes use the certificates (for eval)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import shlex
    from pathlib import Path

    from cca_scale.runtime import make_tls_certificates, tls_environment

    hosts = list(dict.fromkeys(["localhost", "127.0.0.1", *args.host]))
    files = make_tls_certificates(Path(args.directory).absolute(), hosts=hosts, days=args.days,
                                  overwrite=args.overwrite)
    env = tls_environment(files)
    exports = [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    if args.env:
        print("\n".join(exports))
        return 0
    print(f"Wrote a certificate authority and scheduler, worker and client certificates to "
          f"{files.ca_file.parent} (valid {args.days} days; hosts: {', '.join(hosts)}).")
    print("Every process needs ca.pem plus its own role's pair. To use them in a shell:")
    print("\n".join(f"  {line}" for line in exports))
    return 0
