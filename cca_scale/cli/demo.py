"""``cca-scale demo``: the paper's findings, reproduced on small networks trained on the spot."""

from __future__ import annotations

import argparse
import sys

from cca_scale.cli.common import positive_int, show_progress

DESCRIPTION = """\
Train a sweep of small MLPs on scikit-learn's bundled digits (no download), store their
activations in a Zarr activation store, compare every pair with projection weighted CCA on a
local Dask cluster, cluster them, and write tables, plots and a report.

What it checks, each number computed in this run (Morcos, Raghu & Bengio 2018):
  Fig 3  generalizing (true labels) vs memorizing (shuffled labels) networks, per layer
  Fig 5  a learning-rate x initialization sweep: do clusters follow lr or init? (ARI)
  Fig 6  bottom-up convergence of the layers over training, raw and normalised
  Fig 4  width, with a fixed number of neurons sampled per layer
  Fig 2  PWCCA vs mean CCA vs SVCCA on toy layers as the signal/noise ratio varies
and says plainly what does not reproduce. About 1-2 minutes on 2 cores (--quick: < 1 minute).

examples:
  cca-scale demo                          # writes ./cca-scale-demo/
  cca-scale demo --out /tmp/demo --workers 4
  cca-scale demo --quick                  # a smaller sweep, same code path

Output folder: report.txt and report.html (tables and verdicts), heatmap.png and the other
plots, findings.json (every number), networks.csv, activations.zarr (the store; try
'cca-scale info'), distances/*.zarr (the engine's outputs; try 'cca-scale cluster').
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo", help="train a small sweep on digits, compare, cluster and report (1-2 min)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="cca-scale-demo", metavar="DIR",
                   help="output folder (default: ./cca-scale-demo); a non-empty folder the demo "
                        "did not write is refused")
    p.add_argument("--quick", action="store_true",
                   help="a smaller sweep through the same code (for tests; under a minute)")
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help="worker processes of the local Dask cluster (default: one per core)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


class _Bars:
    """One tqdm bar per stage, on stderr."""

    LABELS = {"train": ("training networks", "network"),
              "compare": ("comparing (engine)", "matrix")}

    def __init__(self):
        self.bars = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            for other in self.bars.values():
                other.close()
            desc, unit = self.LABELS.get(stage, (stage, "it"))
            bar = self.bars[stage] = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr,
                                          dynamic_ncols=True, leave=False)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def run(args) -> int:
    from cca_scale.demo import run_demo

    bars = _Bars() if show_progress(args.quiet) else None
    try:
        report = run_demo(args.out, quick=args.quick, n_workers=args.workers, progress=bars)
    finally:
        if bars is not None:
            bars.close()
    print(report.text, end="")
    out = report.out_dir
    print()
    print(f"Wrote the demo's output to {out}/ :")
    first = ("report_txt", "report_html", "heatmap")
    ordered = [k for k in first if k in report.files] + [k for k in report.files
                                                         if k not in first]
    for key in ordered:
        path = report.files[key]
        try:
            shown = str(path.relative_to(out))
        except ValueError:
            shown = str(path)
        shown += "/" if path.is_dir() else ""
        print(f"  {shown:<34} {key}")
    print(f"Open {out / 'report.html'} for the report with its plots.")
    return 0
