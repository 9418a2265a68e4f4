"""The engine: Dask + Zarr all-pairs comparisons equal the core functions pair by pair, resume
after a kill, survive a dead worker, and extend incrementally."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import cca_scale
from cca_scale import ActivationStore
from conftest import requires_gpu

LAYER = "h"


def _acts(rng, n, widths):
    z = rng.normal(size=(n, 4))
    out = []
    for d in widths:
        x = z @ rng.normal(size=(4, d)) + 0.7 * rng.normal(size=(n, d))
        out.append(np.maximum(x + rng.uniform(-0.5, 1.0, size=d), 0))
    return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("sweep") / "acts.zarr"
    widths = [6, 9, 5, 12, 8, 7, 10]
    acts = _acts(rng, 700, widths)
    store = ActivationStore.create(path, n_datapoints=700)
    for k, x in enumerate(acts):
        store.add(f"n{k}", LAYER, x, attrs={"lr": [0.1, 0.01][k % 2], "seed": k})
    return path, acts


def _core_matrix(fn, rows, cols):
    return np.array([[0.0 if r is c else fn(r, c) for c in cols] for r in rows])


@pytest.mark.parametrize("tile", [1, 3, 7])
def test_engine_equals_core_pair_by_pair(client, sweep, tmp_path, tile):
    path, acts = sweep
    d = cca_scale.compare(path, layer=LAYER, out=tmp_path / "o.zarr", client=client, tile=tile)
    assert d.labels == tuple(f"n{k}" for k in range(7))
    want = _core_matrix(cca_scale.pwcca_distance, acts, acts)
    np.testing.assert_allclose(d.values, want, atol=1e-10, rtol=0)
    assert np.all(np.diag(d.values) == 0)
    assert not np.allclose(d.values, d.values.T)  # directional, never symmetrised silently
    assert np.all(d.diagnostics["rank_row"] == np.array([a.shape[1] for a in acts])[:, None])
    assert np.all(d.diagnostics["rho_max"] <= 1.0) and np.all(d.diagnostics["rho_min"] >= 0.0)
    loaded = cca_scale.load_distances(tmp_path / "o.zarr")
    np.testing.assert_array_equal(loaded.values, d.values)
    assert loaded.metadata["metric"] == "pwcca" and loaded.metadata["tile"] == tile
    assert loaded.row_info.loc["n3", "seed"] == 3


@pytest.mark.parametrize("metric,kwargs,fn", [
    ("pwcca", {"variant": "svcca"}, lambda x, y: cca_scale.pwcca_distance(x, y, variant="svcca")),
    ("mean_cca", {}, cca_scale.mean_cca_distance),
    ("svcca", {"keep": 0.9}, lambda x, y: cca_scale.svcca_distance(x, y, keep=0.9)),
    ("svcca", {"keep": 3}, lambda x, y: cca_scale.svcca_distance(x, y, keep=3)),
    ("cka", {}, cca_scale.cka_distance),
])
def test_engine_metrics_equal_core(client, sweep, tmp_path, metric, kwargs, fn):
    path, acts = sweep
    d = cca_scale.compare(path, layer=LAYER, out=tmp_path / "o.zarr", client=client, tile=3,
                          metric=metric, **kwargs)
    np.testing.assert_allclose(d.values, _core_matrix(fn, acts, acts), atol=1e-9, rtol=0)


def test_rectangular_comparison_by_attribute_query(client, sweep, tmp_path):
    path, acts = sweep
    d = cca_scale.compare(path, layer=LAYER, out=tmp_path / "r.zarr", client=client, tile=2,
                          networks="lr == 0.1", against=["n1", "n2"])
    assert d.row_labels == ("n0", "n2", "n4", "n6") and d.col_labels == ("n1", "n2")
    rows, cols = [acts[k] for k in (0, 2, 4, 6)], [acts[1], acts[2]]
    np.testing.assert_allclose(d.values, _core_matrix(cca_scale.pwcca_distance, rows, cols),
                               atol=1e-10)
    assert list(d.row_info["lr"]) == [0.1] * 4


def test_float32_working_precision_agrees_to_stated_accuracy(client, sweep, tmp_path):
    path, acts = sweep
    d = cca_scale.compare(path, layer=LAYER, out=tmp_path / "f.zarr", client=client, tile=4,
                          dtype="float32")
    np.testing.assert_allclose(d.values, _core_matrix(cca_scale.pwcca_distance, acts, acts),
                               atol=1e-4)
    assert d.metadata["dtype"] == "float32"


def test_steps_select_checkpoints_and_label_rows(client, tmp_path):
    rng = np.random.default_rng(5)
    store = ActivationStore.create(tmp_path / "s.zarr", n_datapoints=400)
    acts = {}
    for net in ("a", "b"):
        for step in (10, 20, 30):
            acts[net, step] = _acts(rng, 400, [6])[0]
            store.add(net, LAYER, acts[net, step], step=step)
    last = cca_scale.compare(store, layer=LAYER, out=tmp_path / "last.zarr", client=client,
                             step="last")
    assert last.labels == ("a", "b")
    assert last.values[0, 1] == pytest.approx(
        cca_scale.pwcca_distance(acts["a", 30], acts["b", 30]), abs=1e-10)
    dyn = cca_scale.compare(store, layer=LAYER, out=tmp_path / "dyn.zarr", client=client,
                            networks=["a"], step="all", against_step=20)
    assert dyn.row_labels == ("a@10", "a@20", "a@30") and dyn.col_labels == ("a",)
    assert list(dyn.row_info["step"]) == [10, 20, 30]
    assert dyn.values[1, 0] == pytest.approx(0.0, abs=1e-10)  # the same checkpoint
    assert dyn.values[0, 0] == pytest.approx(
        cca_scale.pwcca_distance(acts["a", 10], acts["a", 20]), abs=1e-10)
    with pytest.raises(cca_scale.CcaScaleError,
                       match=r"stored by training step \(\[10, 20, 30\]\)"):
        cca_scale.compare(store, layer=LAYER, out=tmp_path / "x.zarr", client=client)
    with pytest.raises(cca_scale.CcaScaleError,
                       match=r"has no step 15; its steps are \[10, 20, 30\]"):
        cca_scale.compare(store, layer=LAYER, out=tmp_path / "y.zarr", client=client, step=15)


def test_incremental_addition_reuses_old_tiles(client, tmp_path):
    rng = np.random.default_rng(3)
    acts = _acts(rng, 500, [5, 6, 7, 5, 6, 7, 8, 5])
    store = ActivationStore.create(tmp_path / "s.zarr", n_datapoints=500)
    for k, x in enumerate(acts[:5]):
        store.add(f"m{k}", LAYER, x)
    out = tmp_path / "o.zarr"
    first = cca_scale.submit(store, layer=LAYER, out=out, client=client, tile=2)
    assert first.resume.line() == "resuming: 0 of 6 tiles already done"
    before = first.result().values
    for k, x in enumerate(acts[5:], start=5):
        store.add(f"m{k}", LAYER, x)
    again = cca_scale.submit(store, layer=LAYER, out=out, client=client)
    # 8 networks in blocks of 2 -> 10 tiles; the 3 old tiles not touching old block 2 are kept.
    assert again.resume.line() == "resuming: 3 of 10 tiles already done"
    after = again.result()
    np.testing.assert_array_equal(after.values[:5, :5], before)
    np.testing.assert_allclose(after.values, _core_matrix(cca_scale.pwcca_distance, acts, acts),
                               atol=1e-10)
    done = cca_scale.submit(store, layer=LAYER, out=out, client=client)
    assert done.resume.line() == "resuming: 10 of 10 tiles already done"
    np.testing.assert_array_equal(done.result().values, after.values)


def test_other_parameters_on_existing_output_are_refused(client, sweep, tmp_path):
    path, _ = sweep
    out = tmp_path / "o.zarr"
    cca_scale.compare(path, layer=LAYER, out=out, client=client, tile=4)
    with pytest.raises(cca_scale.StoreConflictError, match="metric: 'pwcca' -> 'mean_cca'"):
        cca_scale.compare(path, layer=LAYER, out=out, client=client, metric="mean_cca")
    with pytest.raises(cca_scale.StoreConflictError, match="--tile 4"):
        cca_scale.compare(path, layer=LAYER, out=out, client=client, tile=2)
    d = cca_scale.compare(path, layer=LAYER, out=out, client=client, metric="mean_cca",
                          overwrite=True)
    assert d.metadata["metric"] == "mean_cca"


def test_without_out_the_result_lives_in_memory_only(sweep, tmp_path, monkeypatch):
    import glob
    import tempfile

    path, acts = sweep
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # no other process writes here
    before = set(glob.glob(f"{tempfile.gettempdir()}/cca-scale-*"))
    d = cca_scale.compare(path, layer=LAYER, networks=["n0", "n1", "n2"], n_workers=1)
    np.testing.assert_allclose(d.values, _core_matrix(cca_scale.pwcca_distance, acts[:3], acts[:3]),
                               atol=1e-10)
    assert set(glob.glob(f"{tempfile.gettempdir()}/cca-scale-*")) == before  # cleaned up


def test_without_out_a_remote_client_is_refused(client, sweep):
    path, _ = sweep
    with pytest.raises(cca_scale.CcaScaleError, match="pass out=PATH"):
        cca_scale.compare(path, layer=LAYER, client=client)


def test_bad_requests_are_clear(client, sweep, tmp_path):
    path, _ = sweep
    with pytest.raises(cca_scale.LayerNotFoundError,
                       match=r"'fc9'.*Layers in the selection: \['h'\]"):
        cca_scale.compare(path, layer="fc9", out=tmp_path / "a.zarr", client=client)
    with pytest.raises(cca_scale.CcaScaleError, match="matched none"):
        cca_scale.compare(path, layer=LAYER, out=tmp_path / "b.zarr", client=client,
                          networks="lr == 5")
    with pytest.raises(cca_scale.NetworkNotFoundError):
        cca_scale.compare(path, layer=LAYER, out=tmp_path / "c.zarr", client=client,
                          networks=["n0", "nope"])
    with pytest.raises(ValueError, match="'metric' parameter"):
        cca_scale.compare(path, layer=LAYER, out=tmp_path / "d.zarr", client=client,
                          metric="pwca")
    with pytest.raises(ValueError, match="same number of neurons"):
        cca_scale.compare(path, layer=LAYER, out=tmp_path / "e.zarr", client=client,
                          metric="cosine")
    for name in "abcde":
        assert not (tmp_path / f"{name}.zarr").exists()  # refused before anything is written


def test_several_comparisons_in_flight_on_one_client(client, sweep, tmp_path):
    path, acts = sweep
    handles = [cca_scale.submit(path, layer=LAYER, out=tmp_path / f"{m}.zarr", client=client,
                                metric=m, tile=2) for m in ("pwcca", "mean_cca", "cka")]
    assert all(h.progress()[1] == 10 for h in handles)
    results = [h.result() for h in handles]
    np.testing.assert_allclose(results[1].values,
                               _core_matrix(cca_scale.mean_cca_distance, acts, acts), atol=1e-10)
    assert all(h.progress() == (10, 10) for h in handles)


def _run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "cca_scale.cli.main", *args], text=True,
                          capture_output=True, **kwargs)


@pytest.fixture(scope="module")
def slow_sweep(tmp_path_factory):
    """Enough tiles (tile=1) and data that a run can be killed part way."""
    rng = np.random.default_rng(11)
    root = tmp_path_factory.mktemp("slow")
    path = root / "acts.zarr"
    acts = _acts(rng, 12_000, [40] * 10)
    store = ActivationStore.create(path, n_datapoints=12_000)
    for k, x in enumerate(acts):
        store.add(f"s{k:02d}", LAYER, x.astype(np.float32))
    ref = root / "ref.zarr"
    done = _run_cli("compare", str(path), "--layer", LAYER, "--out", str(ref), "--tile", "1",
                    "--workers", "2", "--quiet")
    assert done.returncode == 0, done.stderr
    return path, cca_scale.load_distances(ref).values


def test_resume_after_sigkill_of_process_group_gives_the_uninterrupted_matrix(slow_sweep, tmp_path):
    slow_sweep, want = slow_sweep
    out = tmp_path / "killed.zarr"
    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "cca_scale.cli.main", "compare",
                             str(slow_sweep), "--layer", LAYER, "--out", str(out), "--tile", "1",
                             "--workers", "2", "--quiet"], start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT)
    import zarr

    deadline = time.time() + 60
    killed = False
    while time.time() < deadline and proc.poll() is None:
        try:
            flags = zarr.open_array(store=str(out), path="pwcca/tile_done", mode="r")[...]
            if np.triu(flags).sum() >= 10:  # tiles (a mirrored tile also flags its mirror)
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
                break
        except Exception:
            pass
        time.sleep(0.02)
    proc.wait(timeout=30)
    rerun = _run_cli("compare", str(slow_sweep), "--layer", LAYER, "--out", str(out), "--quiet",
                     "--workers", "2")
    assert rerun.returncode == 0, rerun.stderr
    line = [ln for ln in rerun.stderr.splitlines() if ln.startswith("resuming:")][0]
    done, total = int(line.split()[1]), int(line.split()[3])
    assert total == 55 and (done >= 10 if killed else done == total), (
        killed, proc.returncode, (tmp_path / "killed.log").read_text()[-3000:])
    assert done < total or not killed
    got = cca_scale.load_distances(out).values
    np.testing.assert_array_equal(got, want)


def test_a_killed_worker_costs_a_retry_not_a_result(slow_sweep, tmp_path):
    import distributed

    slow_sweep, want = slow_sweep
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    sched_file = tmp_path / "scheduler.json"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = [subprocess.Popen(dask + ["--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                      "--scheduler-file", str(sched_file)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        while not sched_file.exists():
            time.sleep(0.05)
        time.sleep(0.2)
        for _ in range(2):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                 str(sched_file), "--nthreads", "1", "--no-nanny", "--no-dashboard",
                 "--host", "127.0.0.1"], env=env, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True))
        with distributed.Client(scheduler_file=str(sched_file), timeout=30) as client:
            client.wait_for_workers(2, timeout=30)
            handle = cca_scale.submit(slow_sweep, layer=LAYER, out=tmp_path / "o.zarr",
                                      client=client, tile=1)
            deadline = time.time() + 60
            while handle.progress()[0] < 5 and time.time() < deadline:
                time.sleep(0.02)
            os.killpg(procs[1].pid, signal.SIGKILL)  # one worker dies mid-run
            d = handle.result()
        assert d.complete
        np.testing.assert_array_equal(d.values, want)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def test_cli_compare_dry_run_and_resume_line(sweep, tmp_path):
    path, _ = sweep
    out = tmp_path / "cli.zarr"
    dry = _run_cli("compare", str(path), "--layer", LAYER, "--out", str(out), "--tile", "2",
                   "--dry-run")
    assert dry.returncode == 0 and "tiles_left: 10" in dry.stdout and not out.exists()
    first = _run_cli("compare", str(path), "--layer", LAYER, "--out", str(out), "--tile", "2",
                     "--workers", "2", "--networks", "lr == 0.1")
    assert first.returncode == 0, first.stderr
    assert "resuming: 0 of 3 tiles already done" in first.stderr
    assert "wrote" in first.stdout and "4 x 4" in first.stdout
    again = _run_cli("compare", str(path), "--layer", LAYER, "--out", str(out),
                     "--wait-workers", "2", "--networks", "lr == 0.1")
    assert "resuming: 3 of 3 tiles already done" in again.stderr
    bad = _run_cli("compare", str(path), "--layer", "nope", "--out", str(tmp_path / "x.zarr"))
    assert bad.returncode == 1 and "Layers in the selection" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.gpu
@requires_gpu
def test_cupy_backend_equals_numpy(sweep, tmp_path):
    pytest.importorskip("dask_cuda")  # GPU machines without dask-cuda run the rest
    from dask_cuda import LocalCUDACluster
    from distributed import Client

    path, acts = sweep
    with LocalCUDACluster(n_workers=1, resources={"GPU": 1}) as cluster, Client(cluster) as c:
        d = cca_scale.compare(path, layer=LAYER, out=tmp_path / "g.zarr", client=c,
                              backend="cupy", tile=3)
    np.testing.assert_allclose(d.values, _core_matrix(cca_scale.pwcca_distance, acts, acts),
                               atol=1e-8)
