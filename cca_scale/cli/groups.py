"""``cca-scale groups``: within- and between-group distances per layer (Figs 3 and 4)."""

from __future__ import annotations

import argparse

from cca_scale.cli.common import add_matrix_arguments

EXAMPLES = """\
examples:
  cca-scale groups conv1.zarr conv2.zarr fc1.zarr --by labels       # Fig 3: true vs random labels
  cca-scale groups fc1.zarr --by width --plot widths.png           # Fig 4a
  cca-scale groups fc1.zarr --by width --correlate test_accuracy   # Fig 4b
  cca-scale groups all.zarr --layer fc1 --by width     # one layer of a multi-layer output

Give one OUT per layer; the layer is named by the output's metadata (else its file name). Every
off-diagonal directed pair d(i, j), i != j, counts once: a group of m networks has m (m - 1)
within-group pairs, two groups of m_a and m_b have 2 m_a m_b between-group pairs.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "groups", help="within/between-group distances per layer (Figs 3, 4)",
        description="Mean and std of the distances within each group of networks and between\n"
                    "groups, for one or several layers.\n\n" + EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("outs", metavar="OUT", nargs="+",
                        help="compare outputs (one per layer) or exported matrices")
    parser.add_argument("--by", metavar="ATTR", required=True,
                        help="the network attribute that defines the groups, e.g. width")
    parser.add_argument("--plot", metavar="FILE",
                        help="write bars with std error bars per layer (.png or .svg)")
    parser.add_argument("--correlate", metavar="ATTR",
                        help="also correlate each network's mean distance to its group with this "
                             "numeric attribute (Pearson r, p), e.g. test_accuracy")
    add_matrix_arguments(parser)
    parser.set_defaults(run=run)
    return parser


def run(args) -> int:
    from pathlib import Path

    from cca_scale.analysis import group_correlation, group_statistics
    from cca_scale.analysis.plots import _check_path
    from cca_scale.cli.common import read_matrix

    _check_path(args.plot)
    matrices = [read_matrix(path, args.layer, metric=args.metric) for path in args.outs]
    names = [str(D.metadata.get("layer") or Path(path).stem)
             for D, path in zip(matrices, args.outs, strict=True)]
    if len(set(names)) != len(names):
        names = [str(path) for path in args.outs]
    table = group_statistics(matrices, args.by, layers=names)
    shown = table.assign(group_a=table["group_a"].map(str), group_b=table["group_b"].map(str))
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.correlate:
        print()
        for name, D in zip(names, matrices, strict=True):
            res = group_correlation(D, by=args.by, attribute=args.correlate)
            print(f"{name}: mean distance to own {args.by} group vs {args.correlate}: "
                  f"r = {res.r:.3f}, p = {res.p:.3g} (n = {res.n} networks)")
    if args.plot:
        from cca_scale.analysis import plot_group_bars

        metric = matrices[0].metadata.get("metric", "distance")
        plot_group_bars(table, path=args.plot, ylabel=f"{metric} distance",
                        title=f"grouped by {args.by}")
        print(f"wrote {args.plot}")
    return 0
