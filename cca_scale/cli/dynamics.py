"""``cca-scale dynamics``: does each layer converge to its final representation bottom-up?"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cca_scale.cli.common import (
    SELECTION_HELP,
    add_metric_argument,
    parse_selection,
    positive_int,
    selection_epilog,
    show_progress,
)

EXAMPLES = """\
examples:
  cca-scale dynamics acts.zarr --layers fc1,fc2,fc3 --out-dir dyn/ --plot dyn/convergence.png
  cca-scale dynamics acts.zarr --layers fc1,fc2,fc3 --out-dir dyn/ --networks "labels == 'true'" \\
      --threshold 0.2 --metric mean_cca

For each layer (bottom to top, as listed) every stored training step is compared with the same
network's last step (the paper's Fig 6): one resumable engine run per layer, written to
OUT_DIR/dynamics_<layer>.zarr. A layer has converged at the first step from which its distance to
the final step stays below --threshold; the order says whether layers converge bottom-up.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("dynamics", help="layer convergence over training steps (Fig 6)",
                       description=__doc__.split(":", 1)[1].strip() + "\n\n" + EXAMPLES
                       + "\n" + selection_epilog(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", help="activation store with layers stored by training step")
    p.add_argument("--layers", required=True,
                   help="comma-separated layers, from the input (bottom) to the output (top)")
    p.add_argument("--out-dir", required=True, help="folder for the per-layer outputs")
    p.add_argument("--networks", metavar="QUERY", help=f"networks (default: all): {SELECTION_HELP}")
    add_metric_argument(p)
    p.add_argument("--threshold", type=float, default=0.1,
                   help="distance below which a layer counts as converged (default 0.1)")
    p.add_argument("--normalise", action="store_true",
                   help="divide each curve by its distance at the first step, so a layer that "
                        "starts further from its final state does not count as converging later")
    p.add_argument("--plot", metavar="FILE", help="convergence curves (.png or .svg)")
    p.add_argument("--workers", type=positive_int, help="local worker processes (default: cores)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="use a running Dask scheduler")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=run)


def run(args) -> int:
    from cca_scale.analysis import convergence_curves, convergence_order
    from cca_scale.runtime.client import open_client
    from cca_scale.workflows import training_dynamics

    layers = [name.strip() for name in args.layers.split(",") if name.strip()]
    networks = parse_selection(args.networks)  # a bad query fails before a cluster starts
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    client, owned = open_client(scheduler=args.scheduler, n_workers=args.workers)
    try:
        if show_progress(args.quiet):
            print(f"{', '.join(layers)}: comparing every step with the last", file=sys.stderr)
        matrices = training_dynamics(args.store, layers=layers, metric=args.metric,
                                     networks=networks, out=str(out_dir / "dynamics_{layer}.zarr"),
                                     client=client, overwrite=args.overwrite)
    finally:
        if owned:
            client.close()  # also closes a cluster launch() started
    curves = convergence_curves(matrices, layers=layers, normalise=args.normalise)
    order = convergence_order(curves, threshold=args.threshold, layer_order=layers)
    scale = "normalised " if args.normalise else ""
    print(f"{scale}{args.metric} distance to the last step (mean over networks):")
    print(order.curves.pivot(index="step", columns="layer", values="distance")[layers]
          .to_string(float_format=lambda v: f"{v:.4f}"))
    print()
    print(order.to_frame().to_string(index=False))
    print(f"bottom-up (each layer converged no later than the one above): {order.bottom_up}")
    if args.plot:
        from cca_scale.analysis.plots import plot_convergence

        plot_convergence(curves, threshold=args.threshold, layer_order=layers, path=args.plot,
                         ylabel=f"{scale}distance to final step")
        print(f"wrote {args.plot}")
    return 0
