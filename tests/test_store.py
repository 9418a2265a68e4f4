"""Activation store: round trips, listing and selection, streaming, readers, store kinds."""

import copy
import gc
import pickle
import uuid

import numpy as np
import pandas as pd
import pytest
import zarr

from cca_scale import ActivationStore
from cca_scale.errors import (
    LayerNotFoundError,
    NetworkNotFoundError,
    StoreConflictError,
    StoreError,
)
from cca_scale.store import LayerReader

N = 120


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path):
    where = tmp_path / "acts.zarr" if request.param == "local" else zarr.storage.MemoryStore()
    return ActivationStore.create(where, n_datapoints=N)


def test_round_trip_values_dtypes_and_attrs(store, rng):
    x64 = rng.normal(size=(N, 7))
    x32 = rng.normal(size=(N, 5)).astype(np.float32)
    xint = rng.integers(-3, 4, size=(N, 4))
    store.add("net0", "fc1", x64, attrs={"lr": 0.01, "seed": 3, "labels": "true"})
    store.add("net0", "fc2", x32)
    store.add("net0", "codes", xint)
    store.add("net0", "as64", x32, dtype="float64")
    assert store.read("net0", "fc1").dtype == np.float64  # float64 input is kept
    np.testing.assert_array_equal(store.read("net0", "fc1"), x64)
    assert store.read("net0", "fc2").dtype == np.float32
    np.testing.assert_array_equal(store.read("net0", "fc2"), x32)
    assert store.read("net0", "codes").dtype == np.float32  # everything else -> float32
    np.testing.assert_array_equal(store.read("net0", "codes"), xint.astype(np.float32))
    np.testing.assert_array_equal(store.read("net0", "as64"), x32.astype(np.float64))
    assert store.layers("net0") == ["fc1", "fc2", "codes", "as64"]  # order of first write
    table = store.attributes()
    assert table.index.name == "network" and list(table.index) == ["net0"]
    assert table.loc["net0", "lr"] == 0.01 and table.loc["net0", "seed"] == 3
    assert table.loc["net0", "labels"] == "true"
    assert store.n_datapoints == N and store.fingerprint is None


def test_reopen_read_only_sees_everything(tmp_path, rng):
    x = rng.normal(size=(N, 3))
    store = ActivationStore.create(tmp_path / "s.zarr", n_datapoints=N, fingerprint="digits-v1")
    store.add("a", "l", x, attrs={"width": 3})
    again = ActivationStore.open(str(tmp_path / "s.zarr"))
    assert again.mode == "r" and again.fingerprint == "digits-v1" and again.n_datapoints == N
    assert again.path == str((tmp_path / "s.zarr").absolute())
    np.testing.assert_array_equal(again.read("a", "l"), x)
    with pytest.raises(StoreError, match="read-only.*mode='a'"):
        again.add("b", "l", x)
    with pytest.raises(StoreError, match="read-only"):
        again.set_attrs("a", width=4)


def test_attrs_merge_and_removal(store, rng):
    x = rng.normal(size=(N, 3))
    store.add("a", "l1", x, attrs={"lr": 0.1, "seed": 1})
    store.add("a", "l2", x, attrs={"acc": 0.93})
    store.set_attrs("a", seed=2, lr=None, note="rerun")
    assert store.attributes().loc["a"].to_dict() == {"seed": 2, "acc": 0.93, "note": "rerun"}
    with pytest.raises(NetworkNotFoundError, match="'zz'.*'a'"):
        store.set_attrs("zz", seed=1)


def test_steps_round_trip(store, rng):
    per_step = {s: rng.normal(size=(N, 4)) for s in (0, 10, 2)}
    for s, x in per_step.items():
        store.add("n", "fc", x, step=s)
    assert store.steps("n", "fc") == [0, 2, 10]
    for s, x in per_step.items():
        np.testing.assert_array_equal(store.read("n", "fc", step=s), x)
        assert store.has_layer("n", "fc", step=s)
    assert not store.has_layer("n", "fc")  # no step-less array
    assert not store.has_layer("n", "fc", step=5) and not store.has_layer("zz", "fc")
    with pytest.raises(LayerNotFoundError, match=r"stored by training step \(steps \[0, 2, 10\]\)"):
        store.reader("n", "fc")
    with pytest.raises(LayerNotFoundError, match=r"no step 5; its steps are \[0, 2, 10\]"):
        store.reader("n", "fc", step=5)
    store.add("n", "plain", per_step[0])
    assert store.steps("n", "plain") == []
    with pytest.raises(LayerNotFoundError, match="without training steps"):
        store.reader("n", "plain", step=0)


def test_timesteps_round_trip(store, rng):
    seq = rng.normal(size=(N, 6, 4))
    batches = [seq[:50], seq[50:51], seq[51:]]  # includes a single-datapoint batch
    store.add("rnn", "lstm", iter(batches), timesteps=True, chunk_rows=32)
    assert store.timesteps("rnn", "lstm") == list(range(6))
    for t in (0, 3, 5, -1):
        reader = store.reader("rnn", "lstm", timestep=t)
        assert reader.shape == (N, 4) and reader.chunk_rows == 32
        np.testing.assert_allclose(reader.read(), seq[:, t, :], rtol=1e-6)
        np.testing.assert_allclose(store.dask_array("rnn", "lstm", timestep=t).compute(),
                                   seq[:, t, :], rtol=1e-6)
    with pytest.raises(StoreError, match="6 timesteps.*pass timestep="):
        store.reader("rnn", "lstm")
    with pytest.raises(StoreError, match="out of range"):
        store.reader("rnn", "lstm", timestep=6)
    store.add("rnn", "fc", seq[:, 0, :])
    assert store.timesteps("rnn", "fc") == []
    with pytest.raises(StoreError, match="has no timesteps"):
        store.reader("rnn", "fc", timestep=0)


def test_streaming_write_equals_one_shot(store, rng):
    x = rng.normal(size=(N, 9)).astype(np.float32)
    store.add("one", "l", x, chunk_rows=16)
    sizes = [1, 0, 7, 30, 1, 1, 45, 35]  # uneven, chunk-misaligned, empty and 1-row batches
    bounds = np.cumsum([0] + sizes)
    assert bounds[-1] == N
    store.add("stream", "l", (x[a:b] for a, b in zip(bounds[:-1], bounds[1:])), chunk_rows=16)
    one, stream = store.reader("one", "l"), store.reader("stream", "l")
    assert one.shape == stream.shape == (N, 9) and one.chunk_rows == stream.chunk_rows == 16
    np.testing.assert_array_equal(stream.read(), one.read())
    np.testing.assert_array_equal(stream.read(), x)
    assert one.write_id != stream.write_id


def test_streaming_without_known_count_records_it(tmp_path, rng):
    x = rng.normal(size=(77, 4))
    store = ActivationStore.create(tmp_path / "s.zarr")
    assert store.n_datapoints is None
    store.add("a", "l", [x[:30], x[30:]], chunk_rows=10)
    assert store.n_datapoints == 77
    assert ActivationStore.open(tmp_path / "s.zarr").n_datapoints == 77
    np.testing.assert_array_equal(store.read("a", "l"), x)
    with pytest.raises(StoreConflictError, match=r"76 datapoints.*77 datapoints"):
        store.add("b", "l", x[:76])


def test_out_of_core_inputs_are_read_in_blocks(tmp_path, store, rng):
    x = rng.normal(size=(N, 6))
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    store.add("mm", "l", mapped, chunk_rows=25)
    np.testing.assert_array_equal(store.read("mm", "l"), x)
    da = pytest.importorskip("dask.array")
    store.add("dk", "l", da.from_array(x, chunks=(17, 6)))
    np.testing.assert_array_equal(store.read("dk", "l"), x)


def test_selection_by_query_and_ids_in_insertion_order(store, rng):
    x = rng.normal(size=(N, 2))
    sweep = [("n_c", 0.01, "true"), ("n_a", 0.1, "true"), ("n_b", 0.01, "random"),
             ("n_d", 0.01, "true")]
    for name, lr, labels in sweep:
        store.add(name, "l", x, attrs={"lr": lr, "labels": labels})
    assert store.networks() == ["n_c", "n_a", "n_b", "n_d"]  # insertion, not alphabetical
    assert store.networks("lr == 0.01") == ["n_c", "n_b", "n_d"]
    assert store.networks("lr == 0.01 and labels == 'true'") == ["n_c", "n_d"]
    assert store.networks("network in ['n_a', 'n_d']") == ["n_a", "n_d"]
    assert store.networks(["n_d", "n_c"]) == ["n_c", "n_d"]  # ids: still insertion order
    assert list(store.attributes(["n_b", "n_a"]).index) == ["n_a", "n_b"]
    assert list(store.attributes("labels == 'random'").index) == ["n_b"]
    store.add("n_0", "l", x, attrs={"lr": 0.01, "labels": "true"})  # a later network comes last
    assert store.networks("lr == 0.01")[-1] == "n_0"
    with pytest.raises(NetworkNotFoundError, match="'n_x'.*5 networks: 'n_c', 'n_a'"):
        store.networks(["n_a", "n_x"])
    with pytest.raises(StoreError, match="Available attribute columns: 'lr', 'labels'"):
        store.networks("momentum > 0.5")
    with pytest.raises(StoreError, match="Could not evaluate"):
        store.networks("lr ==")
    with pytest.raises(StoreError, match="'query' parameter"):
        store.networks(3)


def test_not_found_errors_list_what_exists(store, rng):
    store.add("a", "fc1", rng.normal(size=(N, 2)))
    store.add("a", "fc2", rng.normal(size=(N, 2)))
    with pytest.raises(LayerNotFoundError, match="no layer 'fc3'. Its layers are: 'fc1', 'fc2'"):
        store.reader("a", "fc3")
    with pytest.raises(KeyError):  # not-found errors are also KeyErrors
        store.steps("a", "fc3")
    with pytest.raises(NetworkNotFoundError, match="'b' is not in .* 1 networks: 'a'"):
        store.layers("b")
    empty = ActivationStore.create(zarr.storage.MemoryStore())
    with pytest.raises(NetworkNotFoundError, match="no networks yet"):
        empty.reader("a", "fc1")
    assert empty.networks() == [] and empty.attributes().empty


def test_reader_is_small_lazy_and_picklable(tmp_path, rng):
    x = rng.normal(size=(N, 5))
    store = ActivationStore.create(tmp_path / "s.zarr", n_datapoints=N)
    store.add("a", "l", x, chunk_rows=50, step=4)
    reader = store.reader("a", "l", step=4)
    assert (reader.network, reader.layer, reader.step, reader.timestep) == ("a", "l", 4, None)
    assert reader.shape == (N, 5) and reader.dtype == np.float64 and reader.chunk_rows == 50
    assert len(reader.write_id) == 32 and int(reader.write_id, 16) >= 0
    reader.read(0, 1)  # opens the array; the open array must not travel
    blob = pickle.dumps(reader)
    assert len(blob) < 1000
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone.read(10, 20), x[10:20])
    np.testing.assert_array_equal(clone.read(), x)
    blocks = list(clone.iter_chunks())
    assert [b.shape[0] for b in blocks] == [50, 50, 20]
    np.testing.assert_array_equal(np.vstack(list(clone.iter_chunks(rows=7))), x)
    lazy = store.dask_array("a", "l", 4)
    assert lazy.chunks[0] == (50, 50, 20)
    np.testing.assert_array_equal(lazy.compute(), x)


def test_write_id_changes_on_overwrite_and_fingerprint_follows(store, rng):
    x = rng.normal(size=(N, 3))
    store.add("a", "l", x)
    store.add("b", "l", x)
    before = store.reader("a", "l").write_id
    items = [store.reader("a", "l"), ("b", "l")]
    fp = store.content_fingerprint(items)
    assert len(fp) == 64 and fp == store.content_fingerprint([("a", "l"), ("b", "l", None)])
    assert fp != store.content_fingerprint([("b", "l"), ("a", "l")])
    store.add("a", "l", 2 * x, overwrite=True)
    after = store.reader("a", "l")
    assert after.write_id != before
    np.testing.assert_array_equal(after.read(), 2 * x)
    assert store.content_fingerprint([("a", "l"), ("b", "l")]) != fp
    assert store.networks() == ["a", "b"] and store.layers("a") == ["l"]


def test_memory_store_readers_work_in_process_only(rng):
    x = rng.normal(size=(N, 3))
    memory = zarr.storage.MemoryStore()
    store = ActivationStore.create(memory, n_datapoints=N)
    store.add("a", "l", x)
    assert store.path is None
    again = ActivationStore.open(memory, mode="a")
    np.testing.assert_array_equal(again.read("a", "l"), x)
    blob = pickle.dumps(store.reader("a", "l"))
    np.testing.assert_array_equal(pickle.loads(blob).read(), x)  # same process: fine
    np.testing.assert_array_equal(copy.deepcopy(store.reader("a", "l")).read(), x)
    del store, again, memory
    gc.collect()  # as in another process: the store is gone
    with pytest.raises(StoreError, match="in memory in another process"):
        pickle.loads(blob).read()


def test_fsspec_memory_url_round_trip(rng):
    pytest.importorskip("fsspec")
    url = f"memory://cca-scale-test-{uuid.uuid4().hex}/acts.zarr"
    x = rng.normal(size=(N, 4)).astype(np.float32)
    store = ActivationStore.create(url, n_datapoints=N)
    store.add("a", "l", [x[:60], x[60:]], attrs={"lr": 0.5}, chunk_rows=40)
    store.add("a", "l", x, overwrite=True, chunk_rows=40)  # replace through copy + delete
    again = ActivationStore.open(url)
    assert again.path == url and again.networks() == ["a"]
    reader = pickle.loads(pickle.dumps(again.reader("a", "l")))
    np.testing.assert_array_equal(reader.read(), x)
    assert again.attributes().loc["a", "lr"] == 0.5
    with pytest.raises(StoreConflictError, match="already exists"):
        ActivationStore.create(url)


def test_create_and_open_refusals(tmp_path):
    with pytest.raises(StoreError, match="No activation store"):
        ActivationStore.open(tmp_path / "missing.zarr")
    with pytest.raises(StoreError, match="'mode' parameter .* \\['r', 'a'\\]. Got 'w'"):
        ActivationStore.open(tmp_path, mode="w")
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not a cca_scale activation store; refusing"):
        ActivationStore.create(other, overwrite=True)
    assert (other / "precious.txt").read_text() == "keep me"
    plain = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    plain.attrs["x"] = 1
    with pytest.raises(StoreError, match="not a cca_scale activation store"):
        ActivationStore.open(tmp_path / "plain.zarr")
    ActivationStore.create(tmp_path / "s.zarr", n_datapoints=10)
    with pytest.raises(StoreConflictError, match="already exists.*overwrite=True"):
        ActivationStore.create(tmp_path / "s.zarr")
    fresh = ActivationStore.create(tmp_path / "s.zarr", n_datapoints=20, overwrite=True)
    assert fresh.n_datapoints == 20
    for bad in (1, 2.5, True, -3):
        with pytest.raises(StoreError, match="'n_datapoints' parameter"):
            ActivationStore.create(zarr.storage.MemoryStore(), n_datapoints=bad)
    with pytest.raises(StoreError, match="storage_options apply to URLs"):
        ActivationStore.create(tmp_path / "t.zarr", storage_options={"anon": True})


def test_attributes_table_types(store, rng):
    x = rng.normal(size=(N, 2))
    store.add("a", "l", x, attrs={"lr": 0.1, "seed": np.int64(1), "ok": True, "dims": [1, 2]})
    store.add("b", "l", x, attrs={"lr": 0.2})
    table = store.attributes()
    assert isinstance(table, pd.DataFrame) and list(table.columns) == ["lr", "seed", "ok", "dims"]
    assert table.loc["a", "dims"] == [1, 2] and table.loc["a", "ok"] == True  # noqa: E712
    assert pd.isna(table.loc["b", "seed"])
    assert list(store.attributes("seed == 1").index) == ["a"]


def test_reader_type_exported():
    assert LayerReader.__name__ == "LayerReader"


def test_store_pickles_as_its_address(tmp_path, rng):
    x = rng.normal(size=(N, 3))
    store = ActivationStore.create(tmp_path / "s.zarr", n_datapoints=N)
    store.add("a", "l", x)
    blob = pickle.dumps(ActivationStore.open(tmp_path / "s.zarr"))
    assert len(blob) < 1000
    clone = pickle.loads(blob)
    assert clone.mode == "r" and clone.networks() == ["a"]
    np.testing.assert_array_equal(clone.read("a", "l"), x)


def test_leftovers_of_killed_writers_are_reported_and_discarded(tmp_path):
    import subprocess
    import sys

    import zarr

    from cca_scale.store import layout

    path = tmp_path / "s.zarr"
    store = ActivationStore.create(path, n_datapoints=50)
    x = np.random.default_rng(0).normal(size=(50, 4))
    store.add("n0", "h", x)
    store.add("n0", "h", x + 1, overwrite=True)  # its moved-aside old array is deleted again
    assert store.staged() == []
    root = zarr.open_group(store=str(path), mode="a")
    for name, written in (("dead", "2020-01-01T00:00:00+00:00"),
                          ("live", "2999-01-01T00:00:00+00:00")):
        root.create_array(f"{layout.STAGING}/{name}", shape=(50, 4), dtype="f4",
                          attributes={layout.KEY: {"written": written}})
    assert [e["name"] for e in store.staged()] == ["dead", "live"]
    with pytest.raises(StoreError, match="read-only"):
        ActivationStore.open(path).discard_staged()
    info = subprocess.run([sys.executable, "-m", "cca_scale.cli.main", "info", str(path)],
                          capture_output=True, text=True)
    assert "2 unfinished write(s)" in info.stdout
    out = subprocess.run([sys.executable, "-m", "cca_scale.cli.main", "info", str(path),
                          "--discard-staged"], capture_output=True, text=True)
    assert out.returncode == 0 and "discarded 1 unfinished write(s)" in out.stdout
    assert [e["name"] for e in store.staged()] == ["live"]  # a write still streaming is kept
    np.testing.assert_array_equal(store.read("n0", "h"), x + 1)
