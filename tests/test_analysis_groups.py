"""Group statistics checked against numbers worked out by hand; correlation; neuron subsets."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr

import cca_scale
from cca_scale import DistanceMatrix
from cca_scale.analysis import (
    group_correlation,
    group_statistics,
    mean_distance_to_group,
    subsample_neurons,
)

# a, b generalize ("gen"); c, d memorize ("mem"). values[i, j] = d(i, j), not symmetric.
HAND = np.array([
    [0.0, 0.1, 0.5, 0.6],
    [0.3, 0.0, 0.7, 0.8],
    [0.4, 0.9, 0.0, 0.2],
    [0.5, 0.6, 0.4, 0.0],
])
NETS = ["a", "b", "c", "d"]
INFO = pd.DataFrame({"regime": ["gen", "gen", "mem", "mem"]}, index=NETS)


def hand_matrix(layer="conv1", scale=1.0):
    return DistanceMatrix(HAND * scale, NETS, NETS, {"metric": "pwcca", "layer": layer}, INFO, INFO)


def test_group_table_matches_hand_computation():
    table = group_statistics(hand_matrix(), "regime")
    assert list(table.columns) == ["layer", "group_a", "group_b", "kind", "mean", "std", "n_pairs"]
    assert list(table["kind"]) == ["within", "between", "within"]
    assert list(zip(table["group_a"], table["group_b"])) == [("gen", "gen"), ("gen", "mem"),
                                                             ("mem", "mem")]
    assert list(table["layer"]) == ["conv1"] * 3
    # within gen: d(a,b) = 0.1, d(b,a) = 0.3 -> mean 0.2, population std 0.1, 2 directed pairs
    # within mem: d(c,d) = 0.2, d(d,c) = 0.4 -> mean 0.3, std 0.1
    # between: a->c .5, a->d .6, b->c .7, b->d .8, c->a .4, c->b .9, d->a .5, d->b .6
    #   sum 5.0 over 8 -> 0.625; squared deviations sum to 0.195 -> std sqrt(0.195 / 8)
    np.testing.assert_allclose(table["mean"], [0.2, 0.625, 0.3], atol=1e-15)
    np.testing.assert_allclose(table["std"], [0.1, np.sqrt(0.195 / 8), 0.1], atol=1e-15)
    assert list(table["n_pairs"]) == [2, 8, 2]


def test_ddof_one_gives_sample_std():
    table = group_statistics(hand_matrix(), "regime", ddof=1)
    # within gen: sqrt(((0.1-0.2)^2 + (0.3-0.2)^2) / 1) = sqrt(0.02)
    np.testing.assert_allclose(table["std"], [np.sqrt(0.02), np.sqrt(0.195 / 7), np.sqrt(0.02)],
                               atol=1e-15)


def test_several_layers_keep_their_order_and_names():
    layers = {"conv2": hand_matrix("x", 2.0), "conv1": hand_matrix("y")}
    table = group_statistics(layers, "regime")
    assert list(table["layer"]) == ["conv2"] * 3 + ["conv1"] * 3
    np.testing.assert_allclose(table["mean"][:3], [0.4, 1.25, 0.6], atol=1e-15)
    named = group_statistics([hand_matrix("conv1"), hand_matrix("conv2")], "regime")
    assert list(pd.unique(named["layer"])) == ["conv1", "conv2"]
    with pytest.raises(cca_scale.CcaScaleError, match="repeat"):
        group_statistics([hand_matrix("conv1"), hand_matrix("conv1")], "regime")


def test_groups_by_mapping_single_member_group_and_numbers_sorted():
    width = {"a": 64, "b": 64, "c": 8, "d": 256}
    table = group_statistics(hand_matrix(), width)
    within = table[table["kind"] == "within"]
    assert list(within["group_a"]) == [8, 64, 256]
    lone = within[within["group_a"] == 8].iloc[0]
    assert lone["n_pairs"] == 0 and np.isnan(lone["mean"]) and np.isnan(lone["std"])
    between = table[(table["group_a"] == 8) & (table["group_b"] == 256)].iloc[0]
    assert between["mean"] == pytest.approx((0.2 + 0.4) / 2) and between["n_pairs"] == 2


def test_rectangular_matrix_counts_pairs_of_different_networks():
    D = hand_matrix().subset(rows=["a", "b", "c"], cols=["b", "c"])
    table = group_statistics(D, "regime")
    # gen/gen: only a->b (b->b is the same network) ; between: a->c, b->c, c->b
    assert list(table["n_pairs"]) == [1, 3, 0]
    np.testing.assert_allclose(table["mean"][:2], [0.1, (0.5 + 0.7 + 0.9) / 3], atol=1e-15)


def test_missing_pairs_are_refused_but_the_diagonal_is_not_used():
    values = HAND.copy()
    np.fill_diagonal(values, np.nan)
    D = DistanceMatrix(values, NETS, NETS, {}, INFO, INFO)
    assert group_statistics(D, "regime")["mean"].iloc[0] == pytest.approx(0.2)
    values[0, 3] = np.nan
    D = DistanceMatrix(values, NETS, NETS, {}, INFO, INFO)
    with pytest.raises(cca_scale.CcaScaleError, match="'gen'/'mem'.*1 NaN"):
        group_statistics(D, "regime")
    with pytest.raises(cca_scale.CcaScaleError, match="'width' is not among"):
        group_statistics(hand_matrix(), "width")
    with pytest.raises(cca_scale.CcaScaleError, match="miss 1 network"):
        group_statistics(hand_matrix(), {"a": 1, "b": 1, "c": 2})


def test_mean_distance_to_group_by_hand():
    got = mean_distance_to_group(hand_matrix(), "regime")
    np.testing.assert_allclose(got.loc[NETS], [0.2, 0.2, 0.3, 0.3], atol=1e-15)


def width_sweep(rng):
    """Three widths x 4 networks; wider groups are closer and more accurate (Fig 4)."""
    widths = np.repeat([16, 64, 256], 4)
    level = {16: 0.6, 64: 0.4, 256: 0.2}
    acc = {16: 0.6, 64: 0.7, 256: 0.8}
    n = widths.size
    labels = [f"w{w}_{i}" for i, w in enumerate(widths)]
    values = np.full((n, n), 0.9) + rng.uniform(0, 0.02, (n, n))
    for i in range(n):
        for j in range(n):
            if widths[i] == widths[j]:
                values[i, j] = level[widths[i]] + rng.uniform(0, 0.05)
    np.fill_diagonal(values, 0)
    info = pd.DataFrame({"width": widths,
                         "test_accuracy": [acc[w] + rng.normal(0, 0.01) for w in widths]},
                        index=labels)
    return DistanceMatrix(values, labels, labels, {}, info, info)


def test_group_correlation_with_accuracy(rng):
    D = width_sweep(rng)
    res = group_correlation(D, by="width", attribute="test_accuracy")
    distance = mean_distance_to_group(D, "width")
    r, p = pearsonr(distance.to_numpy(), D.info["test_accuracy"].to_numpy())
    assert res.n == 12 and res.r == pytest.approx(r, abs=1e-12) and res.p == pytest.approx(p)
    assert res.r < -0.9
    groups = group_correlation(D, by="width", attribute="test_accuracy", level="group")
    assert groups.n == 3 and list(groups.table.index) == [16, 64, 256]
    assert groups.r < -0.9
    with pytest.raises(cca_scale.CcaScaleError, match="'level' parameter"):
        group_correlation(D, by="width", attribute="test_accuracy", level="pair")
    with pytest.raises(cca_scale.CcaScaleError, match="constant"):
        group_correlation(D, by="width", attribute={k: 1.0 for k in D.labels})


def test_subsample_neurons_is_a_reproducible_column_subset(rng):
    acts = rng.normal(size=(50, 300))
    sub, idx = subsample_neurons(acts, 128, rng=np.random.default_rng(3), return_indices=True)
    assert sub.shape == (50, 128)
    assert np.all(np.diff(idx) > 0) and idx.min() >= 0 and idx.max() < 300
    np.testing.assert_array_equal(sub, acts[:, idx])
    again = subsample_neurons(acts, 128, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(again, sub)
    other = subsample_neurons(acts, 128, rng=np.random.default_rng(4))
    assert not np.array_equal(other, sub)
    np.testing.assert_array_equal(subsample_neurons(acts, 300, rng=5), acts)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=301, rng=0), r"int in \[1, 300\]"),
    (dict(n=0, rng=0), r"int in \[1, 300\]"),
    (dict(n=10, rng=None), "needs rng"),
    (dict(n=10, rng="seed"), "Generator or an int"),
])
def test_subsample_neurons_refuses(rng, kwargs, match):
    with pytest.raises(cca_scale.CcaScaleError, match=match):
        subsample_neurons(rng.normal(size=(20, 300)), **kwargs)
    with pytest.raises(cca_scale.CcaScaleError, match="flatten_conv"):
        subsample_neurons(np.zeros((4, 3, 3)), 2, rng=0)
