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


@pytest.mark.timeout(120)
def test_tiles_written_side_by_side_in_threads_are_all_done(small_store, tmp_path, monkeypatch):
    """Every chunk of a tile is written, also one equal to the fill value (no pair ill-posed),
    whatever the process-wide Zarr setting: the embedded cluster's tasks share one process, and
    one task leaving ``zarr.config.set(...)`` resets the setting under the others."""
    import contextlib

    import zarr

    from cca_scale.engine.output import ComparisonOutput

    monkeypatch.setattr(zarr.config, "set", lambda *a, **k: contextlib.nullcontext())
    zarr.config.refresh()  # write_empty_chunks: False, the default
    assert zarr.config.get("array.write_empty_chunks") is False
    out = tmp_path / "threads.zarr"
    matrix = cca_scale.compare(small_store, layer="h", out=out, tile=1, n_workers=2)
    assert not matrix.n_ill_posed
    done = ComparisonOutput.open(out).done_mask()
    assert done.shape == (4, 4) and done.all()


@pytest.mark.timeout(120)
def test_the_command_leaves_pandas_unimported_and_writes_the_same_matrix(small_store, tmp_path):
    """``cca-scale compare`` finishes with ``Comparison.wait()``: the matrix stays in the output,
    unread, so the run never imports pandas (0.3 s of every run); the output holds what
    ``cca_scale.compare`` returns."""
    import subprocess
    import sys

    out = tmp_path / "w.zarr"
    code = ("import sys; from cca_scale.cli.main import main; "
            f"rc = main(['compare', {str(small_store)!r}, '--layer', 'h', '--out', {str(out)!r}, "
            "'--workers', '1', '--quiet']); print(rc, 'pandas' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=110)
    assert done.stdout.split()[-2:] == ["0", "False"], done.stdout + done.stderr
    want = cca_scale.compare(str(small_store), layer="h", n_workers=1)
    np.testing.assert_array_equal(cca_scale.load_distances(out).values, want.values)


@pytest.mark.timeout(120)
def test_wait_returns_the_run_summary_result_would_record(small_store, tmp_path):
    from cca_scale.engine.compare import submit
    from cca_scale.engine.handle import RunSummary

    waited = submit(str(small_store), layer="h", out=str(tmp_path / "a.zarr"), n_workers=1)
    summary = waited.wait()
    assert isinstance(summary, RunSummary) and waited.run_summary is summary
    assert waited.shape == (4, 4) and summary.pairs_computed == {"pwcca": 12}
    matrix = submit(str(small_store), layer="h", out=str(tmp_path / "b.zarr"),
                    n_workers=1).result()
    recorded = matrix.metadata["run_summary"]
    for key in ("pairs_total", "pairs_computed", "ill_posed", "bytes_read", "data_bytes"):
        assert getattr(summary, key) == recorded[key], key
    np.testing.assert_array_equal(cca_scale.load_distances(tmp_path / "a.zarr").values,
                                  matrix.values)
