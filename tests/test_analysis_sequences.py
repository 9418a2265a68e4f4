"""Sequence timesteps (appendix A.3) and the baselines table (Figs A5, A8)."""

import numpy as np
import pytest

import cca_scale
from cca_scale import compare_metrics, in_memory_distances
from cca_scale.analysis import metrics_table, timestep_distances
from conftest import make_pair


def hidden_states(rng, n=400, T=5, d=8):
    """t=1 is an invertible linear map of t=0 (CCA: same representation), the rest unrelated."""
    h = rng.normal(size=(n, T, d))
    h[:, 1] = h[:, 0] @ rng.normal(size=(d, d)) + 3.0
    return h


def test_timestep_matrix_is_T_by_T_with_zero_diagonal_and_core_values(rng):
    h = hidden_states(rng)
    D = timestep_distances(h, "pwcca")
    assert D.shape == (5, 5) and D.labels == ("t=0", "t=1", "t=2", "t=3", "t=4")
    np.testing.assert_allclose(np.diag(D.values), 0.0, atol=1e-12)
    for i in range(5):
        for j in range(5):
            assert D.values[i, j] == pytest.approx(
                cca_scale.pwcca_distance(h[:, i], h[:, j]), abs=1e-10)
    assert D.values[0, 1] == pytest.approx(0.0, abs=1e-10)
    assert D.values[0, 2] > 0.5
    assert list(D.info["timestep"]) == [0, 1, 2, 3, 4]
    assert D.metadata["metric"] == "pwcca" and D.metadata["kind"] == "timesteps"
    assert set(D.diagnostics) == {"rank_row", "rank_col", "rho_max", "rho_min"}


def test_timestep_baselines_miss_the_linear_map(rng):
    h = hidden_states(rng)
    cosine = timestep_distances(h, "cosine")
    euclid = timestep_distances(h, metric="euclidean")
    assert cosine.values[0, 1] > 0.3 and euclid.values[0, 1] > 1.0
    # The core's Euclidean distance expands ||x - y||^2 through Gram terms, so d(x, x) is the
    # square root of rounding error: about 1e-7 in the layer's units, not 1e-15.
    np.testing.assert_allclose(np.diag(euclid.values), 0.0, atol=1e-6)
    assert cosine.values[0, 2] == pytest.approx(cca_scale.cosine_distance(h[:, 0], h[:, 2]),
                                                abs=1e-12)


def test_timestep_subset_and_errors(rng):
    h = hidden_states(rng)
    D = timestep_distances(h, "cka", timesteps=[4, 0])
    assert D.labels == ("t=4", "t=0")
    assert D.values[0, 1] == pytest.approx(cca_scale.cka_distance(h[:, 4], h[:, 0]), abs=1e-12)
    with pytest.raises(cca_scale.CcaScaleError, match="3-D"):
        timestep_distances(h[:, 0])
    with pytest.raises(cca_scale.CcaScaleError, match=r"distinct ints in \[0, 4\]"):
        timestep_distances(h, timesteps=[0, 5])
    with pytest.raises(cca_scale.CcaScaleError, match="'metric' parameter"):
        timestep_distances(h, "pwca")


def test_compare_activations_svcca_variant_is_the_one_pair_route(rng):
    x, y = make_pair(rng, n=500, dx=7, dy=9)
    D = in_memory_distances({"x": x, "y": y}, variant="svcca")
    assert D.values[0, 1] == cca_scale.pwcca_distance(x, y, variant="svcca")
    assert D.values[1, 0] == cca_scale.pwcca_distance(y, x, variant="svcca")
    paper = in_memory_distances({"x": x, "y": y})
    assert paper.values[1, 0] == pytest.approx(cca_scale.pwcca_distance(y, x), abs=1e-10)


def test_compare_metrics_gives_one_tidy_table(rng):
    h = hidden_states(rng, T=3)
    acts = {"a": h[:, 0], "b": h[:, 1], "c": h[:, 2]}
    table = compare_metrics(acts)
    assert list(table.columns) == ["metric", "row", "column", "distance"]
    assert list(table["metric"].unique()) == ["pwcca", "cka", "cosine", "euclidean"]
    assert len(table) == 4 * 6  # 3 x 3 ordered pairs minus the diagonal, per metric
    got = table.set_index(["metric", "row", "column"])["distance"]
    assert got["cka", "a", "c"] == pytest.approx(cca_scale.cka_distance(h[:, 0], h[:, 2]),
                                                 abs=1e-12)
    assert got["pwcca", "a", "b"] == pytest.approx(0.0, abs=1e-10)
    assert got["euclidean", "b", "c"] == pytest.approx(
        cca_scale.euclidean_distance(h[:, 1], h[:, 2]), abs=1e-10)
    full = compare_metrics(acts, metrics=["mean_cca"], include_self=True)
    assert len(full) == 9


def test_metrics_table_and_width_mismatch(rng):
    x, y = make_pair(rng, n=300, dx=5, dy=6)
    D = in_memory_distances({"x": x, "y": y}, metric="cka")
    table = metrics_table({"cka": D})
    assert list(zip(table["row"], table["column"])) == [("x", "y"), ("y", "x")]
    with pytest.raises(cca_scale.CcaScaleError, match="same number of neurons; got 5 and 6"):
        compare_metrics({"x": x, "y": y}, metrics=["cosine"])


def test_compare_metrics_on_a_store_without_outputs(tmp_path, rng):
    from cca_scale import ActivationStore

    store = ActivationStore.create(tmp_path / "s.zarr", n_datapoints=300)
    acts = {f"n{k}": rng.normal(size=(300, 6)) for k in range(3)}
    for name, x in acts.items():
        store.add(name, "h", x)
    table = compare_metrics(store, metrics=["pwcca", "cka"], layer="h", n_workers=1)
    want = cca_scale.cka_distance(acts["n0"], acts["n2"])
    got = table.query("metric == 'cka' and row == 'n0' and column == 'n2'")["distance"].item()
    assert got == pytest.approx(want, abs=1e-10)
    assert set(table["metric"]) == {"pwcca", "cka"} and len(table) == 12
