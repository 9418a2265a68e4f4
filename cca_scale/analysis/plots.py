"""Figures of the paper, headless: each function builds a ``matplotlib.figure.Figure`` (no pyplot
state, no display needed), returns it, and saves it when given a path (PNG, SVG or PDF by the
file's extension).

- :func:`plot_heatmap`: distances ordered by the dendrogram, attribute colour bars on the left
  and top (Fig 5a).
- :func:`plot_dendrogram`: the hierarchy, coloured by the clusters' cut.
- :func:`plot_group_bars`: within/between-group mean distance per layer with std error bars
  (Figs 3, 4a).
- :func:`plot_convergence`: distance to the final step over training, one line per layer (Fig 6).
- :func:`plot_signal_noise`: similarity of the stable and unstable directions (Fig 1d-f).
- :func:`plot_layer_map`: layer-by-layer distances of two networks, or their mean over pairs of
  networks, from a multi-layer matrix.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cca_scale.analysis._common import attribute_values, check_distance_matrix
from cca_scale.errors import CcaScaleError
from cca_scale.matrix import DistanceMatrix

__all__ = ["FIGURE_FORMATS", "plot_convergence", "plot_dendrogram", "plot_group_bars",
           "plot_heatmap", "plot_layer_map", "plot_signal_noise"]

FIGURE_FORMATS = (".png", ".svg", ".pdf")
_MAX_TICK_LABELS = 40


def _figure(figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout=None)


def _check_path(path) -> Path | None:
    if path is None:
        return None
    path = Path(path)
    if path.suffix.lower() not in FIGURE_FORMATS:
        raise CcaScaleError(
            f"Cannot save a figure as {str(path)!r}: the extension must be one of "
            f"{list(FIGURE_FORMATS)}."
        )
    if not path.parent.exists():
        raise CcaScaleError(f"The folder {str(path.parent)!r} does not exist.")
    return path


def _finish(fig, path: Path | None):
    if path is not None:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


_PALETTES = ("tab10", "Set2", "Dark2", "Set1", "Accent")


def _category_colours(values: Sequence[Any], palette: int = 0):
    """A colour per distinct value: a qualitative palette (a different one for each ``palette``
    index, so that neighbouring colour bars differ) for categories, viridis for many numbers."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    unique = list(pd.unique(pd.Series(list(values), dtype=object)))
    try:
        unique = sorted(unique)
    except TypeError:
        unique = sorted(unique, key=str)
    numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                  for v in unique)
    if numeric and len(unique) > 20:
        norm = Normalize(min(unique), max(unique))
        cmap = colormaps["viridis"]
        return {v: cmap(norm(v)) for v in unique}, False
    name = _PALETTES[palette % len(_PALETTES)]
    cmap = colormaps[name if len(unique) <= colormaps[name].N else "tab20"]
    return {v: cmap(i % cmap.N) for i, v in enumerate(unique)}, True


def _dendrogram_order(D: DistanceMatrix) -> list[str]:
    from cca_scale.analysis.clustering import cluster

    if len(D.row_labels) < 3:
        return list(D.row_labels)
    return cluster(D, n_clusters=1).ordered_labels


def plot_heatmap(D: DistanceMatrix, *, clusters: Any = None, attributes: Sequence[str] = (),
                 order: Sequence[str] | None = None, path: str | os.PathLike | None = None,
                 cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None,
                 title: str | None = None):
    """Distance heatmap ordered by the dendrogram, with attribute colour bars (Fig 5a).

    Parameters
    ----------
    D : DistanceMatrix
        Square. Shown as stored (directed: row ``i``, column ``j`` is ``d(i, j)``).
    clusters : ClusterResult, optional
        Orders the networks by its dendrogram and adds a ``cluster`` colour bar.
    attributes : sequence of str
        Network attributes shown as colour bars on the left and top (e.g. ``['lr']``).
    order : sequence of str, optional
        Network ids in display order; default the leaves of an average-linkage dendrogram of
        ``D.symmetric('mean')`` (or of ``clusters``).
    path : str or path-like, optional
        Save to this file (``.png``, ``.svg`` or ``.pdf``).
    cmap, vmin, vmax
        Colour map and limits of the distances.
    title : str, optional
        Default: the metric and layer of ``D.metadata``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.patches import Patch

    D = check_distance_matrix(D)
    labels = D.labels
    path = _check_path(path)
    if isinstance(attributes, str):
        attributes = [attributes]
    if order is None:
        order = clusters.ordered_labels if clusters is not None else _dendrogram_order(D)
    order = [str(o) for o in order]
    if sorted(order) != sorted(labels):
        raise CcaScaleError("order must list every network id of the matrix exactly once.")
    shown = D.subset(order, order)
    bars: list[tuple[str, list[Any]]] = []
    if clusters is not None:
        bars.append(("cluster", list(clusters.labels.loc[order])))
    for attr in attributes:
        bars.append((attr, list(attribute_values(shown, attr))))
    nb = len(bars)
    n = len(order)
    size = 6.0 + (1.5 if nb else 0.0)
    fig = _figure((size + 0.4 * nb + 1.2, size + 0.4 * nb))
    bar_w = 0.035
    grid = fig.add_gridspec(nb + 1, nb + 2,
                            width_ratios=[bar_w] * nb + [1.0, 0.04],
                            height_ratios=[bar_w] * nb + [1.0],
                            wspace=0.02, hspace=0.02)
    ax = fig.add_subplot(grid[nb, nb])
    image = ax.imshow(shown.values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                      interpolation="nearest")
    cax = fig.add_subplot(grid[nb, nb + 1])
    metric = D.metadata.get("metric", "distance")
    fig.colorbar(image, cax=cax, label=f"{metric} distance")
    ax.set_xticks([])
    ax.set_yticks([])
    if n <= _MAX_TICK_LABELS:
        ax.set_xticks(range(n), order, rotation=90, fontsize=7)
        if not bars:  # with colour bars the left side is theirs
            ax.set_yticks(range(n), order, fontsize=7)
    handles = []
    for b, (name, values) in enumerate(bars):
        colours, legend = _category_colours(values, palette=b)
        strip = np.array([colours[v] for v in values])
        left = fig.add_subplot(grid[nb, b])
        left.imshow(strip[:, None, :], aspect="auto", interpolation="nearest")
        left.set_xticks([0], [name], rotation=90, fontsize=7)
        left.set_yticks([])
        top = fig.add_subplot(grid[b, nb])
        top.imshow(strip[None, :, :], aspect="auto", interpolation="nearest")
        top.set_xticks([])
        top.set_yticks([0], [name], fontsize=7)
        top.yaxis.tick_right()
        if legend and len(colours) <= 20:
            handles += [Patch(color=c, label=f"{name}={v}") for v, c in colours.items()]
    if handles:
        fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.92, 0.98), fontsize=7,
                   frameon=False)
    if title is None:
        layer = D.metadata.get("layer")
        title = f"{metric} distance" + (f", layer {layer}" if layer else "")
    fig.suptitle(title)
    return _finish(fig, path)


def plot_dendrogram(data: Any, *, path: str | os.PathLike | None = None,
                    method: str = "average", title: str | None = None):
    """The dendrogram of the networks' symmetrised distances, coloured by cluster.

    Parameters
    ----------
    data : ClusterResult or DistanceMatrix
        A clustering (its linkage; branches coloured by its ``k`` clusters), or a square matrix
        (average linkage of ``D.symmetric('mean')``).
    path : str or path-like, optional
        Save to this file.
    method : str
        Linkage method when ``data`` is a DistanceMatrix.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from scipy.cluster.hierarchy import dendrogram

    from cca_scale.analysis.clustering import ClusterResult, cluster

    path = _check_path(path)
    if isinstance(data, DistanceMatrix):
        data = cluster(data, n_clusters=1, method=method)
    if not isinstance(data, ClusterResult):
        raise CcaScaleError(
            f"plot_dendrogram needs a ClusterResult or a DistanceMatrix; got "
            f"{type(data).__name__}."
        )
    Z = data.linkage
    labels = list(data.distances.row_labels)
    n = len(labels)
    if n < 2:
        raise CcaScaleError("A dendrogram needs at least 2 networks.")
    fig = _figure((max(6.0, min(0.25 * n, 16.0)), 4.5))
    ax = fig.add_subplot()
    heights = Z[:, 2]
    if 1 < data.k < n:
        threshold = 0.5 * (heights[n - data.k - 1] + heights[n - data.k])
    else:
        threshold = 0.0
    dendrogram(Z, ax=ax, labels=labels if n <= 80 else None, color_threshold=threshold,
               above_threshold_color="0.5", leaf_rotation=90,
               leaf_font_size=7 if n <= 40 else 5, no_labels=n > 80)
    if threshold > 0:
        ax.axhline(threshold, color="0.3", linestyle=":", linewidth=1)
    ax.set_ylabel(f"{data.distances.metadata.get('metric', '')} distance (mean of both "
                  "directions)".strip())
    ax.set_title(title or f"{data.method} linkage, k = {data.k}")
    return _finish(fig, path)


def _series_name(row) -> str:
    return str(row["group_a"]) if row["kind"] == "within" else \
        f"{row['group_a']} vs {row['group_b']}"


def plot_group_bars(table: pd.DataFrame, *, path: str | os.PathLike | None = None,
                    title: str | None = None, ylabel: str = "distance"):
    """Within- and between-group mean distance per layer, with std error bars (Figs 3, 4a).

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`group_statistics` (columns ``layer, group_a, group_b, kind, mean, std,
        n_pairs``). Layers keep their order in the table.
    path : str or path-like, optional
        Save to this file.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from cca_scale.analysis.groups import GROUP_COLUMNS

    missing = [c for c in GROUP_COLUMNS if c not in getattr(table, "columns", [])]
    if missing:
        raise CcaScaleError(
            f"plot_group_bars needs the table of group_statistics; missing columns {missing}."
        )
    path = _check_path(path)
    table = table.assign(series=[_series_name(r) for _, r in table.iterrows()])
    layers = list(pd.unique(table["layer"]))
    series = list(pd.unique(table["series"]))
    fig = _figure((max(5.0, 1.0 + 0.9 * len(layers) * max(1, len(series)) ** 0.5), 4.0))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(series))
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(series) <= 10 else "tab20"]
    x = np.arange(len(layers))
    for s, name in enumerate(series):
        part = table[table["series"] == name].set_index("layer").reindex(layers)
        kind = part["kind"].dropna().iloc[0] if part["kind"].notna().any() else "within"
        ax.bar(x + (s - (len(series) - 1) / 2) * width, part["mean"].to_numpy(dtype=float),
               width, yerr=part["std"].to_numpy(dtype=float), capsize=3, label=name,
               color=cmap(s % cmap.N), hatch="//" if kind == "between" else None,
               edgecolor="white" if kind == "between" else None)
    ax.set_xticks(x, [str(layer) for layer in layers])
    ax.set_xlabel("layer")
    ax.set_ylabel(f"{ylabel} (mean ± std over pairs)")
    ax.legend(fontsize=8, frameon=False)
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def plot_convergence(data: Any, *, threshold: float | None = None,
                     layer_order: Sequence[str] | None = None,
                     path: str | os.PathLike | None = None, title: str | None = None,
                     ylabel: str = "distance to final step"):
    """Each layer's distance to its final representation over training (Fig 6).

    Parameters
    ----------
    data : DataFrame or DistanceMatrices
        As taken by :func:`convergence_curves`. With several networks, the line is their mean
        and the band ± one std.
    threshold : float, optional
        Draw it, and mark the step at which each layer converges below it
        (:func:`convergence_order`).
    layer_order : sequence of str, optional
        Bottom to top; colours run from dark (bottom) to light (top).
    path : str or path-like, optional
        Save to this file.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib import colormaps

    from cca_scale.analysis.dynamics import convergence_curves, convergence_order

    path = _check_path(path)
    curves = convergence_curves(data, layers=layer_order) if isinstance(data, pd.DataFrame) \
        else convergence_curves(data)
    order = list(layer_order) if layer_order is not None else list(pd.unique(curves["layer"]))
    steps = None
    if threshold is not None:
        steps = convergence_order(curves, threshold=threshold, layer_order=order).steps
    fig = _figure((6.5, 4.0))
    ax = fig.add_subplot()
    cmap = colormaps["viridis"]
    for i, layer in enumerate(order):
        part = curves[curves["layer"] == layer].groupby("step")["distance"]
        mean, std = part.mean(), part.std(ddof=0).fillna(0.0)
        colour = cmap(i / max(1, len(order) - 1) * 0.9)
        ax.plot(mean.index, mean.to_numpy(), color=colour, label=str(layer), marker=".")
        if (std > 0).any():
            ax.fill_between(mean.index, mean - std, mean + std, color=colour, alpha=0.2)
        if steps is not None and pd.notna(steps[layer]):
            ax.axvline(steps[layer], color=colour, linestyle=":", linewidth=1)
    if threshold is not None:
        ax.axhline(threshold, color="0.4", linestyle="--", linewidth=1, label="threshold")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, frameon=False)
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def plot_signal_noise(split: Any, *, path: str | os.PathLike | None = None,
                      title: str | None = None):
    """CCA similarity over training of the stable (S) and unstable (B) directions (Fig 1d-f).

    Parameters
    ----------
    split : SignalNoiseSplit
        From :func:`signal_noise_split`.
    path : str or path-like, optional
        Save to this file.

    Returns
    -------
    matplotlib.figure.Figure
    """
    path = _check_path(path)
    frame = split.to_frame()
    fig = _figure((6.0, 3.8))
    ax = fig.add_subplot()
    try:
        x = frame["step"].to_numpy(dtype=float)
        ticks = None
    except (TypeError, ValueError):
        x = np.arange(len(frame))
        ticks = [str(s) for s in frame["step"]]
    ax.plot(x, frame["signal"], marker="o", label=f"top {split.n_directions} (signal, S)")
    ax.plot(x, frame["noise"], marker="o", label=f"bottom {split.n_directions} (noise, B)")
    if ticks is not None:
        ax.set_xticks(x, ticks)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("training step")
    ax.set_ylabel("CCA similarity (mean rho)")
    ax.legend(fontsize=8, frameon=False)
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def _layer_map(D: DistanceMatrix, network_a: Any, network_b: Any, *, pairs: Any, by: Any,
               layers: Sequence[str] | None) -> tuple[DistanceMatrix, str, str, int]:
    """The (mean) layer-by-layer block shown by :func:`plot_layer_map`, the axes' names and the
    number of network pairs averaged."""
    if pairs is not None:
        if network_a is not None or network_b is not None or by is not None:
            raise CcaScaleError("Give either pairs= or network_a/network_b (with by=), not both.")
        pairs = [(str(a), str(b)) for a, b in pairs]
        row_name = col_name = None
    elif network_a is None:
        raise CcaScaleError("Give network_a (a network id, or a group value with by=) or pairs=.")
    elif by is not None:
        group_a = network_a
        group_b = network_a if network_b is None else network_b
        items = D.row_info
        if by not in items.columns or "network" not in items.columns:
            raise CcaScaleError(
                f"by={by!r} needs 'network' and {by!r} columns in the matrix's row_info; it has "
                f"{sorted(map(str, items.columns))}.")
        group = items.drop_duplicates("network").set_index("network")[by]
        members = {g: [str(n) for n in group.index[group == g]] for g in (group_a, group_b)}
        for g, nets in members.items():
            if not nets:
                known = sorted(pd.unique(group), key=str)
                raise CcaScaleError(f"No network has {by}={g!r}; the values are {known}.")
        pairs = [(a, b) for a in members[group_a] for b in members[group_b] if a != b]
        if not pairs:
            raise CcaScaleError(f"The group {by}={group_a!r} has one network: no pair to average.")
        row_name, col_name = f"{by}={group_a}", f"{by}={group_b}"
    else:
        network_b = network_a if network_b is None else network_b
        pairs = [(str(network_a), str(network_b))]
        row_name, col_name = str(network_a), str(network_b)
    if not pairs:
        raise CcaScaleError("pairs= is empty: give at least one (network_a, network_b) pair.")
    first = D.layer_block(*pairs[0])
    rows = list(first.row_labels) if layers is None else [str(x) for x in layers]
    cols = list(first.col_labels) if layers is None else rows
    blocks = [D.layer_block(a, b).subset(rows, cols) for a, b in pairs]
    mean = np.mean([blk.values for blk in blocks], axis=0)
    meta = dict(D.metadata, pairs=[list(p) for p in pairs])
    if row_name is None:
        row_name = col_name = f"mean over {len(pairs)} network pair{'s' * (len(pairs) > 1)}"
    return DistanceMatrix(mean, rows, cols, meta), row_name, col_name, len(pairs)


def plot_layer_map(D: DistanceMatrix, network_a: Any = None, network_b: Any = None, *,
                   pairs: Sequence[tuple[str, str]] | None = None, by: str | None = None,
                   layers: Sequence[str] | None = None, path: str | os.PathLike | None = None,
                   cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None,
                   title: str | None = None):
    """Layer-by-layer distances of two networks, or their mean over network pairs.

    Parameters
    ----------
    D : DistanceMatrix
        A multi-layer matrix: items are (network, layer) pairs, with ``network`` and ``layer``
        columns in ``row_info``/``col_info`` (see :meth:`DistanceMatrix.layer_block`).
    network_a, network_b : str, optional
        Rows: ``network_a``'s layers; columns: ``network_b``'s (``network_a``'s when None). With
        ``by``, group values instead: the mean over every pair of distinct networks ``(i, j)``,
        ``i`` with ``by == network_a``, ``j`` with ``by == network_b`` (within ``network_a``'s
        group when ``network_b`` is None).
    pairs : sequence of (str, str), optional
        Instead of ``network_a``/``network_b``: the mean over these (row network, column network)
        pairs.
    by : str, optional
        A network attribute (a ``row_info`` column) whose values ``network_a``/``network_b`` are.
    layers : sequence of str, optional
        Layers shown, in this order on both axes; default the first pair's layers as stored.
    path : str or path-like, optional
        Save to this file (``.png``, ``.svg`` or ``.pdf``).
    cmap, vmin, vmax
        Colour map and limits of the distances.
    title : str, optional
        Default: the metric and what is shown.

    Returns
    -------
    matplotlib.figure.Figure
        Cell ``(i, j)`` is ``d(layer i of the row network, layer j of the column network)``
        (directed, as stored), averaged over the pairs.
    """
    D = check_distance_matrix(D)
    path = _check_path(path)
    shown, row_name, col_name, n_pairs = _layer_map(D, network_a, network_b, pairs=pairs, by=by,
                                                     layers=layers)
    n_rows, n_cols = shown.shape
    fig = _figure((1.6 + 0.45 * max(n_cols, 4), 1.2 + 0.45 * max(n_rows, 4)))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(shown.values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                      interpolation="nearest")
    metric = D.metadata.get("metric", "distance")
    fig.colorbar(image, ax=ax, label=f"{metric} distance")
    ax.set_xticks(range(n_cols), shown.col_labels, rotation=90, fontsize=7)
    ax.set_yticks(range(n_rows), shown.row_labels, fontsize=7)
    ax.set_xlabel(f"layers of {col_name}")
    ax.set_ylabel(f"layers of {row_name}")
    if title is None:
        title = f"{metric} distance, layer by layer" + (
            f" (mean of {n_pairs} network pairs)" if n_pairs > 1 else "")
    fig.suptitle(title)
    return _finish(fig, path)
