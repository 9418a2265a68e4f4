"""Figures are written, non-empty and not blank, as PNG and SVG."""

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import cca_scale
from cca_scale.analysis import (
    cluster,
    group_statistics,
    plot_convergence,
    plot_dendrogram,
    plot_group_bars,
    plot_heatmap,
    plot_signal_noise,
    signal_noise_split,
)
from test_analysis_clustering import planted
from test_analysis_dynamics import decay_table, drifting_layer


def assert_image(path):
    assert path.exists() and path.stat().st_size > 1024
    if path.suffix == ".png":
        pixels = matplotlib.image.imread(path)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
        rgb = pixels[..., :3]
        assert (rgb < 0.9).any(axis=-1).mean() > 0.01  # a real share of drawn, non-white pixels
    else:
        text = path.read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_heatmap_with_cluster_and_attribute_bars(rng, tmp_path, suffix):
    D = planted(rng)
    result = cluster(D)
    fig = plot_heatmap(D, clusters=result, attributes=["lr", "seed"],
                       path=tmp_path / f"heat{suffix}")
    assert isinstance(fig, Figure)
    assert_image(tmp_path / f"heat{suffix}")
    image = fig.axes[0].images[0].get_array()
    order = [D.labels.index(label) for label in result.ordered_labels]
    np.testing.assert_array_equal(image, D.values[np.ix_(order, order)])  # dendrogram order


def test_heatmap_without_clusters_orders_by_dendrogram(rng, tmp_path):
    D = planted(rng, sizes=(3, 3))
    fig = plot_heatmap(D, path=tmp_path / "h.png")
    assert_image(tmp_path / "h.png")
    shown = fig.axes[0].images[0].get_array()
    # Ordered: the first three shown networks form one planted group (small block).
    assert shown[:3, :3].max() < 0.3 and shown[:3, 3:].min() > 0.6


def test_dendrogram_and_group_bars(rng, tmp_path):
    D = planted(rng)
    assert isinstance(plot_dendrogram(cluster(D), path=tmp_path / "dendro.png"), Figure)
    assert_image(tmp_path / "dendro.png")
    plot_dendrogram(D, path=tmp_path / "dendro.svg")
    assert_image(tmp_path / "dendro.svg")
    layers = {"conv1": D, "fc1": cca_scale.DistanceMatrix(D.values * 0.5, D.labels, D.labels,
                                                            {}, D.info, D.info)}
    table = group_statistics(layers, "lr")
    fig = plot_group_bars(table, path=tmp_path / "groups.png")
    assert_image(tmp_path / "groups.png")
    n_series = len(table) // 2
    bars = [p for p in fig.axes[0].patches]
    assert len(bars) == 2 * n_series
    heights = sorted(round(b.get_height(), 12) for b in bars)
    assert heights == sorted(round(v, 12) for v in table["mean"])


def test_convergence_and_signal_noise(rng, tmp_path):
    fig = plot_convergence(decay_table(), threshold=0.1, layer_order=["L1", "L2", "L3"],
                           path=tmp_path / "conv.png")
    assert isinstance(fig, Figure) and len(fig.axes[0].get_lines()) >= 3
    assert_image(tmp_path / "conv.png")
    z = rng.normal(size=(300, 3))
    split = signal_noise_split(drifting_layer(rng, z, 3), drifting_layer(rng, z, 3),
                               [drifting_layer(rng, z, 3) for _ in range(3)], n_directions=2,
                               steps=[10, 20, 30])
    plot_signal_noise(split, path=tmp_path / "split.svg")
    assert_image(tmp_path / "split.svg")


def test_figures_are_returned_without_a_path_and_bad_paths_refused(rng, tmp_path):
    D = planted(rng)
    assert isinstance(plot_heatmap(D), Figure)
    with pytest.raises(cca_scale.CcaScaleError, match="extension must be one of"):
        plot_heatmap(D, path=tmp_path / "heat.jpeg")
    with pytest.raises(cca_scale.CcaScaleError, match="does not exist"):
        plot_heatmap(D, path=tmp_path / "missing" / "heat.png")
    with pytest.raises(cca_scale.CcaScaleError, match="group_statistics"):
        plot_group_bars(pd.DataFrame({"layer": ["a"]}))
