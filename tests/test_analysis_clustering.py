"""Clustering: planted groups recovered exactly, SciPy/scikit-learn references, every bad input."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import ClusterWarning, linkage
from scipy.spatial.distance import squareform
from sklearn.metrics import silhouette_score

import cca_scale
from cca_scale import DistanceMatrix
from cca_scale.analysis import cluster, cluster_agreement


def planted(rng, sizes=(4, 5, 3), within=0.2, between=0.7, jitter=0.05, shuffle=True):
    """A directed distance matrix with planted groups (learning rates) and asymmetric noise."""
    lrs = np.array([0.001, 0.01, 0.1, 0.3, 0.5])[:len(sizes)]
    groups = np.repeat(lrs, sizes)
    if shuffle:
        groups = rng.permutation(groups)
    n = groups.size
    labels = [f"net{i:02d}" for i in range(n)]
    same = groups[:, None] == groups[None, :]
    values = np.where(same, within, between) + rng.uniform(0, jitter, size=(n, n))
    np.fill_diagonal(values, 0.0)
    info = pd.DataFrame({"lr": groups, "seed": np.arange(n),
                         "test_accuracy": 0.9 - 2 * groups + rng.normal(0, 0.01, n)},
                        index=labels)
    meta = {"metric": "pwcca", "variant": "paper", "layer": "fc1"}
    return DistanceMatrix(values, labels, labels, meta, info, info)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("method", ["average", "complete", "weighted"])
def test_planted_groups_recovered_with_k_from_silhouette(seed, method):
    D = planted(np.random.default_rng(seed))
    result = cluster(D, method=method)
    assert result.chosen_by == "silhouette"
    assert result.k == 3
    assert result.agreement("lr") == (1.0, 1.0)
    assert result.silhouette == result.silhouette_by_k.max()
    assert list(result.silhouette_by_k.index) == list(range(2, len(D.labels)))


def test_four_planted_groups_of_unequal_size():
    D = planted(np.random.default_rng(7), sizes=(2, 6, 3, 4), jitter=0.08)
    result = cluster(D)
    assert result.k == 4
    assert result.agreement("lr").ari == 1.0


def test_linkage_is_scipy_on_the_mean_symmetrised_matrix(rng):
    D = planted(rng)
    sym = (D.values + D.values.T) / 2
    np.fill_diagonal(sym, 0)
    result = cluster(D, n_clusters=3)
    np.testing.assert_allclose(result.linkage, linkage(squareform(sym), method="average"),
                               rtol=0, atol=1e-15)
    assert result.silhouette == pytest.approx(
        silhouette_score(sym, result.labels.to_numpy(), metric="precomputed"), abs=1e-12)
    np.testing.assert_array_equal(result.distances.values, sym)


def test_labels_are_numbered_in_leaf_order_and_indexed_by_network(rng):
    D = planted(rng)
    result = cluster(D)
    assert list(result.labels.index) == list(D.labels)
    ordered = result.labels.loc[result.ordered_labels].to_numpy()
    first_seen = list(dict.fromkeys(ordered))
    assert first_seen == [1, 2, 3]
    assert sorted(sum(result.members().values(), [])) == sorted(D.labels)
    frame = result.to_frame()
    assert list(frame.columns[:2]) == ["network", "cluster"]
    assert "lr" in frame.columns and list(frame["network"]) == result.ordered_labels


def test_n_clusters_and_distance_threshold(rng):
    D = planted(rng, sizes=(4, 4, 4), jitter=0.02)
    two = cluster(D, n_clusters=2)
    assert two.k == 2 and two.chosen_by == "n_clusters"
    # Merging two planted groups: every planted group sits inside one cluster.
    truth = D.info["lr"]
    for lr in truth.unique():
        assert two.labels[truth == lr].nunique() == 1
    cut = cluster(D, distance_threshold=0.45)
    assert cut.k == 3 and cut.chosen_by == "distance_threshold"
    assert cut.agreement("lr").ari == 1.0
    assert cluster(D, distance_threshold=10.0).k == 1
    assert cluster(D, distance_threshold=0.0).k == 12
    assert np.isnan(cluster(D, n_clusters=1).silhouette)


def test_bare_square_array_warns_like_scipy_and_matches(rng):
    D = planted(rng)
    with pytest.warns(ClusterWarning, match="uncondensed distance matrix"):
        bare = cluster(D.values)
    assert bare.labels.index[0] == "0"
    np.testing.assert_array_equal(bare.labels.to_numpy(), cluster(D).labels.to_numpy())


def test_condensed_vector_is_accepted_without_warning(rng):
    D = planted(rng)
    sym = D.symmetric("mean").values
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = cluster(squareform(sym))
    np.testing.assert_array_equal(result.labels.to_numpy(), cluster(D).labels.to_numpy())


def _with(D, i, j, value):
    values = D.values.copy()
    values[i, j] = value
    return DistanceMatrix(values, D.row_labels, D.col_labels, D.metadata, D.row_info, D.col_info)


@pytest.mark.parametrize("make, kwargs, error, match", [
    (lambda D: _with(D, 0, 1, np.nan), {}, cca_scale.CcaScaleError, "1 NaN and 0 infinite"),
    (lambda D: _with(D, 3, 3, np.nan), {}, None, None),  # the diagonal is not used
    (lambda D: _with(D, 2, 1, np.inf), {}, cca_scale.CcaScaleError, "0 NaN and 1 infinite"),
    (lambda D: _with(D, 2, 1, -0.5), {}, cca_scale.CcaScaleError, "must be >= 0"),
    (lambda D: D.subset(rows=D.labels[:3]), {}, cca_scale.CcaScaleError, "rectangular"),
    (lambda D: D.values[:, :4], {}, cca_scale.CcaScaleError, r"shape \(12, 4\)"),
    (lambda D: np.ones(5), {}, cca_scale.CcaScaleError, "condensed distance vector"),
    (lambda D: D, dict(n_clusters=2, distance_threshold=0.3), cca_scale.CcaScaleError,
     "at most one of"),
    (lambda D: D, dict(method="ward"), cca_scale.CcaScaleError, "only valid for Euclidean"),
    (lambda D: D, dict(method="avg"), cca_scale.CcaScaleError, "'method' parameter"),
    (lambda D: D, dict(n_clusters=0), cca_scale.CcaScaleError, r"int in \[1, 12\]"),
    (lambda D: D, dict(n_clusters=13), cca_scale.CcaScaleError, r"int in \[1, 12\]"),
    (lambda D: D, dict(distance_threshold=-1), cca_scale.CcaScaleError, ">= 0"),
    (lambda D: D.subset(D.labels[:2], D.labels[:2]), {}, cca_scale.CcaScaleError,
     "at least 3 networks"),
])
def test_bad_input_is_refused(rng, make, kwargs, error, match):
    D = planted(rng)
    if error is None:
        assert cluster(make(D), **kwargs).agreement("lr").ari == 1.0
        return
    with pytest.raises(error, match=match), warnings.catch_warnings():
        warnings.simplefilter("ignore", ClusterWarning)
        cluster(make(D), **kwargs)


def test_cluster_agreement_known_values():
    assert cluster_agreement([1, 1, 2, 2], ["b", "b", "a", "a"]) == (1.0, 1.0)
    # Crossed partitions of 4 items: ARI = -0.5 (expected index 1/3 of max, index 0), NMI = 0.
    ari, nmi = cluster_agreement([1, 1, 2, 2], ["a", "b", "a", "b"])
    assert ari == pytest.approx(-0.5, abs=1e-12) and nmi == pytest.approx(0.0, abs=1e-12)
    labels = pd.Series([1, 1, 2, 2], index=["w", "x", "y", "z"])
    truth = pd.Series([0.1, 0.1, 0.01, 0.01], index=["w", "x", "y", "z"]).iloc[::-1]
    assert cluster_agreement(labels, truth) == (1.0, 1.0)  # aligned on network ids
    with pytest.raises(cca_scale.CcaScaleError, match="same length"):
        cluster_agreement([1, 2], [1, 2, 3])


def test_agreement_with_mapping_sequence_and_unknown_attribute(rng):
    D = planted(rng)
    result = cluster(D)
    lr = dict(zip(D.labels, D.info["lr"]))
    assert result.agreement(lr) == (1.0, 1.0)
    assert result.agreement(list(D.info["lr"])) == (1.0, 1.0)
    assert result.agreement("seed").ari < 0.5
    with pytest.raises(cca_scale.CcaScaleError, match=r"'width' is not among .*'lr'"):
        result.agreement("width")


def test_top_level_reexport():
    assert cca_scale.cluster is cluster
    assert "cluster" in cca_scale.__all__ and "ClusterResult" in cca_scale.__all__
