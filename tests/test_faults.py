"""Fault injection on the engine: resume from ANY state of an output, one run per output, the
one-pair validation rules applied before any work, and every option checked at the boundary.

Other faults have their own files: hostile output paths (test_output_paths.py), hostile queries
(test_queries.py), damaged activation stores (test_store_damage.py).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr

import cca_scale
from cca_scale import ActivationStore
from cca_scale.engine.output import DONE, PAIR_ARRAYS, ComparisonOutput
from cca_scale.engine.tiles import iter_tiles
from conftest import flatten_to_format_2

LAYER = "h"
TILE = 2


def _acts(rng, n, widths):
    z = rng.normal(size=(n, 3))
    return [np.maximum(z @ rng.normal(size=(3, d)) + 0.8 * rng.normal(size=(n, d)), 0)
            for d in widths]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("faults") / "acts.zarr"
    store = ActivationStore.create(path, n_datapoints=300)
    for k, x in enumerate(_acts(rng, 300, [5, 8, 6, 9, 7, 4, 10])):
        store.add(f"n{k}", LAYER, x, attrs={"group": "a" if k < 4 else "b"})
    return path


SHAPES = {  # name -> compare() keyword arguments
    "square": {},
    "rectangular": {"networks": "group == 'a'", "against": "group == 'b'"},
    "cka": {"metric": "cka"},  # diagnostics equal to their fill values (rho is NaN)
}


@pytest.fixture(scope="module")
def references(client, store_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("refs")
    refs = {}
    for name, kwargs in SHAPES.items():
        out = root / f"{name}.zarr"
        cca_scale.compare(store_path, layer=LAYER, out=out, client=client, tile=TILE, **kwargs)
        refs[name] = out
    return refs


def _prefix(out) -> str:
    """Where the output's (first) metric's arrays are: '<metric>/' since format 3."""
    output = ComparisonOutput.open(out)
    return output.prefix(output.metrics[0])


def _arrays(out) -> dict:
    group = zarr.open_group(str(out), mode="r")
    prefix = _prefix(out)
    return {name: np.asarray(group[f"{prefix}{name}"][...]) for name in PAIR_ARRAYS}


def _chunk_file(out, name, bi, bj):
    return os.path.join(str(out), *_prefix(out).split("/")[:-1], name, "c", str(bi), str(bj))


def _undo(out, tiles, *, square: bool, how: str) -> None:
    """Make ``tiles`` not done: 'clear' removes chunks and flags (never computed); 'lose' deletes
    only the distance chunk and keeps the flag (a chunk lost after the tile finished); 'garble'
    overwrites a diagnostic chunk with bytes that do not decode, flag kept."""
    group = zarr.open_group(str(out), mode="r+")
    for t in tiles:
        blocks = [(t.bi, t.bj)] + ([(t.bj, t.bi)] if square and t.bi != t.bj else [])
        for bi, bj in blocks:
            if how == "clear":
                for name in PAIR_ARRAYS:
                    path = _chunk_file(out, name, bi, bj)
                    if os.path.exists(path):
                        os.remove(path)
                group[f"{_prefix(out)}{DONE}"][bi, bj] = 0
            elif how == "lose":
                os.remove(_chunk_file(out, "distance", bi, bj))
            else:
                with open(_chunk_file(out, "rho_max", bi, bj), "wb") as fh:
                    fh.write(b"\x00garbage, not zstd\xff" * 3)


CASES = [(shape, how, seed) for shape in SHAPES for how in ("clear", "lose", "garble")
         for seed in range(2 if shape != "cka" else 1)]


@pytest.mark.parametrize("shape,how,seed", CASES)
def test_any_subset_of_done_tiles_resumes_to_the_identical_matrix(
        client, store_path, references, tmp_path, shape, how, seed):
    """Property: whatever subset of tiles is done (diagonal or not, square or rectangular), and
    whether the rest were never computed, lost a chunk or hold a chunk that does not decode, a
    rerun completes the output bit for bit, every per-pair array included."""
    ref = references[shape]
    want = _arrays(ref)
    out = tmp_path / "out.zarr"
    shutil.copytree(ref, out)
    meta = ComparisonOutput.open(out).meta
    tiles = list(iter_tiles(len(meta["rows"]), len(meta["cols"]), TILE,
                            square=meta["square"]))
    rng = np.random.default_rng(100 * seed + len(how))
    undone = [t for t in tiles if rng.random() < 0.5] or tiles[-1:]
    _undo(out, undone, square=meta["square"], how=how)
    done_before = int(ComparisonOutput.open(out).done_mask().sum())

    handle = cca_scale.submit(store_path, layer=LAYER, out=out, client=client, tile=TILE,
                              **SHAPES[shape])
    assert handle.resume.total - handle.resume.done == len(undone)  # exactly those are redone
    handle.result()
    got = _arrays(out)
    for name in PAIR_ARRAYS:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert ComparisonOutput.open(out).done_mask().all()
    assert done_before < ComparisonOutput.open(out).done_mask().sum()


def test_unfinished_off_diagonal_tile_whose_column_block_is_done(client, store_path, references,
                                                                tmp_path):
    """The case that broke resume for good (KeyError on every rerun): tile (0, 3) is the only
    one left, and block 3 has no unfinished tile of its own."""
    out = tmp_path / "out.zarr"
    shutil.copytree(references["square"], out)
    tile = next(t for t in iter_tiles(7, 7, TILE, square=True) if (t.bi, t.bj) == (0, 3))
    _undo(out, [tile], square=True, how="clear")
    d = cca_scale.compare(store_path, layer=LAYER, out=out, client=client, tile=TILE)
    np.testing.assert_array_equal(d.values, _arrays(references["square"])["distance"])


# -- one run per output ---------------------------------------------------------------------------

def _lock_doc(**fields):
    doc = {"owner": "someone-else", "host": socket.gethostname(), "pid": os.getpid(),
           "acquired": time.time(), "heartbeat": time.time(), "lease_seconds": 120.0}
    doc.update(fields)
    return {"zarr_format": 3, "node_type": "group", "attributes": {"cca_scale_lock": doc}}


def _plant_lock(out, **fields):
    import json

    os.makedirs(os.path.join(str(out), "lock"), exist_ok=True)
    with open(os.path.join(str(out), "lock", "zarr.json"), "w") as fh:
        json.dump(_lock_doc(**fields), fh)


def test_a_second_run_on_an_output_in_use_is_refused(client, store_path, tmp_path):
    out = tmp_path / "busy.zarr"
    first = cca_scale.submit(store_path, layer=LAYER, out=out, client=client, tile=TILE)
    with pytest.raises(cca_scale.OutputBusyError, match="being written by another cca-scale run"):
        cca_scale.submit(store_path, layer=LAYER, out=out, client=client, tile=TILE)
    first.result()
    assert not os.path.exists(os.path.join(str(out), "lock", "zarr.json"))  # released
    cca_scale.compare(store_path, layer=LAYER, out=out, client=client, tile=TILE)  # free again


@pytest.mark.parametrize("fields,busy", [
    ({}, True),  # a live process on this machine
    ({"host": "another-host"}, True),  # another machine, fresh heartbeat
    ({"host": "another-host", "heartbeat": time.time() - 3600}, False),  # its lease expired
    ({"pid": "dead"}, False),  # a process of this machine that is gone
])
def test_a_lease_left_by_a_dead_run_is_taken_over(client, store_path, references, tmp_path,
                                                 fields, busy):
    out = tmp_path / "locked.zarr"
    shutil.copytree(references["square"], out)
    if fields.get("pid") == "dead":
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait()
        fields = {"pid": proc.pid}
    _plant_lock(out, **fields)
    if busy:
        with pytest.raises(cca_scale.OutputBusyError, match="pid"):
            cca_scale.compare(store_path, layer=LAYER, out=out, client=client, tile=TILE)
    else:
        d = cca_scale.compare(store_path, layer=LAYER, out=out, client=client, tile=TILE)
        np.testing.assert_array_equal(d.values, _arrays(references["square"])["distance"])


# -- one validation path --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wide_store(tmp_path_factory):
    """Two independent random layers with more neurons than datapoints."""
    rng = np.random.default_rng(5)
    path = tmp_path_factory.mktemp("wide") / "acts.zarr"
    store = ActivationStore.create(path, n_datapoints=60)
    acts = [rng.normal(size=(60, 64)) for _ in range(2)]
    for k, x in enumerate(acts):
        store.add(f"w{k}", LAYER, x)
    return path, acts


def _after_who(message: str) -> str:
    return message.split(": ", 1)[1]


@pytest.mark.parametrize("metric", ["pwcca", "mean_cca", "svcca"])
def test_engine_refuses_underdetermined_layers_as_the_one_pair_functions_do(
        wide_store, tmp_path, metric):
    path, acts = wide_store
    one_pair = {"pwcca": cca_scale.pwcca_distance, "mean_cca": cca_scale.mean_cca_distance,
                "svcca": cca_scale.svcca_distance}[metric]
    with pytest.raises(cca_scale.ActivationError) as single:
        one_pair(acts[0], acts[1])
    started = time.perf_counter()
    with pytest.raises(cca_scale.ActivationError, match="network 'w0', layer 'h'") as engine:
        cca_scale.compare(path, layer=LAYER, out=tmp_path / "o.zarr", metric=metric)
    assert time.perf_counter() - started < 30  # refused before a cluster runs anything
    assert _after_who(str(engine.value)) == _after_who(str(single.value))  # the same words
    assert not (tmp_path / "o.zarr").exists()


def test_allow_underdetermined_reaches_the_engine(client, wide_store, tmp_path):
    path, acts = wide_store
    d = cca_scale.compare(path, layer=LAYER, out=tmp_path / "o.zarr", client=client,
                          allow_underdetermined=True)
    want = cca_scale.pwcca_distance(acts[0], acts[1], allow_underdetermined=True)
    assert d.values[0, 1] == pytest.approx(want, abs=1e-9)


def test_cli_allow_underdetermined_is_an_explicit_opt_in(wide_store, tmp_path, capsys):
    from cca_scale.cli.main import main

    path, _ = wide_store
    args = ["compare", str(path), "--layer", LAYER, "--out", str(tmp_path / "o.zarr"),
            "--quiet", "--workers", "1"]
    assert main(args) == 1
    assert "--allow-underdetermined" in capsys.readouterr().err
    assert main(args + ["--allow-underdetermined"]) == 0


# -- every option checked at the boundary --------------------------------------------------------

BAD_OPTIONS = [
    ({"n_workers": -2}, "'n_workers' parameter must be a positive integer"),
    ({"n_workers": 0}, "'n_workers' parameter must be a positive integer"),
    ({"n_workers": 1.5}, "'n_workers' parameter must be a positive integer"),
    ({"tile": 0}, "'tile' parameter must be a positive integer"),
    ({"tile": 2.5}, "'tile' parameter must be a positive integer"),
    ({"tile": True}, "'tile' parameter must be a positive integer"),
    ({"epsilon": float("nan")}, "'epsilon' parameter must be a finite number"),
    ({"epsilon": float("inf")}, "'epsilon' parameter must be a finite number"),
    ({"epsilon": -1.0}, "'epsilon' parameter must be a finite number"),
    ({"timestep": "x"}, "'timestep' parameter must be an integer, 'all' or None"),
    ({"timestep": 1.5}, "'timestep' parameter must be an integer, 'all' or None"),
    ({"step": 1.5}, "'step' parameter must be an integer >= 0"),
    ({"step": "first"}, "'step' parameter must be an integer >= 0"),
    ({"against_step": -1}, "'against_step' parameter must be an integer >= 0"),
    ({"rtol": float("nan")}, "'rtol' parameter must be None or a float in"),
    ({"backend": "gpu"}, "'backend' parameter must be one of"),
    ({"dtype": "int8"}, "'dtype' parameter must be 'float32' or 'float64'"),
    ({"metric": "pwca"}, "'metric' parameter must be one of"),
    ({"keep": 1.5, "metric": "svcca"}, "'keep' parameter"),
    ({"overwrite": "yes"}, "'overwrite' parameter must be True or False"),
    ({"networks": 3}, "'networks' parameter must be None, a list of network ids"),
]


@pytest.mark.parametrize("options,message", BAD_OPTIONS)
def test_bad_options_are_refused_before_anything_starts(store_path, tmp_path, options, message):
    started = time.perf_counter()
    with pytest.raises(cca_scale.CcaScaleError, match=message):
        cca_scale.compare(store_path, layer=LAYER, out=tmp_path / "o.zarr", **options)
    assert time.perf_counter() - started < 5  # no cluster was started
    assert not (tmp_path / "o.zarr").exists()


@pytest.mark.parametrize("options,message", BAD_OPTIONS[:3] + BAD_OPTIONS[6:9])
def test_plan_checks_the_same_options(store_path, tmp_path, options, message):
    from cca_scale.engine import plan

    with pytest.raises(cca_scale.CcaScaleError, match=message):
        plan(store_path, layer=LAYER, out=tmp_path / "o.zarr", **options)


def test_plan_refuses_unknown_options(store_path, tmp_path):
    from cca_scale.engine import plan

    with pytest.raises(cca_scale.CcaScaleError, match=r"Unknown option\(s\) \['metirc'\]"):
        plan(store_path, layer=LAYER, out=tmp_path / "o.zarr", metirc="cka")


def test_launch_refuses_bad_worker_counts():
    from cca_scale.runtime import LaunchError

    with pytest.raises(LaunchError, match="positive integer"):
        cca_scale.launch("local", n_workers=-2)


@pytest.mark.parametrize("argv,code,message", [
    (["--workers", "-2"], 2, "must be an integer >= 1"),
    (["--workers", "0"], 2, "must be an integer >= 1"),
    (["--tile", "0"], 2, "must be an integer >= 1"),
    (["--epsilon", "nan"], 2, "must be a finite number >= 0"),
    (["--timestep", "x"], 1, "--timestep must be an int or 'all'"),
    (["--step", "1.5"], 1, "--step must be an int"),
])
def test_cli_bad_options_are_one_line_errors(store_path, tmp_path, capsys, argv, code, message):
    from cca_scale.cli.main import main

    args = ["compare", str(store_path), "--layer", LAYER, "--out", str(tmp_path / "o.zarr"),
            "--quiet", *argv]
    if code == 2:
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 2
    else:
        assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o.zarr").exists()


def test_a_tile_too_large_for_the_workers_is_refused_with_one_that_fits():
    from cca_scale.engine.tiles import choose_tile

    sizes = dict(n_items=1000, max_neurons=512, chunk_rows=4096, itemsize=8, memory=4 << 30,
                 n_pair_arrays=6)
    with pytest.raises(cca_scale.CcaScaleError, match=r"tile=1000 needs about .* GiB") as info:
        choose_tile(1000, **sizes)
    fits = int(re.search(r"Use tile=(\d+) or less", str(info.value)).group(1))
    assert 1 <= fits < 1000
    assert choose_tile(fits, **sizes) == fits
    assert choose_tile(None, **sizes) <= fits  # the default fits too
    assert choose_tile(5000, **{**sizes, "n_items": 3, "memory": 0}) == 3  # whole comparison


def test_a_tile_larger_than_the_comparison_is_the_whole_comparison(client, store_path,
                                                                   references, tmp_path):
    d = cca_scale.compare(store_path, layer=LAYER, out=tmp_path / "o.zarr", client=client,
                          tile=100_000)
    np.testing.assert_allclose(d.values, _arrays(references["square"])["distance"], atol=1e-12)
    assert ComparisonOutput.open(tmp_path / "o.zarr").meta["tile"] == 7


# -- SIGKILL after K tiles -------------------------------------------------------------------------

def _run_cli(*args):
    return subprocess.Popen([sys.executable, "-m", "cca_scale.cli.main", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


@pytest.fixture(scope="module")
def slow_store(tmp_path_factory):
    rng = np.random.default_rng(17)
    path = tmp_path_factory.mktemp("slowfault") / "acts.zarr"
    store = ActivationStore.create(path, n_datapoints=10_000)
    for k, x in enumerate(_acts(rng, 10_000, [32] * 8)):
        store.add(f"s{k}", LAYER, x.astype(np.float32))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("after", [1, 12])
def test_sigkill_after_k_tiles_then_rerun_gives_the_uninterrupted_matrix(
        client, slow_store, tmp_path, after):
    want = cca_scale.compare(slow_store, layer=LAYER, out=tmp_path / "ref.zarr", client=client,
                             tile=1).values
    out = tmp_path / "killed.zarr"
    args = ["compare", str(slow_store), "--layer", LAYER, "--out", str(out), "--tile", "1",
            "--workers", "2", "--quiet"]
    proc = _run_cli(*args)
    deadline = time.time() + 120
    done = 0
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                done = int(np.asarray(zarr.open_group(str(out), mode="r")[f"pwcca/{DONE}"][...]
                                      ).sum())
            except Exception:  # not created yet
                done = 0
            if done >= after:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert done >= after, proc.stderr.read().decode()[-2000:]
    rerun = subprocess.run([sys.executable, "-m", "cca_scale.cli.main", *args], text=True,
                           capture_output=True)  # the dead run's lease is taken over at once
    assert rerun.returncode == 0, rerun.stderr
    np.testing.assert_array_equal(cca_scale.load_distances(out).values, want)


def test_an_output_of_the_previous_format_reads_but_does_not_resume(client, store_path,
                                                                    references, tmp_path):
    """Format-1 outputs (before the ill_posed diagnostic) still read; resuming them is refused
    with what to do, never half-updated."""
    import json

    out = tmp_path / "old.zarr"
    shutil.copytree(references["square"], out)
    flatten_to_format_2(out)
    shutil.rmtree(out / "ill_posed")
    doc = json.loads((out / "zarr.json").read_text())
    doc["attributes"]["cca_scale"]["format"] = 1
    (out / "zarr.json").write_text(json.dumps(doc))
    old = cca_scale.load_distances(out)
    np.testing.assert_array_equal(old.values, _arrays(references["square"])["distance"])
    assert "ill_posed" not in old.diagnostics and old.n_ill_posed == 0
    with pytest.raises(cca_scale.StoreConflictError, match="older cca_scale.*--overwrite"):
        cca_scale.compare(store_path, layer=LAYER, out=out, client=client, tile=TILE)
    d = cca_scale.compare(store_path, layer=LAYER, out=out, client=client, tile=TILE,
                          overwrite=True)
    np.testing.assert_array_equal(d.values, _arrays(references["square"])["distance"])
