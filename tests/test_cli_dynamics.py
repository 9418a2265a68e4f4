"""``cca-scale dynamics`` recovers a planted bottom-up convergence order through the engine."""

import subprocess
import sys

import numpy as np
import pytest

from cca_scale import ActivationStore


def test_dynamics_recovers_planted_bottom_up_order(tmp_path):
    rng = np.random.default_rng(0)
    store = ActivationStore.create(tmp_path / "s.zarr", n_datapoints=500)
    z = rng.normal(size=(500, 6))
    for net in ("a", "b"):
        finals = {k: z @ rng.normal(size=(6, 10)) + 0.1 * rng.normal(size=(500, 10))
                  for k in (1, 2, 3)}
        for step in range(5):
            for k in (1, 2, 3):  # layer k reaches its final representation at step k
                noise = max(0, k - step)
                store.add(net, f"l{k}", finals[k] + noise * rng.normal(size=(500, 10)), step=step)
    out = subprocess.run(
        [sys.executable, "-m", "cca_scale.cli.main", "dynamics", str(tmp_path / "s.zarr"),
         "--layers", "l1,l2,l3", "--out-dir", str(tmp_path / "dyn"), "--threshold", "0.05",
         "--workers", "2", "--plot", str(tmp_path / "dyn" / "c.png")],
        capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()
            if line.strip().startswith(("l1 ", "l2 ", "l3 "))}
    assert [float(rows[f"l{k}"][0]) for k in (1, 2, 3)] == [1.0, 2.0, 3.0]
    assert "bottom-up (each layer converged no later than the one above): True" in out.stdout
    assert (tmp_path / "dyn" / "c.png").stat().st_size > 1000
    assert (tmp_path / "dyn" / "dynamics_l2.zarr").exists()  # resumable per-layer outputs


def test_training_dynamics_is_one_comparison_per_layer_against_the_last_step(tmp_path):
    """The workflow behind `cca-scale dynamics`: the same numbers as each layer's own compare."""
    import numpy as np

    import cca_scale
    from cca_scale import ActivationStore

    rng = np.random.default_rng(4)
    store = ActivationStore.create(tmp_path / "acts.zarr", n_datapoints=200)
    for step in (1, 2, 3):
        for layer in ("a", "b"):
            store.add("net", layer, rng.normal(size=(200, 4)) + step, step=step)
    mats = cca_scale.training_dynamics(store, layers=["a", "b"], n_workers=1)
    for layer in ("a", "b"):
        want = [[cca_scale.pwcca_distance(store.read("net", layer, step=s),
                                          store.read("net", layer, step=3))] for s in (1, 2, 3)]
        np.testing.assert_allclose(mats[layer].values, want, atol=1e-10)
        assert mats[layer].row_labels == ("net@1", "net@2", "net@3")
    with pytest.raises(cca_scale.CcaScaleError, match="template with '{layer}'"):
        cca_scale.training_dynamics(store, layers=["a"], out="dyn.zarr")
