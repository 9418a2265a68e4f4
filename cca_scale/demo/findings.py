"""The demo's analyses: every number the demo reports is computed here from the run's distances.

Each function takes distance matrices (from :func:`cca_scale.compare`) and the sweep's training
records, and returns a small frozen result with tidy tables; nothing prints and nothing is
hard-coded. :func:`verdicts` compares each measured result with the paper's claim, using the
criteria written in its docstring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cca_scale.analysis.toy import signal_noise_layers
from cca_scale.matrix import DistanceMatrix

__all__ = [
    "DynamicsFinding",
    "GeneralizationFinding",
    "LearningRateFinding",
    "ToyFinding",
    "WidthFinding",
    "dynamics",
    "generalization",
    "learning_rates",
    "toy_signal_noise",
    "verdicts",
    "width",
]

GENERALIZING, MEMORIZING = "generalizing", "memorizing"


def _subset(D: DistanceMatrix, names: Sequence[str]) -> DistanceMatrix:
    return D.subset(list(names), list(names))


def _accuracy_table(info: pd.DataFrame, by: str) -> pd.DataFrame:
    """Train/test accuracy and epochs per group, from the networks' attributes."""
    grouped = info.groupby(by, sort=True)
    return pd.DataFrame({
        "n_networks": grouped.size(),
        "train_accuracy_mean": grouped["train_accuracy"].mean(),
        "train_accuracy_min": grouped["train_accuracy"].min(),
        "test_accuracy_mean": grouped["test_accuracy"].mean(),
        "epochs_mean": grouped["final_epoch"].mean(),
    })


# -- Fig 3: generalizing vs memorizing ---------------------------------------------------------
@dataclass(frozen=True)
class GeneralizationFinding:
    """Within-generalizing, within-memorizing and inter-group distances per layer (Fig 3).

    Attributes
    ----------
    table : DataFrame
        One row per layer: ``within_generalizing``, ``within_memorizing``, ``inter`` (means over
        directed pairs) and their ``*_std``, and ``n_pairs_within``.
    baseline : DataFrame or None
        The same table with unweighted mean CCA (the paper's Fig A9), when computed.
    accuracy : DataFrame
        Train/test accuracy and epochs per regime.
    later_layers : tuple of str
        The layers where the paper finds the difference (all hidden layers after the first).
    gen_below_mem : Series of bool
        Per layer, whether within-generalizing < within-memorizing.
    stats : DataFrame
        The tidy table of :func:`cca_scale.analysis.group_statistics` (for the bar plot).
    clustering : DataFrame
        Per layer, for the clustering whose ``k`` is chosen by silhouette: ``k``,
        ``silhouette``, ARI against the regime, ``generalizing_cluster`` (the generalizing
        networks all share one cluster that holds no memorizing network) and
        ``memorizing_clusters`` (how many clusters the memorizing networks spread over); and the
        ARI of the cut at k = 2.
    output_layer : str or None
        The output layer (the paper's softmax), when compared.
    """

    table: pd.DataFrame
    accuracy: pd.DataFrame
    later_layers: tuple[str, ...]
    gen_below_mem: pd.Series
    stats: pd.DataFrame
    clustering: pd.DataFrame
    output_layer: str | None = None
    baseline: pd.DataFrame | None = None

    @property
    def reproduces(self) -> bool:
        return bool(self.gen_below_mem.loc[list(self.later_layers)].all())


def _regime_table(matrices: Mapping[str, DistanceMatrix]) -> tuple[pd.DataFrame, pd.DataFrame]:
    from cca_scale.analysis import group_statistics

    stats = group_statistics(dict(matrices), by="regime")
    rows = []
    for layer, part in stats.groupby("layer", sort=False):
        def pick(a, b, col):
            hit = part[((part.group_a == a) & (part.group_b == b))
                       | ((part.group_a == b) & (part.group_b == a))]
            return float(hit[col].iloc[0]) if len(hit) else float("nan")

        rows.append({
            "layer": layer,
            "within_generalizing": pick(GENERALIZING, GENERALIZING, "mean"),
            "within_generalizing_std": pick(GENERALIZING, GENERALIZING, "std"),
            "within_memorizing": pick(MEMORIZING, MEMORIZING, "mean"),
            "within_memorizing_std": pick(MEMORIZING, MEMORIZING, "std"),
            "inter": pick(GENERALIZING, MEMORIZING, "mean"),
            "inter_std": pick(GENERALIZING, MEMORIZING, "std"),
            "n_pairs_within": int(pick(GENERALIZING, GENERALIZING, "n_pairs")),
        })
    return pd.DataFrame(rows).set_index("layer"), stats


def generalization(final: Mapping[str, DistanceMatrix], groups: Mapping[str, list[str]], *,
                   later_layers: Sequence[str], output_layer: str | None = None,
                   baseline: Mapping[str, DistanceMatrix] | None = None) -> GeneralizationFinding:
    """Fig 3 from per-layer matrices that include the generalizing and memorizing networks."""
    names = list(groups[GENERALIZING]) + list(groups[MEMORIZING])
    table, stats = _regime_table({layer: _subset(D, names) for layer, D in final.items()})
    base = None
    if baseline:
        base, _ = _regime_table({layer: _subset(D, names) for layer, D in baseline.items()})
    from cca_scale.analysis import cluster

    rows = []
    gen_names, mem_names = list(groups[GENERALIZING]), list(groups[MEMORIZING])
    for layer, D in final.items():
        sub = _subset(D, names)
        best, two = cluster(sub), cluster(sub, n_clusters=2)
        gen_labels = set(best.labels.loc[gen_names])
        mem_labels = set(best.labels.loc[mem_names])
        rows.append({"layer": layer, "k": best.k, "silhouette": best.silhouette,
                     "ari_regime": best.agreement("regime").ari,
                     "generalizing_cluster": len(gen_labels) == 1
                     and not gen_labels & mem_labels,
                     "memorizing_clusters": len(mem_labels),
                     "ari_regime_k2": two.agreement("regime").ari})
    info = next(iter(final.values())).row_info.loc[names]
    return GeneralizationFinding(
        table=table, accuracy=_accuracy_table(info, "regime"),
        later_layers=tuple(later_layers),
        gen_below_mem=table["within_generalizing"] < table["within_memorizing"],
        stats=stats, clustering=pd.DataFrame(rows).set_index("layer"),
        output_layer=output_layer, baseline=base)


# -- Fig 5: learning rates and initializations -------------------------------------------------
@dataclass(frozen=True)
class LearningRateFinding:
    """Do networks cluster by learning rate or by initialization (Fig 5)?

    Attributes
    ----------
    clustering : DataFrame
        One row per (epoch label, layer): ``k`` and ``silhouette`` of the clustering whose ``k``
        is chosen by silhouette, its ARI against learning rate (``ari_lr``) and against the
        initialization seed (``ari_init``); ``ari_lr_at_k_lr``: ARI against learning rate when the
        tree is cut into as many clusters as learning rates; ``ari_init_at_k_init``: against the
        seed, cut into as many clusters as seeds.
    pairs : DataFrame
        Mean (std, count) distance of directed pairs by relation: same seed and different
        learning rate, same learning rate and different seed, both different (per layer).
    lr_pairs : DataFrame
        At the headline layer, for each pair of learning rates (``lr_a <= lr_b``): the mean
        distance of pairs with the same seed and of pairs with different seeds.
    accuracy : DataFrame
        Train accuracy per learning rate at each clustered epoch (``when``: ``'final'`` or
        ``'epoch N'``), next to every clustering result.
    clusters : ClusterResult
        The silhouette clustering of the final networks at ``layer`` (for the heatmap).
    layer : str
        The layer the headline numbers come from (the last hidden layer).
    """

    clustering: pd.DataFrame
    pairs: pd.DataFrame
    lr_pairs: pd.DataFrame
    accuracy: pd.DataFrame
    clusters: Any
    layer: str

    def headline(self, when: str = "final") -> pd.Series:
        return self.clustering.loc[(when, self.layer)]


def _relation_table(layer: str, D: DistanceMatrix) -> list[dict]:
    lr = D.row_info["lr"].to_numpy(dtype=float)
    seed = D.row_info["seed"].to_numpy()
    same_lr = lr[:, None] == lr[None, :]
    same_seed = seed[:, None] == seed[None, :]
    off = ~np.eye(len(lr), dtype=bool)
    out = []
    for relation, mask in (("same init, different lr", same_seed & ~same_lr & off),
                           ("same lr, different init", same_lr & ~same_seed & off),
                           ("both different", ~same_lr & ~same_seed)):
        vals = D.values[mask]
        out.append({"layer": layer, "relation": relation,
                    "mean": float(vals.mean()) if vals.size else float("nan"),
                    "std": float(vals.std()) if vals.size else float("nan"),
                    "n_pairs": int(vals.size)})
    return out


def _lr_pair_table(D: DistanceMatrix) -> pd.DataFrame:
    lr = D.row_info["lr"].to_numpy(dtype=float)
    seed = D.row_info["seed"].to_numpy()
    off = ~np.eye(len(lr), dtype=bool)
    rows = []
    levels = sorted(set(lr.tolist()))
    for i, a in enumerate(levels):
        for b in levels[i:]:
            pair = ((lr[:, None] == a) & (lr[None, :] == b)) | ((lr[:, None] == b)
                                                               & (lr[None, :] == a))
            same = seed[:, None] == seed[None, :]
            row = {"lr_a": a, "lr_b": b}
            for name, mask in (("same_init", pair & same & off), ("different_init",
                                                                  pair & ~same)):
                vals = D.values[mask]
                row[name] = float(vals.mean()) if vals.size else float("nan")
            rows.append(row)
    return pd.DataFrame(rows).set_index(["lr_a", "lr_b"])


def _clustering_rows(when: str, layer: str, D: DistanceMatrix) -> dict:
    from cca_scale.analysis import cluster

    n_lr = D.row_info["lr"].nunique()
    n_init = D.row_info["seed"].nunique()
    best = cluster(D)
    at_lr = cluster(D, n_clusters=int(n_lr))
    at_init = cluster(D, n_clusters=int(n_init))
    return {"when": when, "layer": layer, "k": best.k, "silhouette": best.silhouette,
            "ari_lr": best.agreement("lr").ari, "ari_init": best.agreement("seed").ari,
            "ari_lr_at_k_lr": at_lr.agreement("lr").ari,
            "ari_init_at_k_init": at_init.agreement("seed").ari}, best


def learning_rates(final: Mapping[str, DistanceMatrix], groups: Mapping[str, list[str]],
                   training: pd.DataFrame, *, layers: Sequence[str], headline_layer: str,
                   early: Mapping[str, DistanceMatrix] | None = None,
                   early_epoch: int | None = None) -> LearningRateFinding:
    """Fig 5: cluster the learning-rate sweep and score the clusters against lr and against init.

    ``training`` has one row per network and recorded epoch (``network, epoch,
    train_accuracy``); it gives the accuracy of each learning-rate group at the clustered epoch.
    """
    names = list(groups["lr_sweep"])
    rows, pairs, acc, headline = [], [], [], None
    for layer in layers:
        D = _subset(final[layer], names)
        row, result = _clustering_rows("final", layer, D)
        rows.append(row)
        pairs.extend(_relation_table(layer, D))
        if layer == headline_layer:
            headline = result
    info = final[headline_layer].row_info.loc[names]
    final_acc = _accuracy_table(info, "lr")
    acc.append(final_acc.assign(when="final").reset_index())
    if early:
        when = f"epoch {early_epoch}"
        for layer, D in early.items():
            row, _ = _clustering_rows(when, layer, _subset(D, names))
            rows.append(row)
        at = training[(training["epoch"] == early_epoch) & training["network"].isin(names)]
        at = at.merge(info[["lr"]], left_on="network", right_index=True)
        g = at.groupby("lr", sort=True)["train_accuracy"]
        acc.append(pd.DataFrame({"lr": g.mean().index, "n_networks": g.size().to_numpy(),
                                 "train_accuracy_mean": g.mean().to_numpy(),
                                 "train_accuracy_min": g.min().to_numpy(), "when": when}))
    clustering = pd.DataFrame(rows).set_index(["when", "layer"])
    accuracy = pd.concat(acc, ignore_index=True).set_index(["when", "lr"])
    return LearningRateFinding(
        clustering=clustering, pairs=pd.DataFrame(pairs),
        lr_pairs=_lr_pair_table(_subset(final[headline_layer], names)), accuracy=accuracy,
        clusters=headline, layer=headline_layer)


# -- Fig 6: convergence over training ----------------------------------------------------------
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
def _fmt(x: float) -> str:
    return "nan" if x is None or not np.isfinite(x) else f"{x:.3f}"


def verdicts(*, generalization: GeneralizationFinding | None = None,
             learning_rates: LearningRateFinding | None = None,
             dynamics: DynamicsFinding | None = None, width: WidthFinding | None = None,
             toy: ToyFinding | None = None, ari_clustered: float = 0.5,
             output_gap: float = 0.05, inter_tolerance: float = 0.2) -> pd.DataFrame:
    """Each paper claim against what this run measured: ``reproduces``, ``partly`` or ``no``.

    Criteria
    --------
    Fig 3: within-generalizing < within-memorizing at every later layer. Its side claims: the
    silhouette clustering puts all generalizing networks in one cluster holding no memorizing
    network (every later layer); memorizing networks are as far from each other as from
    generalizing ones (inter within ``inter_tolerance``, relative, of within-memorizing at
    every later layer); both groups are near-identical at the softmax (within-group distances
    differ by less than ``output_gap``).
    Fig 5 (clusters follow the learning rate): the ARI against the learning rate of the tree
    cut into as many clusters as learning rates, at the headline layer, is at least
    ``ari_clustered``.
    Fig 6: bottom-up convergence of raw PWCCA distances (``partly`` when it holds raw but not
    after normalising by each layer's first distance).
    Fig 4: negative Spearman correlation of width with the within-group distance in the
    subsampled headline layer (``partly`` when not in every layer). Fig 4b: negative Pearson
    correlation of a network's distance to its group with its test accuracy, p < 0.05.
    Fig 2: PWCCA below mean CCA at every signal fraction at every noise level (``partly`` when
    only at the lowest). Its side claim: SVCCA's mean over signal fractions lies between mean
    CCA's and PWCCA's at the lowest noise level.
    """
    rows = []
    if generalization is not None:
        t = generalization.table
        later = list(generalization.later_layers)
        measured = "; ".join(
            f"{layer}: gen {_fmt(t.loc[layer, 'within_generalizing'])} vs mem "
            f"{_fmt(t.loc[layer, 'within_memorizing'])}" for layer in later)
        rows.append({"figure": "Fig 3", "claim": "generalizing networks converge to more "
                     "similar solutions than memorizing ones (later layers)",
                     "measured": measured,
                     "verdict": "reproduces" if generalization.reproduces else "no"})
        cl = generalization.clustering
        n_mem = int(generalization.accuracy.loc[MEMORIZING, "n_networks"])
        rows.append({"figure": "Fig 3", "claim": "clustering puts the generalizing networks "
                     "in one cluster of their own (memorizing ones are all different)",
                     "measured": "; ".join(
                         f"{layer}: k = {cl.loc[layer, 'k']}, generalizing cluster "
                         f"{'yes' if cl.loc[layer, 'generalizing_cluster'] else 'no'}, "
                         f"memorizing spread over {cl.loc[layer, 'memorizing_clusters']}/{n_mem}"
                         f" clusters, ARI vs regime {_fmt(cl.loc[layer, 'ari_regime'])}"
                         for layer in later),
                     "verdict": "reproduces" if cl.loc[later, "generalizing_cluster"].all()
                     else "no"})
        rel = [abs(t.loc[layer, "inter"] - t.loc[layer, "within_memorizing"])
               / t.loc[layer, "within_memorizing"] for layer in later]
        measured = "; ".join(f"{layer}: inter {_fmt(t.loc[layer, 'inter'])} vs mem "
                             f"{_fmt(t.loc[layer, 'within_memorizing'])}" for layer in later)
        rows.append({"figure": "Fig 3", "claim": "memorizing networks are as far from each other "
                     "as from generalizing ones", "measured": measured,
                     "verdict": "reproduces" if max(rel) <= inter_tolerance else "no"})
        out = generalization.output_layer
        if out is not None and out in t.index:
            g, m = t.loc[out, "within_generalizing"], t.loc[out, "within_memorizing"]
            extra = "".join(
                f"; {layer}: gen {_fmt(t.loc[layer, 'within_generalizing'])} vs mem "
                f"{_fmt(t.loc[layer, 'within_memorizing'])}"
                for layer in t.index if layer not in later and layer != out
                and layer == t.index[-2])
            rows.append({"figure": "Fig 3", "claim": "at the softmax both groups converge to "
                         "near-identical solutions (train data)",
                         "measured": f"{out}: gen {_fmt(g)} vs mem {_fmt(m)}{extra}",
                         "verdict": "reproduces" if abs(m - g) < output_gap else "no"})
    if learning_rates is not None:
        h = learning_rates.headline()
        measured = (f"{learning_rates.layer}: ARI vs lr {_fmt(h['ari_lr_at_k_lr'])}, vs init "
                    f"{_fmt(h['ari_init_at_k_init'])} (k by silhouette = {int(h['k'])}: ARI vs lr "
                    f"{_fmt(h['ari_lr'])}, vs init {_fmt(h['ari_init'])})")
        ok = h["ari_lr_at_k_lr"] >= ari_clustered
        rows.append({"figure": "Fig 5", "claim": "converged networks cluster by learning rate",
                     "measured": measured, "verdict": "reproduces" if ok else "no"})
    if dynamics is not None:
        raw = dynamics.bottom_up("pwcca", "raw")
        norm = dynamics.bottom_up("pwcca", "normalised")
        c = dynamics.converged
        layers = dynamics.hidden_layers

        def steps(scale):
            return ", ".join(f"{layer} {c.loc[('pwcca', scale), f'converged_{layer}']:g}"
                             for layer in layers)

        d = dynamics.depth_ordered
        measured = (f"converged at epoch (raw < {dynamics.threshold:g}): {steps('raw')}; "
                    f"normalised (< {dynamics.normalised_threshold:g} of start): "
                    f"{steps('normalised')}; depth-ordered at "
                    f"{d.loc[('pwcca', 'raw'), 'steps_ordered']}/"
                    f"{d.loc[('pwcca', 'raw'), 'steps']} steps raw, "
                    f"{d.loc[('pwcca', 'normalised'), 'steps_ordered']}/"
                    f"{d.loc[('pwcca', 'normalised'), 'steps']} normalised")
        verdict = "reproduces" if raw and norm else "partly" if raw else "no"
        rows.append({"figure": "Fig 6", "claim": "layers converge bottom-up over training",
                     "measured": measured, "verdict": verdict})
    if width is not None:
        tr = width.trend
        measured = "; ".join(
            f"{layer}: Spearman(width, distance) {_fmt(tr.loc[layer, 'spearman_subsampled'])} "
            f"subsampled to {width.n_neurons}, {_fmt(tr.loc[layer, 'spearman_full'])} whole"
            for layer in tr.index)
        head = tr.loc[width.layer, "spearman_subsampled"] < 0
        every = bool((tr["spearman_subsampled"] < 0).all())
        rows.append({"figure": "Fig 4", "claim": "wider networks converge to more similar "
                     "solutions", "measured": measured,
                     "verdict": "reproduces" if head and every else "partly" if head else "no"})
        c = width.accuracy_correlation
        if c is not None:
            rows.append({"figure": "Fig 4b", "claim": "networks closer to their group reach "
                         "higher test accuracy",
                         "measured": f"Pearson r = {_fmt(c.r)} (p = {c.p:.2g}, n = {c.n}) "
                                     f"across all widths, {width.layer}, "
                                     f"{width.n_neurons} neurons",
                         "verdict": "reproduces" if c.r < 0 and c.p < 0.05 else "no"})
    if toy is not None:
        s = toy.summary
        low = s.index.min()
        below = s["pwcca_below_mean_cca_everywhere"]
        measured = "; ".join(
            f"noise std {n:g}: mean PWCCA {_fmt(s.loc[n, 'pwcca'])} vs mean CCA "
            f"{_fmt(s.loc[n, 'mean_cca'])} vs SVCCA {_fmt(s.loc[n, 'svcca'])}" for n in s.index)
        verdict = ("reproduces" if below.all() else "partly" if below.loc[low] else "no")
        rows.append({"figure": "Fig 2", "claim": "PWCCA is robust to noise directions where "
                     "mean CCA is not", "measured": measured, "verdict": verdict})
        sv, pw, mc = (s.loc[low, k] for k in ("svcca", "pwcca", "mean_cca"))
        rows.append({"figure": "Fig 2", "claim": "SVCCA lies between mean CCA and PWCCA",
                     "measured": f"noise std {low:g}: PWCCA {_fmt(pw)}, SVCCA {_fmt(sv)}, "
                                 f"mean CCA {_fmt(mc)} (means over signal fractions)",
                     "verdict": "reproduces" if min(pw, mc) <= sv <= max(pw, mc) else "no"})
    return pd.DataFrame(rows, columns=["figure", "claim", "measured", "verdict"])
