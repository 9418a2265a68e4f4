"""plot_layer_map: the layer-by-layer heatmap of two networks of a multi-layer matrix, or its
mean over network pairs; renders headless, ticks are the layers, cells are the blocks' means."""

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

from cca_scale.analysis import plot_layer_map
from cca_scale.errors import CcaScaleError, NetworkNotFoundError
from test_matrix_layers import LAYERS, multi_layer
from test_plots import assert_image


def cells(fig):
    (image,) = fig.axes[0].images
    return np.asarray(image.get_array())


def ticks(axis):
    return [t.get_text() for t in axis.get_ticklabels()]


def test_two_networks(tmp_path):
    assert matplotlib.get_backend().lower() == "agg"
    D, _ = multi_layer()
    fig = plot_layer_map(D, "n0", "n2", path=tmp_path / "map.png")
    assert isinstance(fig, Figure)
    assert_image(tmp_path / "map.png")
    ax = fig.axes[0]
    assert ticks(ax.xaxis) == ticks(ax.yaxis) == list(LAYERS)
    np.testing.assert_array_equal(cells(fig), D.layer_block("n0", "n2").values)
    assert ax.get_ylabel() == "layers of n0" and ax.get_xlabel() == "layers of n2"


def test_layer_order_and_own_network():
    D, _ = multi_layer()
    fig = plot_layer_map(D, "n1", layers=["fc2", "conv1"])
    assert ticks(fig.axes[0].xaxis) == ["fc2", "conv1"]
    np.testing.assert_array_equal(cells(fig),
                                  D.layer_block("n1").subset(["fc2", "conv1"],
                                                             ["fc2", "conv1"]).values)


def test_mean_over_pairs_and_groups(tmp_path):
    D, _ = multi_layer()
    pairs = [("n0", "n1"), ("n2", "n3"), ("n3", "n0")]
    fig = plot_layer_map(D, pairs=pairs, path=tmp_path / "pairs.svg")
    assert_image(tmp_path / "pairs.svg")
    want = np.mean([D.layer_block(a, b).values for a, b in pairs], axis=0)
    np.testing.assert_allclose(cells(fig), want, rtol=0, atol=1e-15)
    # by: group values; lr=0.1 is {n0, n2}, lr=0.01 is {n1, n3}
    fig = plot_layer_map(D, 0.1, 0.01, by="lr")
    want = np.mean([D.layer_block(a, b).values
                    for a in ("n0", "n2") for b in ("n1", "n3")], axis=0)
    np.testing.assert_allclose(cells(fig), want, rtol=0, atol=1e-15)
    within = plot_layer_map(D, 0.1, by="lr")  # distinct pairs only: (n0, n2) and (n2, n0)
    want = (D.layer_block("n0", "n2").values + D.layer_block("n2", "n0").values) / 2
    np.testing.assert_allclose(cells(within), want, rtol=0, atol=1e-15)
    assert "mean of 2 network pairs" in within._suptitle.get_text()


@pytest.mark.parametrize("kwargs,error,match", [
    ({"network_a": "n9"}, NetworkNotFoundError, "Network 'n9' is not among"),
    ({}, CcaScaleError, "Give network_a"),
    ({"network_a": "n0", "pairs": [("n0", "n1")]}, CcaScaleError, "not both"),
    ({"pairs": []}, CcaScaleError, "pairs= is empty"),
    ({"network_a": 0.5, "by": "lr"}, CcaScaleError, r"No network has lr=0.5"),
    ({"network_a": "n0", "path": "map.jpg"}, CcaScaleError, "extension must be one of"),
])
def test_refusals(kwargs, error, match):
    D, _ = multi_layer()
    with pytest.raises(error, match=match):
        plot_layer_map(D, **kwargs)
