"""``cca-scale export``: a distance matrix to CSV, NumPy, netCDF or Parquet at float64 precision."""

from __future__ import annotations

import argparse

from cca_scale.cli.common import add_matrix_arguments

EXAMPLES = """\
examples:
  cca-scale export fc1.zarr --format csv -o fc1.csv
  cca-scale export fc1.zarr --format netcdf -o fc1.nc     # xarray.open_dataset('fc1.nc')
  cca-scale export fc1.zarr -o fc1.parquet                # format from the extension
  cca-scale export all.zarr --layer fc1 -o fc1.csv        # one layer of a multi-layer output

formats (all float64, exact):
  csv      header row 'row,<column ids>', then one line per row network: id, distances (%.17g)
  npy      the matrix (numpy.load), labels/metadata/attributes in FILE.labels.json beside it
  netcdf   variable 'distance' (row, column), network ids as coordinates, metadata as attributes
  parquet  row ids as the index, column ids as the columns (pandas.read_parquet)
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export", help="write a distance matrix as csv, npy, netcdf or parquet",
        description="Export a distance matrix at full float64 precision.\n\n" + EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", metavar="OUT",
                        help="a compare output (e.g. fc1.zarr) or an exported matrix")
    parser.add_argument("--format", "-f", choices=("csv", "npy", "netcdf", "parquet"),
                        help="output format (default: from the extension of -o)")
    parser.add_argument("-o", "--output", metavar="FILE", required=True,
                        help="the file to write: a new path, or an export of the same format "
                             "that cca-scale wrote (anything else, a folder, a symlink or a "
                             "device is refused and left untouched)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace FILE if it is an export cca-scale wrote; never replaces "
                             "data cca-scale did not write")
    add_matrix_arguments(parser)
    parser.set_defaults(run=run)
    return parser


def run(args) -> int:
    from cca_scale.analysis import export_distances
    from cca_scale.analysis.export import format_from_path
    from cca_scale.cli.common import read_matrix

    fmt = format_from_path(args.output, args.format)
    D = read_matrix(args.out, args.layer, metric=args.metric)
    path = export_distances(D, args.output, format=fmt, overwrite=args.overwrite,
                            inputs=(args.out,))
    extra = f" (labels in {path}.labels.json)" if fmt == "npy" else ""
    print(f"wrote {path}: {D.shape[0]} x {D.shape[1]} float64, {fmt}{extra}")
    return 0
