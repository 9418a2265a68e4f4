"""Multi-layer matrices (items are (network, layer) pairs): ``for_layer`` gives one layer's
network-by-network matrix, accepted by every analysis; ``layer_block`` two networks' layer-by-layer
matrix. Selection reads the ``network`` and ``layer`` info columns, never the labels."""

import numpy as np
import pandas as pd
import pytest

import cca_scale
from cca_scale import DistanceMatrix
from cca_scale import in_memory_distances
from cca_scale.errors import CcaScaleError, LayerNotFoundError, NetworkNotFoundError

NETWORKS = ("n0", "n1", "n2", "n3")
LAYERS = ("conv1", "fc1", "fc2")
LR = {"n0": 0.1, "n1": 0.01, "n2": 0.1, "n3": 0.01}


def multi_layer(networks=NETWORKS, layers=LAYERS, *, seed=0):
    """A square multi-layer matrix built by hand, engine-style: labels ``network/layer`` (labels
    deliberately unparseable: ``/`` inside a network id), info columns network, layer, step,
    timestep and the networks' attributes; values ``d[i, j]`` known from the items."""
    items = [(n, layer) for n in networks for layer in layers]
    labels = [f"{n}/x/{layer}" for n, layer in items]
    info = pd.DataFrame({"network": [n for n, _ in items], "layer": [la for _, la in items],
                         "step": 10, "timestep": -1, "lr": [LR.get(n, 1.0) for n, _ in items]},
                        index=labels)
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.1, 1.0, size=(len(items), len(items)))
    np.fill_diagonal(values, 0.0)
    diag = {"rank_row": rng.integers(1, 9, size=values.shape)}
    return DistanceMatrix(values, labels, labels, {"metric": "cka", "layers": list(layers)},
                          info, info, diag), items


def test_for_layer_is_the_layers_network_by_network_block():
    D, items = multi_layer()
    for layer in LAYERS:
        sub = D.for_layer(layer)
        pos = [i for i, (_, la) in enumerate(items) if la == layer]
        assert sub.row_labels == sub.col_labels == NETWORKS and sub.is_square
        np.testing.assert_array_equal(sub.values, D.values[np.ix_(pos, pos)])
        np.testing.assert_array_equal(sub.diagnostics["rank_row"],
                                      D.diagnostics["rank_row"][np.ix_(pos, pos)])
        assert sub.info["lr"].to_dict() == LR
        assert sub.metadata["layer"] == layer and sub.metadata["metric"] == "cka"


def test_for_layer_against_another_layer():
    D, items = multi_layer()
    sub = D.for_layer("fc1", against_layer="conv1")
    rows = [i for i, (_, la) in enumerate(items) if la == "fc1"]
    cols = [i for i, (_, la) in enumerate(items) if la == "conv1"]
    np.testing.assert_array_equal(sub.values, D.values[np.ix_(rows, cols)])
    assert sub.row_labels == sub.col_labels == NETWORKS
    assert sub.metadata["against_layer"] == "conv1"


def test_layer_block_is_two_networks_layer_by_layer():
    D, items = multi_layer()
    block = D.layer_block("n1", "n3")
    rows = [i for i, (n, _) in enumerate(items) if n == "n1"]
    cols = [i for i, (n, _) in enumerate(items) if n == "n3"]
    assert block.row_labels == block.col_labels == LAYERS
    np.testing.assert_array_equal(block.values, D.values[np.ix_(rows, cols)])
    assert (block.metadata["network_a"], block.metadata["network_b"]) == ("n1", "n3")
    own = D.layer_block("n2")  # a network against itself
    assert own.is_square and np.all(np.diag(own.values) == 0)


def test_assembled_from_single_layer_engine_style_matrices():
    """Two single-layer matrices (one per layer, the engine's info columns) stacked into a
    multi-layer one give themselves back through for_layer, labels and attributes included."""
    rng = np.random.default_rng(1)
    acts = {layer: {n: rng.normal(size=(80, 5)) for n in NETWORKS} for layer in ("h1", "h2")}
    singles = {}
    for layer, by_net in acts.items():
        D = in_memory_distances(by_net, metric="procrustes")
        info = pd.DataFrame({"network": list(NETWORKS), "layer": layer, "step": 0,
                             "timestep": -1, "lr": [LR[n] for n in NETWORKS]}, index=NETWORKS)
        singles[layer] = DistanceMatrix(D.values, D.row_labels, D.col_labels,
                                        dict(D.metadata, layer=layer), info, info)
    items = [(n, layer) for layer in singles for n in NETWORKS]
    values = np.array([[singles[la].values[NETWORKS.index(n), NETWORKS.index(m)] if la == lb
                        else cca_scale.procrustes_distance(acts[la][n], acts[lb][m])
                        for m, lb in items] for n, la in items])
    info = pd.concat([singles[layer].row_info for layer in singles])
    info.index = [f"{n}/{layer}" for n, layer in items]
    D = DistanceMatrix(values, info.index, info.index, {"metric": "procrustes"}, info, info)
    for layer, single in singles.items():
        got = D.for_layer(layer)
        assert got.row_labels == single.row_labels
        np.testing.assert_array_equal(got.values, single.values)
        pd.testing.assert_frame_equal(got.row_info, single.row_info, check_names=False)
        assert single.for_layer(layer).row_labels == single.row_labels  # single layer: itself
    assert D.layer_block("n0", "n1").values[0, 1] == pytest.approx(
        cca_scale.procrustes_distance(acts["h1"]["n0"], acts["h2"]["n1"]), abs=1e-14)


def test_for_layer_is_accepted_by_every_analysis(tmp_path):
    D, _ = multi_layer()
    sub = D.for_layer("fc1")
    result = cca_scale.cluster(sub, n_clusters=2)
    assert set(result.labels.index) == set(NETWORKS)
    table = cca_scale.group_statistics({"fc1": sub, "fc2": D.for_layer("fc2")}, "lr")
    assert set(table["layer"]) == {"fc1", "fc2"}
    cca_scale.export_distances(sub, tmp_path / "fc1.csv")
    back = cca_scale.load_distances(tmp_path / "fc1.csv")
    assert back.row_labels == NETWORKS
    np.testing.assert_array_equal(back.values, sub.values)


@pytest.mark.parametrize("call,error,match", [
    (lambda D: D.for_layer("fc9"), LayerNotFoundError,
     r"Layer 'fc9' is not among this matrix's row layers: \['conv1', 'fc1', 'fc2'\]"),
    (lambda D: D.for_layer("fc1", against_layer="fc9"), LayerNotFoundError,
     "Layer 'fc9' is not among this matrix's column layers"),
    (lambda D: D.layer_block("n9", "n0"), NetworkNotFoundError,
     r"Network 'n9' is not among this matrix's row networks: \['n0', 'n1', 'n2', 'n3'\]"),
    (lambda D: D.layer_block("n0", "n9"), NetworkNotFoundError,
     "Network 'n9' is not among this matrix's column networks"),
])
def test_missing_layer_or_network_is_named(call, error, match):
    D, _ = multi_layer()
    with pytest.raises(error, match=match):
        call(D)


@pytest.mark.parametrize("call", [lambda D: D.for_layer("fc1"),
                                  lambda D: D.layer_block("a")])
def test_a_matrix_without_layers_is_refused(call):
    D = DistanceMatrix(np.zeros((2, 2)), ["a", "b"], ["a", "b"])
    with pytest.raises(CcaScaleError, match=r"not a multi-layer matrix"):
        call(D)


def test_several_items_per_network_in_a_layer_are_refused():
    D, _ = multi_layer()
    info = D.row_info.assign(layer="fc1")  # every item in one layer: networks repeat
    D = DistanceMatrix(D.values, D.row_labels, D.col_labels, D.metadata, info, info)
    with pytest.raises(CcaScaleError, match=r"repeat the network\(s\) \['n0', 'n1'"):
        D.for_layer("fc1")
