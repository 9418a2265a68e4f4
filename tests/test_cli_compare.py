"""``cca-scale compare`` on the embedded cluster: the dashboard address for long runs only."""

from __future__ import annotations

import numpy as np
import pytest

import cca_scale
from cca_scale.cli.main import main
from cca_scale.store import ActivationStore


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("dash") / "acts.zarr"
    store = ActivationStore.create(path, n_datapoints=300)
    for k in range(4):
        store.add(f"n{k}", "h", rng.standard_normal((300, 6)).astype(np.float32))
    return path


def _compare(store, out, *extra):
    return main(["compare", str(store), "--layer", "h", "--out", str(out), "--workers", "2",
                 *extra])


@pytest.mark.timeout(120)
def test_a_long_run_prints_the_dashboard_address_unless_quiet(small_store, tmp_path, capsys,
                                                               monkeypatch):
    monkeypatch.setenv("CCA_SCALE_DASHBOARD_AFTER", "0")  # every run counts as long
    assert _compare(small_store, tmp_path / "a.zarr") == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("dashboard:")]
    assert len(lines) == 1 and lines[0].startswith("dashboard: http://127.0.0.1:"), lines
    assert lines[0].endswith("/status")

    assert _compare(small_store, tmp_path / "b.zarr", "--quiet") == 0
    assert "dashboard:" not in capsys.readouterr().err
    np.testing.assert_array_equal(cca_scale.load_distances(tmp_path / "a.zarr").values,
                                  cca_scale.load_distances(tmp_path / "b.zarr").values)


@pytest.mark.timeout(120)
def test_a_short_run_does_not_print_it(small_store, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CCA_SCALE_DASHBOARD_AFTER", "600")
    assert _compare(small_store, tmp_path / "c.zarr") == 0
    assert "dashboard:" not in capsys.readouterr().err
