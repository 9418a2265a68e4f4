"""``cca-scale cluster``: hierarchical clusters of the networks of one distance matrix."""

from __future__ import annotations

import argparse

from cca_scale.cli.common import add_matrix_arguments

EXAMPLES = """\
examples:
  cca-scale cluster fc1.zarr                        # k chosen by silhouette
  cca-scale cluster fc1.zarr --by lr --plot fc1.png # ARI/NMI against the learning rate, Fig 5
  cca-scale cluster fc1.zarr --n-clusters 5 -o labels.csv
  cca-scale cluster fc1.nc --distance-threshold 0.4 # an exported matrix works too
  cca-scale cluster all.zarr --layer fc1            # one layer of a multi-layer output

The matrix is symmetrised as (D + D.T) / 2 (PWCCA is directional) and clustered with SciPy's
linkage. labels.csv has the columns network, cluster (clusters numbered 1..k in dendrogram order).
"""


_BOOKKEEPING = ("write_id",)  # store attributes that say nothing about the network


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "cluster", help="cluster networks by their distances (Fig 5)",
        description="Cluster the networks of a distance matrix hierarchically and print each\n"
                    "cluster with its members' attributes.\n\n" + EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", metavar="OUT",
                        help="a compare output (e.g. fc1.zarr) or an exported matrix "
                             "(.csv, .npy, .nc, .parquet)")
    cut = parser.add_mutually_exclusive_group()
    cut.add_argument("--n-clusters", "-k", type=int, metavar="K",
                     help="number of clusters (default: chosen by silhouette)")
    cut.add_argument("--distance-threshold", type=float, metavar="T",
                     help="cut the dendrogram at this height instead")
    parser.add_argument("--method", default="average",
                        choices=("average", "complete", "single", "weighted"),
                        help="linkage method (default: average)")
    parser.add_argument("--by", metavar="ATTR",
                        help="network attribute to compare the clusters with (ARI, NMI), "
                             "e.g. lr")
    parser.add_argument("--plot", metavar="FILE",
                        help="write the ordered heatmap with cluster (and --by) colour bars "
                             "(.png or .svg)")
    parser.add_argument("--dendrogram", metavar="FILE", help="write the dendrogram (.png, .svg)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write the labels as CSV with columns network, cluster")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing -o FILE")
    add_matrix_arguments(parser)
    parser.set_defaults(run=run)
    return parser


def run(args) -> int:
    from pathlib import Path

    from cca_scale.analysis import cluster
    from cca_scale.analysis._common import attribute_values
    from cca_scale.analysis.plots import _check_path
    from cca_scale.cli.common import read_matrix
    from cca_scale.errors import StoreConflictError

    if args.output and Path(args.output).exists() and not args.overwrite:
        raise StoreConflictError(f"{args.output!r} already exists; pass --overwrite to replace it.")
    for figure in (args.plot, args.dendrogram):
        _check_path(figure)  # a bad extension fails before any work
    D = read_matrix(args.out, args.layer, metric=args.metric)
    truth = attribute_values(D, args.by) if args.by else None  # fail before the work
    result = cluster(D, n_clusters=args.n_clusters, distance_threshold=args.distance_threshold,
                     method=args.method)
    meta = D.metadata
    what = f"{meta.get('metric', 'distance')} distances" + \
        (f" of layer {meta['layer']}" if meta.get("layer") else "")
    print(f"{args.out}: {len(result.labels)} networks, {what}, {result.method} linkage")
    if result.chosen_by == "silhouette":
        ks = result.silhouette_by_k.index
        print(f"k = {result.k}, chosen by silhouette ({result.silhouette:.3f}; "
              f"k = {ks.min()}..{ks.max()} tried)")
    else:
        sil = "undefined" if result.silhouette != result.silhouette else \
            f"{result.silhouette:.3f}"
        how = "given" if result.chosen_by == "n_clusters" else \
            f"cut at {args.distance_threshold:g}"
        print(f"k = {result.k} ({how}), silhouette {sil}")
    frame = result.to_frame()
    shown = [c for c in frame.columns if c not in ("network", "cluster", *_BOOKKEEPING)]
    constant = [c for c in shown if frame[c].astype(str).nunique() <= 1]
    varying = [c for c in shown if c not in constant]
    if args.by and args.by not in varying:
        varying.insert(0, args.by)
    for c, members in result.members().items():
        part = frame[frame["cluster"] == c][["network", *varying]]
        print(f"\ncluster {c}: {len(members)} network{'s' if len(members) != 1 else ''}")
        if varying:
            print(_indent(part.to_string(index=False)))
        else:
            print(_indent("\n".join(members)))
    if constant:
        same = ", ".join(f"{c}={frame[c].iloc[0]}" for c in constant)
        print(f"\nsame for every network: {same}")
    if truth is not None:
        agreement = result.agreement(truth)
        print(f"\nagreement with {args.by}: ARI = {agreement.ari:.3f}, NMI = {agreement.nmi:.3f}")
    if args.output:
        frame[["network", "cluster"]].to_csv(args.output, index=False)
        print(f"wrote {args.output} (columns network, cluster)")
    if args.plot:
        from cca_scale.analysis import plot_heatmap

        plot_heatmap(D, clusters=result, attributes=[args.by] if args.by else [], path=args.plot)
        print(f"wrote {args.plot}")
    if args.dendrogram:
        from cca_scale.analysis import plot_dendrogram

        plot_dendrogram(result, path=args.dendrogram)
        print(f"wrote {args.dendrogram}")
    return 0


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())
