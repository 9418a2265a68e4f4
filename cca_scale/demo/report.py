"""The demo's tables, plots and report files (text, HTML, JSON). Nothing here prints."""

from __future__ import annotations

import html
import json
import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cca_scale._json import json_safe

__all__ = ["render_text", "write_plots", "write_reports"]

RULE = "-" * 78


def _f(x: Any, digits: int = 3) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    return "nan" if not math.isfinite(x) else f"{x:.{digits}f}"


def _pm(mean: Any, std: Any) -> str:
    return f"{_f(mean)} ± {_f(std)}"


def _table(frame: pd.DataFrame, indent: str = "  ") -> str:
    text = frame.to_string()
    return "\n".join(indent + line for line in text.splitlines())


def _lr(x: float) -> str:
    return f"{x:g}"


# -- plots -------------------------------------------------------------------------------------
def _plot_toy(toy, path: Path) -> None:
    from matplotlib.figure import Figure

    noises = list(toy.table.index.get_level_values("noise_std").unique())
    fig = Figure(figsize=(3.6 * len(noises), 3.4))
    axes = fig.subplots(1, len(noises), sharey=True, squeeze=False)[0]
    for ax, noise in zip(axes, noises):
        part = toy.table.loc[noise]
        for metric, label, colour in (("pwcca", "PWCCA", "tab:red"),
                                      ("mean_cca", "mean CCA", "tab:blue"),
                                      ("svcca", "SVCCA (99% var.)", "tab:green")):
            ax.plot(part.index, part[metric], marker="o", label=label, color=colour)
        ax.set_title(f"noise std {noise:g} (signal std 1)", fontsize=9)
        ax.set_xlabel("fraction of signal dimensions")
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("distance (shared signal only)")
    axes[0].legend(fontsize=8, frameon=False)
    fig.suptitle("Fig 2: toy layers sharing a signal subspace", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def _plot_layer_maps(D, groups: dict, out: Path) -> dict[str, Path]:
    """Layer-by-layer PWCCA maps: two generalizing networks, and a generalizing vs a memorizing
    one, on one colour scale."""
    from cca_scale.analysis import plot_layer_map

    gen, mem = list(groups["generalizing"]), list(groups["memorizing"])
    if len(gen) < 2 or not mem:
        return {}
    shown = [("layer_map_generalizing", gen[0], gen[1]),
             ("layer_map_gen_vs_mem", gen[0], mem[0])]
    blocks = [D.layer_block(a, b).values for _, a, b in shown]
    vmax = float(max(np.nanmax(v) for v in blocks))
    files = {}
    for key, a, b in shown:
        files[key] = out / f"{key}.png"
        plot_layer_map(D, a, b, path=files[key], vmin=0.0, vmax=vmax,
                       title=f"PWCCA distance, layer by layer: {a} (rows) vs {b}")
    return files


def write_plots(report, dist: dict, *, groups: dict,
                layer_maps: dict | None = None) -> dict[str, Path]:
    """Heatmaps, group bars, convergence curves, layer maps and the toy plot, as PNG files in the
    folder. ``layer_maps``: ``{metric: multi-layer DistanceMatrix}`` of the final networks."""
    from cca_scale.analysis import plot_convergence, plot_group_bars, plot_heatmap

    out = report.out_dir
    f = report.findings
    files: dict[str, Path] = {}
    layer = f.learning_rates.layer

    files["heatmap"] = out / "heatmap.png"
    final = dist[("final", "pwcca")]
    plot_heatmap(final[layer], attributes=["regime", "lr", "width"],
                 path=files["heatmap"],
                 title=f"PWCCA distance, layer {layer}, all {len(report.networks)} networks "
                       "(dendrogram order)")
    lr_names = list(groups["lr_sweep"])
    D = final[layer].subset(lr_names, lr_names)
    files["heatmap_lr_sweep"] = out / "heatmap_lr_sweep.png"
    plot_heatmap(D, clusters=f.learning_rates.clusters, attributes=["lr", "seed"],
                 path=files["heatmap_lr_sweep"],
                 title=f"Fig 5: learning-rate sweep, layer {layer}, clusters by silhouette")
    files["generalization"] = out / "generalizing_vs_memorizing.png"
    plot_group_bars(f.generalization.stats, path=files["generalization"],
                    title="Fig 3: PWCCA distance within and between regimes",
                    ylabel="PWCCA distance")
    files["width"] = out / "width.png"
    plot_group_bars(f.width.stats.assign(group_a=lambda t: "width " + t["group_a"].astype(str),
                                         group_b=lambda t: "width " + t["group_b"].astype(str)),
                    path=files["width"], ylabel="PWCCA distance",
                    title=f"Fig 4: within-width-group distance, {f.width.n_neurons} neurons "
                          "sampled per layer")
    curves = f.dynamics.curves[f.dynamics.curves["metric"] == "pwcca"]
    order = list(pd.unique(curves["layer"]))
    files["convergence"] = out / "convergence.png"
    plot_convergence(curves[["layer", "network", "step", "distance"]], layer_order=order,
                     threshold=f.dynamics.threshold, path=files["convergence"],
                     title="Fig 6: PWCCA distance to the final epoch",
                     ylabel="PWCCA distance to final epoch")
    files["convergence_normalised"] = out / "convergence_normalised.png"
    plot_convergence(curves[["layer", "network", "step"]].assign(distance=curves["normalised"]),
                     layer_order=order, threshold=f.dynamics.normalised_threshold,
                     path=files["convergence_normalised"],
                     title="Fig 6, normalised by each layer's distance at the first epoch",
                     ylabel="distance / distance at epoch 1")
    if layer_maps and "pwcca" in layer_maps:
        files.update(_plot_layer_maps(layer_maps["pwcca"], groups, out))
    files["toy"] = out / "toy_signal_noise.png"
    _plot_toy(f.toy, files["toy"])
    return files


# -- text --------------------------------------------------------------------------------------
def _generalization_text(g, config) -> list[str]:
    t = g.table
    acc = g.accuracy
    arch = ", ".join([str(config.base_width)] * config.depth)
    lines = [f"1. Generalizing vs memorizing (Fig 3): MLP({arch}), lr {_lr(config.base_lr)}, "
             "true labels vs one fixed shuffle of the train labels"]
    a = pd.DataFrame({
        "networks": acc["n_networks"],
        "train acc (min)": [_f(x) for x in acc["train_accuracy_min"]],
        "test acc": [_f(x) for x in acc["test_accuracy_mean"]],
        "epochs": [f"{x:.0f}" for x in acc["epochs_mean"]],
    }, index=acc.index)
    lines += [_table(a), "", "  PWCCA distance, mean ± std over directed pairs:"]
    shown = pd.DataFrame({
        "within generalizing": [_pm(m, s) for m, s in zip(t["within_generalizing"],
                                                           t["within_generalizing_std"])],
        "within memorizing": [_pm(m, s) for m, s in zip(t["within_memorizing"],
                                                         t["within_memorizing_std"])],
        "inter": [_pm(m, s) for m, s in zip(t["inter"], t["inter_std"])],
        "gen < mem": ["yes" if v else "NO" for v in g.gen_below_mem],
    }, index=t.index)
    lines.append(_table(shown))
    cl = g.clustering
    lines += ["", "  Average-linkage clustering of these networks, k chosen by silhouette:",
              _table(pd.DataFrame({
                  "k": cl["k"], "silhouette": [_f(x) for x in cl["silhouette"]],
                  "ARI vs regime": [_f(x) for x in cl["ari_regime"]],
                  "gen. in one pure cluster": ["yes" if x else "no"
                                               for x in cl["generalizing_cluster"]],
                  "clusters of mem.": cl["memorizing_clusters"],
                  "ARI (k=2)": [_f(x) for x in cl["ari_regime_k2"]]}, index=cl.index))]
    if g.baseline is not None:
        b = g.baseline
        lines += ["", "  Unweighted mean CCA distance (the paper's Fig A9 baseline):"]
        lines.append(_table(pd.DataFrame({
            "within generalizing": [_f(x) for x in b["within_generalizing"]],
            "within memorizing": [_f(x) for x in b["within_memorizing"]],
            "inter": [_f(x) for x in b["inter"]]}, index=b.index)))
    return lines


def _layer_map_text(report) -> list[str]:
    files = report.files
    if "layer_map_generalizing" not in files:
        return []
    text = (f"Layer-by-layer maps (every layer of one network against every layer of another, "
            f"one colour scale): {files['layer_map_generalizing'].name} (two generalizing "
            f"networks) and {files['layer_map_gen_vs_mem'].name} (a generalizing vs a memorizing "
            "one). Read the diagonal, the same layer in both networks: where Fig 3 reproduces it "
            "stays dark (close) at every depth for the two generalizing networks and brightens "
            "in the later layers against the memorizing one.")
    return [""] + textwrap.wrap(text, width=98, initial_indent="  ", subsequent_indent="  ")


def _lr_text(r, config) -> list[str]:
    lines = [f"2. Learning rate vs initialization (Fig 5): lr in "
             f"{{{', '.join(_lr(x) for x in config.lrs)}}} x seeds "
             f"{{{', '.join(map(str, config.lr_seeds))}}} (a seed sets the initial weights and "
             "the batch order)"]
    acc = r.accuracy.reset_index()
    acc = pd.DataFrame({"when": acc["when"], "lr": [_lr(x) for x in acc["lr"]],
                        "train acc (mean)": [_f(x) for x in acc["train_accuracy_mean"]],
                        "train acc (min)": [_f(x) for x in acc["train_accuracy_min"]]})
    lines += ["  Train accuracy per learning-rate group, at each clustered epoch:",
              _table(acc.set_index(["when", "lr"])), ""]
    c = r.clustering.reset_index()
    shown = pd.DataFrame({
        "when": c["when"], "layer": c["layer"], "k": c["k"],
        "silhouette": [_f(x) for x in c["silhouette"]],
        "ARI vs lr": [_f(x) for x in c["ari_lr"]],
        "ARI vs init": [_f(x) for x in c["ari_init"]],
        "ARI vs lr (k=#lr)": [_f(x) for x in c["ari_lr_at_k_lr"]],
        "ARI vs init (k=#init)": [_f(x) for x in c["ari_init_at_k_init"]],
    }).set_index(["when", "layer"])
    lines += ["  Average-linkage clusters of the symmetrised PWCCA distances (k chosen by "
              "silhouette, and cut at k = number of lrs / inits):", _table(shown), ""]
    p = r.pairs
    pairs = p.pivot(index="layer", columns="relation", values="mean")[
        ["same init, different lr", "same lr, different init", "both different"]]
    lines += ["  Mean PWCCA distance of pairs of final networks by what they share:",
              _table(pairs.map(_f))]
    lp = r.lr_pairs.reset_index()
    lines += ["", f"  At {r.layer}, by pair of learning rates: mean distance of same-init and "
              "different-init pairs:",
              _table(pd.DataFrame({"lr a": [_lr(x) for x in lp["lr_a"]],
                                   "lr b": [_lr(x) for x in lp["lr_b"]],
                                   "same init": [_f(x) for x in lp["same_init"]],
                                   "different init": [_f(x) for x in lp["different_init"]]})
                     .set_index(["lr a", "lr b"]))]
    h = r.headline()
    for when in [w for w in r.clustering.index.get_level_values("when").unique()
                 if w != "final"]:
        e = r.clustering.loc[(when, r.layer)]
        lines.append(f"  At {r.layer}: converged, ARI vs lr {_f(h['ari_lr_at_k_lr'])} and vs init "
                     f"{_f(h['ari_init_at_k_init'])}; at {when}, ARI vs lr "
                     f"{_f(e['ari_lr_at_k_lr'])} and vs init {_f(e['ari_init_at_k_init'])}.")
    return lines


def _dynamics_text(d, config) -> list[str]:
    lines = [f"3. Convergence over training (Fig 6): each layer at each epoch vs the same layer "
             f"at the final epoch, {len(pd.unique(d.curves['network']))} generalizing networks "
             "(mean over networks)"]
    m = d.mean_curves.loc["pwcca"]
    layers = [c for c in m.columns if not c.startswith("norm_")]
    acc = d.accuracy.reindex(m.index)
    shown = pd.DataFrame({"train acc": [_f(x) for x in acc]},
                         index=pd.Index([int(s) for s in m.index], name="epoch"))
    for layer in layers:
        shown[f"{layer}"] = [_f(x) for x in m[layer]]
    for layer in d.hidden_layers:
        shown[f"{layer} norm."] = [_f(x, 2) for x in m[f"norm_{layer}"]]
    lines += ["  PWCCA distance to the final epoch (norm.: divided by the distance at the first "
              "recorded epoch):", _table(shown), ""]
    conv = d.converged.reset_index()
    conv_shown = pd.DataFrame({"metric": conv["metric"], "scale": conv["scale"],
                               "threshold": [f"{x:g}" for x in conv["threshold"]]})
    for layer in d.hidden_layers:
        conv_shown[f"{layer} converged at"] = [
            "never" if not np.isfinite(x) else f"{x:g}" for x in conv[f"converged_{layer}"]]
    conv_shown["bottom-up"] = ["yes" if x else "no" for x in conv["bottom_up"]]
    order = d.depth_ordered.reset_index()
    conv_shown["depth-ordered steps"] = [f"{a}/{b}" for a, b in
                                         zip(order["steps_ordered"], order["steps"])]
    lines += ["  Epoch from which each hidden layer stays below the threshold (raw: distance; "
              "normalised: fraction of its first distance); depth-ordered: epochs where "
              f"{' < '.join(d.hidden_layers)}:", _table(conv_shown.set_index(["metric", "scale"]))]
    return lines


def _width_text(w, config) -> list[str]:
    lines = [f"4. Width (Fig 4): {len(config.seeds)} networks per width "
             f"{{{', '.join(map(str, config.widths))}}}; distances within each width group, "
             f"whole layers and {w.n_neurons} random neurons per layer"]
    t = w.table.reset_index()
    shown = pd.DataFrame({
        "layer": t["layer"], "width": t["width"],
        "whole layer": [_pm(m, s) for m, s in zip(t["full"], t["full_std"])],
        f"{w.n_neurons} neurons": [_pm(m, s) for m, s in zip(t["subsampled"],
                                                            t["subsampled_std"])],
        "test acc": [_f(x) for x in t["test_accuracy"]]}).set_index(["layer", "width"])
    lines.append(_table(shown))
    tr = w.trend
    lines += ["", "  Spearman correlation of width with the within-group distance "
              "(negative: wider networks are more alike):",
              _table(pd.DataFrame({"whole layer": [_f(x, 2) for x in tr["spearman_full"]],
                                   f"{w.n_neurons} neurons": [_f(x, 2) for x in
                                                              tr["spearman_subsampled"]]},
                                  index=tr.index))]
    c = w.accuracy_correlation
    if c is not None:
        lines.append(f"  Each network's mean distance to its width group ({w.layer}, "
                     f"{w.n_neurons} neurons) vs its test accuracy: Pearson r = {_f(c.r, 2)} "
                     f"(p = {c.p:.2g}, n = {c.n}; the paper's Fig 4b: r = -0.96)")
    return lines


def _toy_text(toy) -> list[str]:
    lines = [f"5. Toy signal and noise (Fig 2): two random {toy.n_neurons}-neuron layers over "
             f"{toy.n_datapoints} datapoints sharing only their signal dimensions (std 1); the "
             "ideal distance of the shared part is 0"]
    t = toy.table.reset_index()
    shown = pd.DataFrame({"noise std": [f"{x:g}" for x in t["noise_std"]],
                          "signal fraction": [f"{x:.2f}" for x in t["signal_fraction"]],
                          "PWCCA": [_f(x) for x in t["pwcca"]],
                          "mean CCA": [_f(x) for x in t["mean_cca"]],
                          "SVCCA": [_f(x) for x in t["svcca"]]}).set_index(
        ["noise std", "signal fraction"])
    lines.append(_table(shown))
    return lines


def _details(report, figure: str) -> list[str]:
    """Computed context printed under a finding that did not (fully) reproduce."""
    f = report.findings
    out = []
    if figure == "Fig 5":
        lr = f.learning_rates
        h = lr.headline()
        pairs = lr.pairs[lr.pairs["layer"] == lr.layer].set_index("relation")["mean"]
        out.append(f"At {lr.layer}: ARI vs init {_f(h['ari_init_at_k_init'])} at k = number of "
                   f"seeds; mean distance of same-init/different-lr pairs "
                   f"{_f(pairs['same init, different lr'])}, same-lr/different-init "
                   f"{_f(pairs['same lr, different init'])}, both different "
                   f"{_f(pairs['both different'])}.")
        lp = lr.lr_pairs
        lp = lp[lp.index.get_level_values(0) != lp.index.get_level_values(1)]
        closest = lp[lp["same_init"] < lp["different_init"]]
        if len(closest):
            out.append("Same-init pairs are closer than different-init pairs for lr pairs "
                       + ", ".join(f"({_lr(a)}, {_lr(b)})" for a, b in closest.index)
                       + f" (of {len(lp)}).")
    if figure == "Fig 2":
        toy = f.toy.summary
        worse = [n for n in toy.index if not toy.loc[n, "pwcca_below_mean_cca_everywhere"]]
        better = [n for n in toy.index if toy.loc[n, "pwcca_below_mean_cca_everywhere"]]
        if worse:
            why = (": the projection weights favour high-variance directions, which are noise "
                   "there" if all(n >= 1 for n in worse) else "")
            out.append("PWCCA is below mean CCA at every signal fraction for noise std "
                       f"{', '.join(f'{n:g}' for n in better) or 'none'} (signal std 1), not for "
                       f"noise std {', '.join(f'{n:g}' for n in worse)}{why}.")
    if figure == "Fig 6" and f.dynamics.bottom_up("pwcca", "raw") \
            and not f.dynamics.bottom_up("pwcca", "normalised"):
        d = f.dynamics.depth_ordered
        raw, norm = d.loc[("pwcca", "raw")], d.loc[("pwcca", "normalised")]
        out.append(f"Raw distances grow with depth at {raw['steps_ordered']} of "
                   f"{raw['steps']} epochs, but divided by each layer's "
                   f"first distance only at {norm['steps_ordered']}: the "
                   "deeper layers start further from their final state rather than converging "
                   "later.")
    return out


def _not_reproduced(report) -> list[str]:
    v = report.findings.verdicts
    misses = v[v["verdict"] != "reproduces"]
    if misses.empty:
        return ["  Everything checked reproduced in this run."]
    out = []
    seen = set()
    for _, row in misses.iterrows():
        word = "only partly reproduces" if row["verdict"] == "partly" else "does NOT reproduce"
        out.append(f"  - {row['figure']} {word}: {row['claim']}. Measured: {row['measured']}.")
        if row["figure"] not in seen:
            seen.add(row["figure"])
            out += [f"    {line}" for line in _details(report, row["figure"])]
    return out


def render_text(report, *, config) -> str:
    """The plain-text report: what ran, the verdicts, one section per finding."""
    f = report.findings
    t = report.timings
    nets = report.networks
    lines = [
        "cca-scale demo: projection weighted CCA (Morcos, Raghu & Bengio, NeurIPS 2018) on "
        "networks trained just now",
        RULE,
        f"{len(nets)} MLPs ({config.depth} hidden ReLU layers, Adam, batch 64) trained on "
        f"scikit-learn's bundled digits ({report.n_datapoints} train images, "
        f"{1797 - report.n_datapoints} test). "
        "Every comparison uses the activations on the training images, as the paper does.",
        f"{'Quick sweep (--quick). ' if report.quick else ''}Ran on a local Dask cluster of "
        f"{report.n_workers} single-threaded worker processes in {t.get('total', 0):.0f} s "
        f"(train + store {t.get('train_and_store', 0):.0f} s, compare "
        f"{t.get('compare', 0):.0f} s, analysis + plots "
        f"{t.get('analysis', 0) + t.get('plots', 0):.0f} s).",
        "",
        "Verdicts (criteria in cca_scale.demo.findings.verdicts):",
    ]
    for _, row in f.verdicts.iterrows():
        lines.append(f"  {row['figure']:<6} {row['verdict'].upper():<11} {row['claim']}")
        lines.append(f"  {'':<6} {'':<11} measured: {row['measured']}")
    lines += ["", RULE]
    lines += _generalization_text(f.generalization, config)
    lines += _layer_map_text(report) + ["", RULE]
    lines += _lr_text(f.learning_rates, config) + ["", RULE]
    lines += _dynamics_text(f.dynamics, config) + ["", RULE]
    lines += _width_text(f.width, config) + ["", RULE]
    lines += _toy_text(f.toy) + ["", RULE]
    lines += ["What does not reproduce here:"] + _not_reproduced(report)
    return "\n".join(lines) + "\n"


# -- files -------------------------------------------------------------------------------------
def _records(frame: pd.DataFrame) -> list[dict]:
    return json_safe(frame.reset_index().to_dict(orient="records"))


def _findings_json(report) -> dict:
    f = report.findings
    corr = f.width.accuracy_correlation
    return json_safe({
        "quick": report.quick, "n_workers": report.n_workers, "timings": report.timings,
        "verdicts": _records(f.verdicts.set_index("figure")),
        "generalization": _records(f.generalization.table),
        "generalization_mean_cca": (_records(f.generalization.baseline)
                                    if f.generalization.baseline is not None else None),
        "generalization_accuracy": _records(f.generalization.accuracy),
        "learning_rates": {"layer": f.learning_rates.layer,
                           "clustering": _records(f.learning_rates.clustering),
                           "pairs": _records(f.learning_rates.pairs.set_index("layer")),
                           "accuracy": _records(f.learning_rates.accuracy)},
        "dynamics": {"mean_curves": _records(f.dynamics.mean_curves),
                     "converged": _records(f.dynamics.converged),
                     "depth_ordered": _records(f.dynamics.depth_ordered)},
        "width": {"table": _records(f.width.table), "trend": _records(f.width.trend),
                  "accuracy_correlation": None if corr is None else {"r": corr.r, "p": corr.p,
                                                                     "n": corr.n}},
        "toy": {"table": _records(f.toy.table), "summary": _records(f.toy.summary)},
        "networks": _records(report.networks),
        "files": {k: str(v) for k, v in report.files.items()},
    })


def _html(report) -> str:
    figures = [("heatmap", "All networks, last hidden layer"),
               ("generalization", "Fig 3: generalizing vs memorizing"),
               ("layer_map_generalizing", "Layer by layer: two generalizing networks"),
               ("layer_map_gen_vs_mem", "Layer by layer: generalizing vs memorizing"),
               ("heatmap_lr_sweep", "Fig 5: learning-rate sweep"),
               ("convergence", "Fig 6: convergence over training"),
               ("convergence_normalised", "Fig 6, normalised"),
               ("width", "Fig 4: width"),
               ("toy", "Fig 2: toy signal and noise")]
    imgs = "\n".join(
        f"<figure><img src=\"{html.escape(report.files[key].name)}\" alt=\"{html.escape(cap)}\">"
        f"<figcaption>{html.escape(cap)}</figcaption></figure>"
        for key, cap in figures if key in report.files)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cca-scale demo</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; }}
pre {{ font-size: 12px; background: #f6f6f6; padding: 1em; overflow-x: auto; }}
figure {{ display: inline-block; margin: 0.5em; vertical-align: top; }}
img {{ max-width: 520px; border: 1px solid #ddd; }}
</style></head><body>
<h1>cca-scale demo</h1>
<p>Projection weighted CCA (Morcos, Raghu &amp; Bengio, NeurIPS 2018) on networks trained in this
run. Every number below was computed in the run; <code>findings.json</code> holds them all.</p>
{imgs}
<h2>Report</h2>
<pre>{html.escape(report.text)}</pre>
</body></html>
"""


def write_reports(report, *, config) -> dict[str, Path]:
    """``report.txt``, ``report.html``, ``findings.json`` and ``networks.csv``; sets
    ``report.text``."""
    out = report.out_dir
    files = {"report_txt": out / "report.txt", "report_html": out / "report.html",
             "findings_json": out / "findings.json", "networks_csv": out / "networks.csv"}
    report.files.update(files)
    report.text = render_text(report, config=config)
    files["report_txt"].write_text(report.text, encoding="utf-8")
    files["report_html"].write_text(_html(report), encoding="utf-8")
    report.networks.to_csv(files["networks_csv"])
    files["findings_json"].write_text(json.dumps(_findings_json(report), indent=1),
                                      encoding="utf-8")
    return files
