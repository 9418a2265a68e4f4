"""Training dynamics: convergence steps on curves with a known answer; Fig 1 signal/noise split."""

import numpy as np
import pandas as pd
import pytest

import cca_scale
from cca_scale import DistanceMatrix
from cca_scale.analysis import (
    convergence_curves,
    convergence_order,
    rho_over_training,
    signal_noise_split,
)

STEPS = np.arange(0, 101, 10)
TAUS = {"L1": 10.0, "L2": 20.0, "L3": 40.0}
# exp(-s / tau) < 0.1  <=>  s > tau ln 10 = 23.0, 46.1, 92.1  ->  first stored steps 30, 50, 100


def decay_table(taus=TAUS):
    rows = [(layer, s, float(np.exp(-s / tau))) for layer, tau in taus.items() for s in STEPS]
    return pd.DataFrame(rows, columns=["layer", "step", "distance"])


def test_known_convergence_steps_and_bottom_up():
    result = convergence_order(decay_table(), threshold=0.1, layer_order=["L1", "L2", "L3"])
    assert result.steps.to_dict() == {"L1": 30.0, "L2": 50.0, "L3": 100.0}
    assert result.bottom_up is True
    top_down = convergence_order(decay_table(), threshold=0.1, layer_order=["L3", "L2", "L1"])
    assert top_down.bottom_up is False
    assert list(top_down.steps.index) == ["L3", "L2", "L1"]
    frame = result.to_frame()
    assert list(frame.columns) == ["layer", "converged_step", "converged"]
    assert frame["converged"].all()


def test_must_stay_below_threshold_and_never_converged():
    table = decay_table({"L1": 10.0, "L2": 20.0})
    # L1 dips below 0.1 at 30, comes back above at 60, and settles from 70 on.
    table.loc[(table["layer"] == "L1") & (table["step"] == 60), "distance"] = 0.5
    # L3 never goes below the threshold.
    table = pd.concat([table, pd.DataFrame({"layer": "L3", "step": STEPS, "distance": 0.3})])
    result = convergence_order(table, threshold=0.1, layer_order=["L1", "L2", "L3"])
    assert result.steps["L1"] == 70.0 and result.steps["L2"] == 50.0
    assert np.isnan(result.steps["L3"])
    assert result.bottom_up is False  # L1 (70) after L2 (50)
    ok = convergence_order(table, threshold=0.1, layer_order=["L2", "L1", "L3"])
    assert ok.bottom_up is True  # the top layer never converging is still bottom-up
    never = convergence_order(table, threshold=1e-6, layer_order=["L2", "L1", "L3"])
    assert never.steps.isna().all() and never.bottom_up is False


def test_threshold_is_strict_and_ties_follow_strict_flag():
    table = pd.DataFrame({"layer": ["A"] * 3 + ["B"] * 3, "step": [0, 1, 2] * 2,
                          "distance": [0.5, 0.1, 0.0, 0.5, 0.05, 0.0]})
    result = convergence_order(table, threshold=0.1, layer_order=["A", "B"])
    assert result.steps.to_dict() == {"A": 2.0, "B": 1.0}  # 0.1 is not below 0.1
    tied = convergence_order(table, threshold=0.2, layer_order=["A", "B"])
    assert tied.steps.to_dict() == {"A": 1.0, "B": 1.0}
    assert tied.bottom_up is True
    assert convergence_order(table, threshold=0.2, layer_order=["A", "B"],
                             strict=True).bottom_up is False


def step_matrices(rng):
    """One DistanceMatrix per layer: rows 'net@step' for two networks, columns the final steps."""
    matrices = {}
    for layer, tau in TAUS.items():
        rows, info = [], []
        values = []
        for net, offset in (("n0", 0.0), ("n1", 0.02)):
            for s in STEPS:
                rows.append(f"{net}@{s}")
                info.append({"network": net, "layer": layer, "step": int(s)})
                d = np.exp(-s / tau) + (offset if s < 100 else 0.0)
                # column of the own network: d; column of the other network: far (5.0)
                values.append([d, 5.0] if net == "n0" else [5.0, d])
        cols = ["n0@100", "n1@100"]
        col_info = pd.DataFrame({"network": ["n0", "n1"], "step": [100, 100]}, index=cols)
        matrices[layer] = DistanceMatrix(np.array(values), rows, cols, {"layer": layer},
                                         pd.DataFrame(info, index=rows), col_info)
    return matrices


def test_curves_from_distance_matrices_pair_each_row_with_its_network(rng):
    matrices = step_matrices(rng)
    curves = convergence_curves(matrices)
    assert list(curves.columns) == ["layer", "network", "step", "distance"]
    assert len(curves) == 3 * 2 * len(STEPS)
    l2 = curves[(curves["layer"] == "L2") & (curves["network"] == "n1")]
    np.testing.assert_allclose(l2["distance"], np.exp(-STEPS / 20.0) + np.where(STEPS < 100, 0.02,
                                                                                0), atol=1e-15)
    assert (curves["distance"] <= 1.02).all()
    # Labels alone ('net@step') carry the steps when row_info has none.
    bare = {k: DistanceMatrix(D.values, D.row_labels, D.col_labels) for k, D in matrices.items()}
    pd.testing.assert_frame_equal(convergence_curves(bare), curves, check_dtype=False)
    result = convergence_order(matrices, threshold=0.1)
    assert result.bottom_up is True and result.steps["L1"] == 30.0
    # mean of n0 (exp) and n1 (exp + 0.02) at step 30 for L1: 0.0498 + 0.01 < 0.1
    one_column = DistanceMatrix(matrices["L1"].values[:, :1], matrices["L1"].row_labels,
                                ["n0@100"], {}, matrices["L1"].row_info)
    assert len(convergence_curves(one_column)) == 2 * len(STEPS)


def test_curve_input_errors():
    with pytest.raises(cca_scale.CcaScaleError, match=r"missing \['distance'\]"):
        convergence_curves(pd.DataFrame({"layer": ["a"], "step": [1]}))
    with pytest.raises(cca_scale.CcaScaleError, match="each layer of the curves once"):
        convergence_order(decay_table(), threshold=0.1, layer_order=["L1", "L2"])
    D = DistanceMatrix(np.zeros((2, 1)), ["a", "b"], ["c"])
    with pytest.raises(cca_scale.CcaScaleError, match="no training step"):
        convergence_curves(D)


def drifting_layer(rng, z, n_noise, mix=True):
    """Stable signal (a fresh linear map of the fixed latents z) plus freshly drawn noise dims."""
    n, k = z.shape
    layer = np.hstack([z @ rng.normal(size=(k, k)), rng.normal(size=(n, n_noise))])
    return layer @ rng.normal(size=(layer.shape[1],) * 2) if mix else layer


def test_signal_directions_stay_similar_and_noise_ones_do_not(rng):
    z = rng.normal(size=(800, 6))
    early, mid = drifting_layer(rng, z, 10), drifting_layer(rng, z, 10)
    later = {s: drifting_layer(rng, z, 10) for s in (200, 300, 400)}
    split = signal_noise_split(early, mid, {100: mid, **later}, n_directions=5)
    assert split.steps == (100, 200, 300, 400)
    assert np.all(split.signal > 0.999)
    assert np.all(split.noise[1:] < 0.3)
    assert np.all(split.signal[1:] - split.noise[1:] > 0.6)
    # B is chosen from the mid-training layer itself, so it matches at that step (Fig 1's spike).
    assert split.noise[0] == pytest.approx(1.0, abs=1e-9)
    assert split.rho.shape == (16,) and np.all(np.diff(split.rho) <= 1e-12)
    frame = split.to_frame()
    assert list(frame.columns) == ["step", "signal", "noise"] and len(frame) == 4


def test_signal_noise_split_refuses_overlapping_sets(rng):
    z = rng.normal(size=(300, 3))
    a, b = drifting_layer(rng, z, 2), drifting_layer(rng, z, 2)
    with pytest.raises(cca_scale.CcaScaleError, match="n_directions <= 2"):
        signal_noise_split(a, b, [a], n_directions=3)
    with pytest.raises(cca_scale.CcaScaleError, match="int >= 1"):
        signal_noise_split(a, b, [a], n_directions=0)


def test_rho_over_training(rng):
    z = rng.normal(size=(600, 4))
    final = drifting_layer(rng, z, 4)
    table = rho_over_training([drifting_layer(rng, z, 4) for _ in range(3)], final,
                              steps=[10, 20, 30])
    assert table.shape == (3, 8) and list(table.index) == [10, 20, 30]
    assert (table.iloc[:, :4] > 0.999).all().all() and (table.iloc[:, 4:] < 0.3).all().all()


def test_normalised_curves_start_at_one_and_keep_their_shape():
    table = pd.DataFrame({
        "layer": ["a"] * 3 + ["b"] * 3, "network": ["n"] * 6, "step": [0, 1, 2] * 2,
        "distance": [0.2, 0.1, 0.0, 0.8, 0.2, 0.0]})
    norm = convergence_curves(table, normalise=True)
    assert list(norm["distance"]) == pytest.approx([1.0, 0.5, 0.0, 1.0, 0.25, 0.0])
    # raw: a converges first (bottom-up); normalised below 0.3: b gets there first
    assert convergence_order(table, threshold=0.15, layer_order=["a", "b"]).bottom_up
    assert not convergence_order(norm, threshold=0.3, layer_order=["a", "b"]).bottom_up
    flat = table.assign(distance=[0.0, 0.0, 0.0, 0.5, 0.1, 0.0])
    with pytest.raises(ValueError, match="starts at distance 0"):
        convergence_curves(flat, normalise=True)
