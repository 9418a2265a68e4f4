"""``run_demo``: train the sweep, store, compare on Dask, analyse, and write the report."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cca_scale.demo import findings as F
from cca_scale.demo.sweep import (
    SweepConfig,
    TrainedNetwork,
    experiments,
    hidden_layer_names,
    layer_names,
    load_dataset,
    sweep_specs,
    train_network,
    write_network,
)
from cca_scale.errors import CcaScaleError

__all__ = ["DemoFindings", "DemoReport", "run_demo"]

logger = logging.getLogger(__name__)

#: File that marks a folder as the demo's own, so that rerunning may replace its contents.
MARKER = ".cca-scale-demo"

Progress = Callable[[str, int, int], None]
#: Comparisons with at most this many rows run as one tile.
SINGLE_TILE_ROWS = 24


@dataclass(frozen=True)
class DemoFindings:
    """Every analysis of one demo run (see :mod:`cca_scale.demo.findings`)."""

    generalization: F.GeneralizationFinding
    learning_rates: F.LearningRateFinding
    dynamics: F.DynamicsFinding
    width: F.WidthFinding
    toy: F.ToyFinding
    verdicts: pd.DataFrame


@dataclass
class DemoReport:
    """What :func:`run_demo` did and found.

    Attributes
    ----------
    out_dir : Path
        The output folder (absolute).
    text : str
        The plain-text report (also ``report.txt``): tables and verdicts.
    files : dict of str to Path
        What was written: ``report_txt``, ``report_html``, ``findings_json``, ``heatmap`` and the
        other plots, ``store`` (the activations), ``distances`` (the engine's outputs).
    findings : DemoFindings
    networks : DataFrame
        One row per trained network: attributes, accuracies, epochs, training seconds.
    training : DataFrame
        Train accuracy of each network at each recorded epoch.
    timings : dict of str to float
        Seconds per stage and in total.
    quick : bool
    """

    out_dir: Path
    text: str
    files: dict[str, Path]
    findings: DemoFindings
    networks: pd.DataFrame
    training: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    quick: bool = False
    n_workers: int = 0
    n_datapoints: int = 0


def _prepare_out_dir(out_dir) -> Path:
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise CcaScaleError(f"The demo's output {str(out)!r} exists and is not a folder.")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise CcaScaleError(
            f"The folder {str(out)!r} is not empty and was not written by 'cca-scale demo'; "
            "refusing to write into it. Choose another folder with --out DIR."
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by cca-scale demo; rerunning the demo replaces this "
                              "folder's demo files\n")
    (out / "distances").mkdir(exist_ok=True)
    return out


def _default_workers() -> int:
    from cca_scale.runtime import local_worker_count

    return local_worker_count()


def _start_client(n_workers: int):
    import cca_scale

    # A free port of 127.0.0.1: the default 8787 may be taken; nothing listens beyond localhost.
    return cca_scale.launch("local", n_workers=n_workers, threads_per_worker=1,
                            dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)


def _train(client, specs, store, config, groups, progress: Progress | None):
    """Train every network on the cluster; write each into the store as it arrives."""
    from distributed import as_completed

    width_nets = set(groups["width"])
    subsample = {f"{layer}_n{config.n_subsample}": (layer, config.n_subsample)
                 for layer in hidden_layer_names(config.depth)}
    futures = [client.submit(train_network, spec, key=f"demo-train-{spec.name}", pure=False)
               for spec in specs]
    trained: dict[str, TrainedNetwork] = {}
    if progress:
        progress("train", 0, len(futures))
    for i, future in enumerate(as_completed(futures), 1):
        net: TrainedNetwork = future.result()
        future.release()
        write_network(store, net, subsample=subsample if net.spec.name in width_nets else None)
        trained[net.spec.name] = TrainedNetwork(
            spec=net.spec, activations={}, final_epoch=net.final_epoch,
            train_accuracy=net.train_accuracy, test_accuracy=net.test_accuracy,
            history=net.history, seconds=net.seconds)  # keep the numbers, drop the arrays
        if progress:
            progress("train", i, len(futures))
    return [trained[s.name] for s in specs]


def _tile(rows: int) -> int:
    # These matrices are small (tens of items, <= 128 neurons): per-task overhead, not
    # arithmetic, dominates, so use few tiles.
    return rows if rows <= SINGLE_TILE_ROWS else -(-rows // 2)


def _compare_all(store, config, groups, client, dist_dir: Path, progress: Progress | None):
    """Every engine run of the demo, one per sweep selection, all on one client.

    Returns ``(dist, layer_maps)``. ``dist`` is ``{(kind, metric): {layer: DistanceMatrix}}``
    with kinds ``final`` (every network at its last epoch, PWCCA and mean CCA), ``subsampled``
    (the width sweep, a fixed number of neurons per layer), ``dynamics`` (every recorded epoch
    of the generalizing networks against their last) and ``early`` (the learning-rate sweep at
    ``early_epoch``); each is the network-by-network matrix of one layer (``D.for_layer``).
    ``layer_maps`` is ``{metric: DistanceMatrix}``, the final run's multi-layer matrices
    (every (network, layer) item against every other), for the layer-by-layer maps.
    """
    from cca_scale import compare

    layers = layer_names(config.depth)
    hidden = hidden_layer_names(config.depth)
    everyone = store.networks()
    n_steps = len(store.steps(groups["dynamics"][0], hidden[0]))
    sub = {f"{layer}_n{config.n_subsample}": layer for layer in hidden}
    # (kind, file stem, layer-name map {stored layer: reported layer}, compare kwargs, rows)
    jobs: list[tuple[str, str, dict[str, str], dict, int]] = [
        # all networks at their final step, every layer, both metrics from one cross product;
        # mean CCA is the paper's unweighted baseline for Fig 3 (Fig A9)
        ("final", "final", {layer: layer for layer in layers},
         dict(layer=layers, step="last", metric=["pwcca", "mean_cca"]),
         len(everyone) * len(layers)),
        # Fig 4 control: a fixed number of neurons from every layer
        ("subsampled", "subsampled", sub,
         dict(layer=list(sub), step="last", networks=groups["width"], metric=["pwcca"]),
         len(groups["width"]) * len(sub)),
        # Fig 5 before convergence
        ("early", "early", {layer: layer for layer in hidden},
         dict(layer=hidden, step=config.early_epoch, networks=groups["lr_sweep"],
              metric=["pwcca"]),
         len(groups["lr_sweep"]) * len(hidden)),
    ]
    # Fig 6: every recorded epoch against the last, one run per layer (both metrics). A
    # multi-layer run would also compute every cross-layer (layer, epoch) pair, which the demo
    # does not need: L times the pairs for nothing.
    for layer in hidden:
        jobs.append(("dynamics", f"dynamics_{layer}", {layer: layer},
                     dict(layer=layer, step="all", against_step="last",
                          networks=groups["dynamics"], metric=["pwcca", "mean_cca"]),
                     n_steps * len(groups["dynamics"])))
    out: dict[tuple[str, str], dict[str, Any]] = {}
    layer_maps: dict[str, Any] = {}
    if progress:
        progress("compare", 0, len(jobs))
    for i, (kind, stem, names, kwargs, rows) in enumerate(jobs, 1):
        result = compare(store, out=str(dist_dir / f"{stem}.zarr"), client=client,
                         overwrite=True, tile=_tile(rows), **kwargs)
        multi = isinstance(kwargs["layer"], list)
        for metric, D in result.items():
            if kind == "final":
                layer_maps[metric] = D
            for stored, layer in names.items():
                out.setdefault((kind, metric), {})[layer] = D.for_layer(stored) if multi else D
        if progress:
            progress("compare", i, len(jobs))
    return out, layer_maps


def _training_table(trained: list[TrainedNetwork]) -> pd.DataFrame:
    rows = [{"network": t.spec.name, "epoch": int(e), "train_accuracy": float(a)}
            for t in trained for e, a in t.history.items()]
    return pd.DataFrame(rows, columns=["network", "epoch", "train_accuracy"])


def _networks_table(trained: list[TrainedNetwork]) -> pd.DataFrame:
    rows = [dict(network=t.spec.name, **t.spec.attrs(), final_epoch=t.final_epoch,
                 train_accuracy=t.train_accuracy, test_accuracy=t.test_accuracy,
                 train_seconds=t.seconds) for t in trained]
    return pd.DataFrame(rows).set_index("network")


def run_demo(out_dir: str | os.PathLike = "cca-scale-demo", *, quick: bool = False,
             n_workers: int | None = None, client: Any = None,
             progress: Progress | None = None) -> DemoReport:
    """Reproduce the paper's findings on a sweep of small MLPs trained on digits, end to end.

    Trains the sweep on a Dask cluster (one BLAS thread per worker), writes every layer's
    activations into ``out_dir/activations.zarr`` through :class:`cca_scale.ActivationStore`,
    computes all-pairs distances with :func:`cca_scale.compare` (all on one client), clusters
    and analyses them with :mod:`cca_scale.analysis`, and writes tables, plots and a report into
    ``out_dir``.

    Parameters
    ----------
    out_dir : str or path-like
        Output folder, created if needed. A non-empty folder that the demo did not write is
        refused; the demo's own folder is reused (its files replaced).
    quick : bool
        A smaller sweep through the same code (for tests; under a minute on 2 cores).
    n_workers : int, optional
        Worker processes of the embedded LocalCluster (default: one per usable core).
    client : distributed.Client, optional
        Use this cluster instead of starting one (it is left running).
    progress : callable, optional
        Called as ``progress(stage, done, total)`` with stage ``'train'`` or ``'compare'``.

    Returns
    -------
    DemoReport
    """
    from cca_scale import ActivationStore
    from cca_scale.demo import report as R

    started = time.perf_counter()
    timings: dict[str, float] = {}
    out = _prepare_out_dir(out_dir)
    config = SweepConfig.quick() if quick else SweepConfig.full()
    groups = experiments(config)
    specs = sweep_specs(config)
    owned = client is None
    t = time.perf_counter()
    if owned:
        n_workers = int(n_workers or _default_workers())
        client = _start_client(n_workers)
    n_workers = len(client.scheduler_info(n_workers=-1)["workers"])
    timings["cluster_start"] = time.perf_counter() - t
    try:
        t = time.perf_counter()
        data = load_dataset()
        store = ActivationStore.create(out / "activations.zarr", n_datapoints=len(data.x_train),
                                       fingerprint=data.fingerprint, overwrite=True)
        trained = _train(client, specs, store, config, groups, progress)
        timings["train_and_store"] = time.perf_counter() - t
        t = time.perf_counter()
        dist, layer_maps = _compare_all(store, config, groups, client, out / "distances",
                                        progress)
        timings["compare"] = time.perf_counter() - t
    finally:
        if owned:
            client.close()  # also closes a cluster launch() started
    t = time.perf_counter()
    hidden = hidden_layer_names(config.depth)
    training = _training_table(trained)
    networks = _networks_table(trained)
    final = dist[("final", "pwcca")]
    gen = F.generalization(final, groups, later_layers=hidden[1:], output_layer="softmax",
                           baseline=dist[("final", "mean_cca")])
    lrs = F.learning_rates(final, groups, training, layers=hidden, headline_layer=hidden[-1],
                           early=dist[("early", "pwcca")], early_epoch=config.early_epoch)
    dyn = F.dynamics({m: dist[("dynamics", m)] for m in ("pwcca", "mean_cca")}, training,
                     hidden_layers=hidden)
    wid = F.width(final, dist[("subsampled", "pwcca")], groups, n_neurons=config.n_subsample,
                  headline_layer=hidden[-1])
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        toy = F.toy_signal_noise(signal_fractions=config.toy_signal_fractions,
                                 noise_stds=config.toy_noise_scales, repeats=config.toy_repeats,
                                 rng=np.random.default_rng(2018))
    found = DemoFindings(generalization=gen, learning_rates=lrs, dynamics=dyn, width=wid,
                         toy=toy, verdicts=F.verdicts(generalization=gen, learning_rates=lrs,
                                                      dynamics=dyn, width=wid, toy=toy))
    timings["analysis"] = time.perf_counter() - t
    report = DemoReport(out_dir=out, text="", files={}, findings=found, networks=networks,
                        training=training, timings=timings, quick=quick, n_workers=n_workers,
                        n_datapoints=len(data.x_train))
    t = time.perf_counter()
    report.files = R.write_plots(report, dist, groups=groups, layer_maps=layer_maps)
    timings["plots"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started
    report.files.update(R.write_reports(report, config=config))
    report.files["store"] = out / "activations.zarr"
    report.files["distances"] = out / "distances"
    return report
