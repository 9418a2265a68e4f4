"""The demo's analyses of training and width: Fig 6 (dynamics), Fig 4 (width) and the Fig 2 toy.

Like :mod:`cca_scale.demo.findings` (which re-exports them), each function takes distance
matrices and the sweep's records and returns a small frozen result with tidy tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cca_scale.analysis.toy import signal_noise_layers
from cca_scale.matrix import DistanceMatrix

__all__ = ["DynamicsFinding", "ToyFinding", "WidthFinding", "dynamics", "toy_signal_noise",
           "width"]


def _subset(D: DistanceMatrix, names: Sequence[str]) -> DistanceMatrix:
    """The square block of ``D`` over ``names`` (rows and columns)."""
    return D.subset(list(names), list(names))


@dataclass(frozen=True)
class DynamicsFinding:
    """Each layer's distance to its final representation over training (Fig 6).

    Attributes
    ----------
    curves : DataFrame
        Columns ``metric, layer, network, step, distance, normalised`` (``normalised``: the
        distance divided by the same network's distance at its first recorded step).
    mean_curves : DataFrame
        Mean over networks: index ``(metric, step)``, one column per layer, for ``distance`` and
        (prefixed ``norm_``) ``normalised``.
    converged : DataFrame
        Per metric and scale (``raw``: threshold ``threshold``; ``normalised``: threshold
        ``normalised_threshold``), the first step from which each hidden layer stays below it,
        and whether that is bottom-up (no layer converges before the one below it).
    depth_ordered : DataFrame
        Per metric and scale: at how many intermediate steps the mean distance strictly grows
        with depth (h1 < h2 < ...), out of how many.
    accuracy : DataFrame
        Mean train accuracy of the networks at each recorded step.
    hidden_layers : tuple of str
    """

    curves: pd.DataFrame
    mean_curves: pd.DataFrame
    converged: pd.DataFrame
    depth_ordered: pd.DataFrame
    accuracy: pd.Series
    hidden_layers: tuple[str, ...]
    threshold: float
    normalised_threshold: float

    def bottom_up(self, metric: str = "pwcca", scale: str = "raw") -> bool:
        return bool(self.converged.loc[(metric, scale), "bottom_up"])


def dynamics(matrices: Mapping[str, Mapping[str, DistanceMatrix]], training: pd.DataFrame, *,
             hidden_layers: Sequence[str], threshold: float = 0.05,
             normalised_threshold: float = 0.25) -> DynamicsFinding:
    """Fig 6 from ``matrices[metric][layer]``: rows ``net@step``, columns each network's final step.

    Parameters
    ----------
    threshold, normalised_threshold
        A layer has converged from the first step after which its mean distance to the final
        representation stays below ``threshold`` (raw), or below ``normalised_threshold`` times
        its distance at the first recorded step (normalised).
    """
    from cca_scale.analysis import convergence_curves, convergence_order

    frames = []
    for metric, by_layer in matrices.items():
        curves = convergence_curves(dict(by_layer))
        normalised = convergence_curves(dict(by_layer), normalise=True)["distance"]
        curves = curves.assign(metric=metric, normalised=normalised.to_numpy())
        frames.append(curves)
    curves = pd.concat(frames, ignore_index=True)[
        ["metric", "layer", "network", "step", "distance", "normalised"]]
    mean = curves.groupby(["metric", "layer", "step"], sort=False)[["distance", "normalised"]] \
        .mean().reset_index()
    wide = mean.pivot_table(index=["metric", "step"], columns="layer",
                            values=["distance", "normalised"])
    layer_cols = list(pd.unique(curves["layer"]))
    mean_curves = pd.concat(
        [wide["distance"][layer_cols],
         wide["normalised"][layer_cols].add_prefix("norm_")], axis=1)
    hidden = [str(x) for x in hidden_layers]
    conv_rows, order_rows = [], []
    for metric in matrices:
        part = curves[(curves["metric"] == metric) & curves["layer"].isin(hidden)]
        last_step = part["step"].max()
        for scale, column, t in (("raw", "distance", threshold),
                                 ("normalised", "normalised", normalised_threshold)):
            table = part[["layer", "network", "step"]].assign(distance=part[column])
            order = convergence_order(table, threshold=t, layer_order=hidden)
            row = {"metric": metric, "scale": scale, "threshold": t,
                   "bottom_up": order.bottom_up}
            row.update({f"converged_{layer}": order.steps[layer] for layer in hidden})
            conv_rows.append(row)
            means = order.curves.pivot(index="step", columns="layer", values="distance")[hidden]
            inner = means[means.index < last_step]
            ordered = (np.diff(inner.to_numpy(), axis=1) > 0).all(axis=1)
            order_rows.append({"metric": metric, "scale": scale, "steps_ordered":
                               int(ordered.sum()), "steps": int(len(inner))})
    nets = list(pd.unique(curves["network"]))
    acc = training[training["network"].isin(nets)].groupby("epoch")["train_accuracy"].mean()
    acc.index.name = "step"
    return DynamicsFinding(
        curves=curves, mean_curves=mean_curves,
        converged=pd.DataFrame(conv_rows).set_index(["metric", "scale"]),
        depth_ordered=pd.DataFrame(order_rows).set_index(["metric", "scale"]),
        accuracy=acc, hidden_layers=tuple(hidden), threshold=float(threshold),
        normalised_threshold=float(normalised_threshold))


# -- Fig 4: width ------------------------------------------------------------------------------
@dataclass(frozen=True)
class WidthFinding:
    """Within-group distance of same-width networks, by width (Fig 4a), and accuracy (Fig 4b).

    Attributes
    ----------
    table : DataFrame
        Index ``(layer, width)``: ``full`` (whole layers, of different sizes), ``subsampled``
        (``n_neurons`` random neurons of every layer, the paper's control), their stds, and the
        group's mean test accuracy.
    trend : DataFrame
        Per layer: Spearman correlation of width with the within-group distance, whole layers and
        subsampled (negative: wider networks are more similar, as in the paper).
    accuracy_correlation : GroupCorrelation or None
        Pearson r between each network's mean distance to its width group (subsampled, last
        hidden layer) and its test accuracy (the paper's Fig 4b found r = -0.96).
    n_neurons : int
    """

    table: pd.DataFrame
    trend: pd.DataFrame
    accuracy_correlation: Any
    n_neurons: int
    layer: str
    stats: pd.DataFrame


def width(final: Mapping[str, DistanceMatrix], subsampled: Mapping[str, DistanceMatrix],
          groups: Mapping[str, list[str]], *, n_neurons: int, headline_layer: str) -> WidthFinding:
    """Fig 4 from whole-layer matrices (``final``) and fixed-size subsampled ones, keyed by the
    source layer name."""
    from scipy.stats import spearmanr

    from cca_scale.analysis import group_correlation, group_statistics

    names = list(groups["width"])
    frames, tidy = {}, {}
    for kind, mats in (("full", final), ("subsampled", subsampled)):
        stats = group_statistics({layer: _subset(D, names) for layer, D in mats.items()
                                  if layer in subsampled}, by="width")
        within = stats[stats["kind"] == "within"]
        tidy[kind] = within
        within = within.rename(columns={"group_a": "width"})
        frames[kind] = within.set_index(["layer", "width"])[["mean", "std"]]
    table = pd.concat({k: v for k, v in frames.items()}, axis=1)
    table.columns = [f"{kind}" if stat == "mean" else f"{kind}_std" for kind, stat in table.columns]
    info = next(iter(subsampled.values())).row_info.loc[names]
    acc = info.groupby("width")["test_accuracy"].mean()
    table["test_accuracy"] = [acc.loc[w] for w in table.index.get_level_values("width")]
    trend_rows = []
    for layer in table.index.get_level_values("layer").unique():
        part = table.loc[layer]
        widths = part.index.to_numpy(dtype=float)
        row = {"layer": layer}
        for kind in ("full", "subsampled"):
            values = part[kind].to_numpy(dtype=float)
            row[f"spearman_{kind}"] = (float(spearmanr(widths, values).statistic)
                                       if len(widths) > 2 else float(np.sign(
                                           np.corrcoef(widths, values)[0, 1])))
            row[f"change_{kind}"] = float(values[-1] - values[0])
        trend_rows.append(row)
    correlation = None
    try:
        correlation = group_correlation(_subset(subsampled[headline_layer], names), by="width",
                                        attribute="test_accuracy")
    except Exception:  # too few networks or constant accuracy: reported as not computed
        correlation = None
    return WidthFinding(table=table, trend=pd.DataFrame(trend_rows).set_index("layer"),
                        accuracy_correlation=correlation, n_neurons=int(n_neurons),
                        layer=headline_layer, stats=tidy["subsampled"].reset_index(drop=True))


# -- Fig 2: toy signal and noise ---------------------------------------------------------------
@dataclass(frozen=True)
class ToyFinding:
    """PWCCA vs mean CCA vs SVCCA on synthetic layers sharing only a signal subspace (Fig 2).

    Attributes
    ----------
    table : DataFrame
        Index ``(noise_std, signal_fraction)``, columns ``pwcca, mean_cca, svcca`` (means over
        repeats). The shared (signal) part is identical up to a linear map, so a robust distance
        stays low as the signal fraction shrinks.
    summary : DataFrame
        Per noise level: mean of each metric over signal fractions and whether PWCCA is below
        mean CCA at every signal fraction.
    """

    table: pd.DataFrame
    summary: pd.DataFrame
    n_datapoints: int
    n_neurons: int


def toy_signal_noise(*, signal_fractions: Sequence[float], noise_stds: Sequence[float],
                     repeats: int, rng: np.random.Generator, n_datapoints: int = 1000,
                     n_neurons: int = 40, keep: float = 0.99) -> ToyFinding:
    """Fig 2: distance between two toy layers as the share of signal dimensions varies."""
    from cca_scale import mean_cca_distance, pwcca_distance, svcca_distance

    rows = []
    for noise in noise_stds:
        for frac in signal_fractions:
            n_signal = max(1, min(n_neurons - 1, int(round(frac * n_neurons))))
            vals = []
            for _ in range(repeats):
                x, y = signal_noise_layers(rng, n_datapoints=n_datapoints, n_neurons=n_neurons,
                                  n_signal=n_signal, noise_std=noise)
                vals.append((pwcca_distance(x, y), mean_cca_distance(x, y),
                             svcca_distance(x, y, keep=keep)))
            p, m, s = np.mean(vals, axis=0)
            rows.append({"noise_std": float(noise), "signal_fraction": n_signal / n_neurons,
                         "pwcca": p, "mean_cca": m, "svcca": s})
    table = pd.DataFrame(rows).set_index(["noise_std", "signal_fraction"])
    g = table.groupby(level="noise_std")
    summary = g.mean()
    summary["pwcca_below_mean_cca_everywhere"] = g.apply(
        lambda t: bool((t["pwcca"] < t["mean_cca"]).all()))
    summary["svcca_below_mean_cca_everywhere"] = g.apply(
        lambda t: bool((t["svcca"] < t["mean_cca"]).all()))
    return ToyFinding(table=table, summary=summary, n_datapoints=n_datapoints,
                      n_neurons=n_neurons)


# -- verdicts ----------------------------------------------------------------------------------
