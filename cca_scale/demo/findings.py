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

from cca_scale.demo.training_findings import (  # re-exported: every finding is here
    DynamicsFinding,
    ToyFinding,
    WidthFinding,
    _subset,
    dynamics,
    toy_signal_noise,
    width,
)
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
