"""Damaged stores: a lost or corrupt chunk, a damaged or missing metadata document, a foreign node
at the store path, reserved names. Each gives one clear error, never a traceback and never numbers.
"""

import json
import os
import pickle
import re
import shutil
import uuid

import numpy as np
import pytest
import zarr

import cca_scale
from cca_scale import ActivationStore
from cca_scale.cli.main import main
from cca_scale.errors import DamagedStoreError, InvalidNameError, StoreError
from cca_scale.matrix import DistanceMatrix

N, ROWS = 40, 8  # five chunks per array: datapoints 0-7, 8-15, 16-23, 24-31, 32-39
CHUNK = "networks/a/fc1/acts/c/2/0"  # datapoints 16 to 23 of network 'a', layer 'fc1'


def build(path) -> dict:
    """Networks a and b (layer fc1), a's fc2 at step 5 and a recurrent layer; several chunks."""
    rng = np.random.default_rng(3)
    store = ActivationStore.create(path, n_datapoints=N)
    data = {}
    for net in ("a", "b"):
        data[net] = rng.normal(size=(N, 5)).astype(np.float32)
        store.add(net, "fc1", data[net], chunk_rows=ROWS, attrs={"seed": ord(net)})
    data["fc2"] = rng.normal(size=(N, 3)).astype(np.float32)
    store.add("a", "fc2", data["fc2"], step=5, chunk_rows=ROWS)
    data["rnn"] = rng.normal(size=(N, 3, 2)).astype(np.float32)
    store.add("a", "rnn", data["rnn"], timesteps=True, chunk_rows=ROWS)
    return data


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def edit_json(path, change) -> None:
    doc = json.loads(path.read_bytes())
    change(doc)
    path.write_text(json.dumps(doc))


def snapshot(target) -> dict:
    if isinstance(target, zarr.storage.MemoryStore):
        return {key: value.to_bytes() for key, value in target._store_dict.items()}
    out = {}
    for root, _, files in os.walk(target):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as handle:
                out[os.path.relpath(full, target)] = handle.read()
    return out


# -- lost and corrupt chunks ----------------------------------------------------------------------
def _garbage(chunk):
    chunk.write_bytes(b"not a zstd frame" * 4)


def _truncate(chunk):
    chunk.write_bytes(chunk.read_bytes()[:len(chunk.read_bytes()) // 2])


CORRUPT = "datapoints 16 to 23 cannot be read: their chunk file is corrupt or truncated"
CHUNK_DAMAGE = [
    pytest.param(os.remove, "datapoints 16 to 23 are missing: their chunk file is not in the store",
                 id="deleted"),
    pytest.param(_garbage, CORRUPT, id="garbage"),
    pytest.param(_truncate, CORRUPT, id="truncated"),
]


@pytest.mark.parametrize("via", ["store.read", "iter_chunks", "info"])
@pytest.mark.parametrize("damage, match", CHUNK_DAMAGE)
def test_damaged_chunk_is_an_error(tmp_path, capsys, damage, match, via):
    path = tmp_path / "acts.zarr"
    data = build(path)
    damage(path / CHUNK)
    pattern = (rf"network 'a', layer 'fc1': {match}.*Chunk: {re.escape(str(path / CHUNK))}\. "
               r".*Restore the store from its source.*re-ingest this layer")
    store = ActivationStore.open(path)
    if via == "store.read":
        with pytest.raises(DamagedStoreError, match=pattern):
            store.read("a", "fc1")
        np.testing.assert_array_equal(store.read("b", "fc1"), data["b"])  # the rest reads
    elif via == "iter_chunks":
        chunks = pickle.loads(pickle.dumps(store.reader("a", "fc1"))).iter_chunks()
        np.testing.assert_array_equal(np.concatenate([next(chunks), next(chunks)]),
                                      data["a"][:16])
        with pytest.raises(DamagedStoreError, match=pattern):
            next(chunks)
    else:
        code, out, err = run(capsys, "info", path, "--verify")
        assert code == 1 and re.search(pattern, err) and "Traceback" not in err
        assert "Activation store" in out  # the description still comes first
        code, _, err = run(capsys, "info", path)  # without --verify: chunk files' presence
        assert (code == 1 and re.search(pattern, err)) if damage is os.remove else code == 0


@pytest.mark.parametrize("chunk, match", [
    ("networks/a/fc2/step_5/c/2/0", "network 'a', layer 'fc2', step 5: datapoints 16 to 23"),
    ("networks/a/rnn/acts/c/2/1/0", "network 'a', layer 'rnn', timestep 1: datapoints 16 to 23"),
])
def test_damaged_chunk_names_step_and_timestep(tmp_path, capsys, chunk, match):
    path = tmp_path / "acts.zarr"
    build(path)
    os.remove(path / chunk)
    store = ActivationStore.open(path)
    layer, step, timestep = ("fc2", 5, None) if "fc2" in chunk else ("rnn", None, 1)
    with pytest.raises(DamagedStoreError, match=match + ".*" + re.escape(chunk)):
        store.read("a", layer, step=step, timestep=timestep)
    if timestep is not None:  # the other timesteps' chunks are intact
        store.read("a", layer, timestep=0)
    code, _, err = run(capsys, "info", path)  # every timestep of every array is checked
    assert code == 1 and match in err


def test_compare_raises_the_workers_damage_error(tmp_path):
    path = tmp_path / "acts.zarr"
    build(path)
    os.remove(path / "networks/b/fc1/acts/c/2/0")
    with pytest.raises(DamagedStoreError,
                       match=r"network 'b', layer 'fc1': datapoints 16 to 23 are missing") as got:
        cca_scale.compare(str(path), layer="fc1", n_workers=1)
    assert type(got.value) is DamagedStoreError  # raised on the worker, re-raised as itself


def test_old_store_with_fill_value_zero_checks_chunk_keys(tmp_path):
    path = tmp_path / "acts.zarr"
    data = build(path)
    array_doc = path / "networks/a/fc1/acts/zarr.json"
    assert np.isnan(zarr.open_array(str(array_doc.parent)).fill_value)  # new arrays: NaN
    edit_json(array_doc, lambda doc: doc.update(fill_value=0.0))  # as written before NaN fill
    store = ActivationStore.open(path)
    reader = store.reader("a", "fc1")
    np.testing.assert_array_equal(reader.read(), data["a"])  # an intact old array reads
    os.remove(path / CHUNK)
    assert not zarr.open_array(str(array_doc.parent))[16:24].any()  # Zarr alone reads zeros
    pattern = (r"network 'a', layer 'fc1': datapoints 16 to 23 are missing.*older cca_scale "
               r"\(fill value 0\).*" + re.escape(CHUNK))
    with pytest.raises(DamagedStoreError, match=pattern):
        store.read("a", "fc1")
    with pytest.raises(DamagedStoreError, match=pattern):
        list(pickle.loads(pickle.dumps(reader)).iter_chunks())
    with pytest.raises(DamagedStoreError, match=pattern):
        reader[10:30]
    with pytest.raises(DamagedStoreError, match=pattern):
        store.dask_array("a", "fc1").compute()
    np.testing.assert_array_equal(reader[:16], data["a"][:16])  # blocks around it still read


# -- metadata documents ---------------------------------------------------------------------------
DOCS = {"root": "zarr.json", "network": "networks/a/zarr.json",
        "layer": "networks/a/fc1/zarr.json", "array": "networks/a/fc1/acts/zarr.json"}


def _invalid_json(doc):
    doc.write_bytes(doc.read_bytes()[:-7])


def _not_utf8(doc):
    doc.write_bytes(doc.read_bytes().replace(b"cca_scale", b"cca\xe9scale", 1))


def _own(doc):
    return doc["attributes"]["cca_scale"]


METADATA = [
    ("root", os.remove, r"the store's root document is missing"),
    ("network", os.remove, r"the metadata document of network 'a' is missing, though its folder"),
    ("layer", os.remove, r"the metadata document of layer 'fc1' of network 'a' is missing"),
    ("array", os.remove, r"the metadata document of array 'acts' of network 'a', layer 'fc1' is "
                         r"missing"),
    *[(doc, _invalid_json, r"it is not valid JSON \(.*: line \d+, column \d+\)") for doc in DOCS],
    *[(doc, _not_utf8, r"it is not UTF-8 text \(byte 0xe9 at offset \d+\)") for doc in DOCS],
    ("root", lambda p: edit_json(p, lambda d: _own(d).update(n_datapoints="forty")),
     r"'n_datapoints' in attribute 'cca_scale' is a string 'forty', not an integer"),
    ("network", lambda p: edit_json(p, lambda d: _own(d).update(created_ns="yesterday")),
     r"'created_ns' in attribute 'cca_scale' is a string 'yesterday', not an integer"),
    ("layer", lambda p: edit_json(p, lambda d: d["attributes"].update(cca_scale=["layer"])),
     r"the attribute 'cca_scale' is a list, not an object"),
    ("array", lambda p: edit_json(p, lambda d: d.update(shape="40 x 5")),
     r"Zarr cannot read the array metadata \("),
    ("root", lambda p: edit_json(p, lambda d: _own(d).pop("format")),
     r"the key 'format' is missing from attribute 'cca_scale'"),
    ("network", lambda p: edit_json(p, lambda d: _own(d).pop("kind")),
     r"the key 'kind' is missing from attribute 'cca_scale'"),
    ("layer", lambda p: edit_json(p, lambda d: _own(d).pop("created_ns")),
     r"the key 'created_ns' is missing from attribute 'cca_scale'"),
    ("array", lambda p: edit_json(p, lambda d: d.pop("shape")),
     r"Zarr cannot read the array metadata \(KeyError: 'shape'\)"),
    ("array", lambda p: edit_json(p, lambda d: d.update(shape=[400, 5])),
     r"the array has 400 datapoints, but the store's root document records 40"),
]


@pytest.mark.parametrize("doc, edit, match", METADATA,
                         ids=[f"{doc}-{i}" for i, (doc, _, _) in enumerate(METADATA)])
def test_damaged_metadata_is_one_clear_error(tmp_path, capsys, doc, edit, match):
    path = tmp_path / "acts.zarr"
    build(path)
    edit(path / DOCS[doc])
    pattern = rf"store metadata is damaged: {re.escape(str(path / DOCS[doc]))}: {match}"
    with pytest.raises(DamagedStoreError, match=pattern):
        ActivationStore.open(path).read("a", "fc1")
    code, _, err = run(capsys, "info", path)
    assert code == 1 and re.search(pattern, err) and "Traceback" not in err


def test_network_folder_without_document_is_not_skipped(tmp_path):
    path = tmp_path / "acts.zarr"
    build(path)
    store = ActivationStore.open(path)
    os.remove(path / "networks/b/zarr.json")
    for listing in (store.networks, store.attributes, lambda: store.networks("seed > 0")):
        with pytest.raises(DamagedStoreError, match=r"networks/b/zarr.json: the metadata document "
                                                    r"of network 'b' is missing"):
            listing()
    with pytest.raises(DamagedStoreError, match="network 'b' is missing"):
        ActivationStore.open(path, mode="a").add("b", "fc9", np.ones((N, 2)) * np.arange(2))


def test_writes_in_progress_are_not_damage(tmp_path):
    path = tmp_path / "acts.zarr"
    build(path)
    store = ActivationStore.open(path)
    (path / "networks/new").mkdir()  # a network being created: its document is on its way
    (path / "networks/newer").mkdir()
    (path / f"networks/newer/zarr.{uuid.uuid4().hex}.partial").write_bytes(b'{"zarr')
    assert store.networks() == ["a", "b"]
    # An array being copied into place on an object store: chunks first, document last, while
    # its source still sits in _staging/.
    staged = path / "_staging" / uuid.uuid4().hex
    shutil.copytree(path / "networks/a/fc1/acts", staged)
    edit_json(staged / "zarr.json", lambda d: _own(d).update(step=3))
    shutil.copytree(path / "networks/a/fc1/acts/c", path / "networks/a/fc1/step_3/c")
    assert store.steps("a", "fc1") == [] and not store.has_layer("a", "fc1", step=3)
    shutil.rmtree(staged)  # no move under way: the same folder is damage
    with pytest.raises(DamagedStoreError, match="array 'step_3' of network 'a', layer 'fc1'"):
        store.steps("a", "fc1")


@pytest.mark.parametrize("make, match", [
    (lambda p: zarr.create_array(str(p), shape=(4,), dtype="f4"),
     r"is a Zarr array, not an activation store"),
    (lambda p: cca_scale.save_distances(DistanceMatrix(np.zeros((2, 2)), ["a", "b"], ["a", "b"]),
                                        p),
     r"is a cca_scale comparison output, not an activation store"),
])
def test_other_zarr_node_at_the_store_path(tmp_path, capsys, make, match):
    path = tmp_path / "thing.zarr"
    make(path)
    before = snapshot(path)
    with pytest.raises(StoreError, match=match):
        ActivationStore.open(path)
    code, _, err = run(capsys, "info", path)
    assert code == 1 and re.search(match, err)
    with pytest.raises(StoreError, match=r"not (a cca_scale|an) activation store; refusing"):
        ActivationStore.create(path, overwrite=True)
    assert snapshot(path) == before


# -- names --------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["local", "memory"])
@pytest.mark.parametrize("kind", ["network", "layer"])
@pytest.mark.parametrize("name", ["zarr.json", "ZARR.JSON", "Zarr.Json", ".zarray", ".zgroup",
                                  ".zattrs", ".zmetadata", "c", "C"])
def test_reserved_names_are_refused(tmp_path, backend, kind, name):
    target = tmp_path / "acts.zarr" if backend == "local" else zarr.storage.MemoryStore()
    store = ActivationStore.create(target, n_datapoints=N)
    x = np.random.default_rng(0).normal(size=(N, 3))
    store.add("a", "fc1", x)
    before = snapshot(target)
    names = (name, "fc1") if kind == "network" else ("a", name)
    with pytest.raises(InvalidNameError, match=rf"invalid name for a {kind}: "
                                               rf"{re.escape(repr(name))} \(Zarr reserves it"):
        store.add(*names, x)
    assert snapshot(target) == before
    assert store.networks() == ["a"] and store.layers("a") == ["fc1"]


def test_names_that_look_like_layout_names_do_not_collide(tmp_path):
    # Arrays ("acts", "step_<N>") live inside layers, so networks and layers may use these names.
    store = ActivationStore.create(tmp_path / "acts.zarr", n_datapoints=N)
    rng = np.random.default_rng(1)
    data = {layer: rng.normal(size=(N, 3)) for layer in ("acts", "step_3")}
    for layer, x in data.items():
        store.add("step_1", layer, x)
    store.add("step_1", "acts", data["step_3"], step=3)
    assert store.layers("step_1") == ["acts", "step_3"] and store.steps("step_1", "acts") == [3]
    for layer, x in data.items():
        np.testing.assert_array_equal(store.read("step_1", layer), x)
    np.testing.assert_array_equal(store.read("step_1", "acts", step=3), data["step_3"])


# -- reading a comparison output -----------------------------------------------------------------
def _output(path):
    cca_scale.save_distances(DistanceMatrix(np.zeros((2, 2)), ["a", "b"], ["a", "b"]), path)
    return path / "zarr.json"


OUTPUTS = [
    pytest.param(lambda p: build(p), StoreError,
                 r"is an activation store, not a comparison output; run 'cca-scale compare' on "
                 r"it first", id="activation-store"),
    pytest.param(lambda p: zarr.create_array(str(p), shape=(2, 2), dtype="f8"), StoreError,
                 r"is a Zarr array, not a comparison output", id="bare-array"),
    pytest.param(lambda p: edit_json(_output(p), lambda d: _own(d).pop("rows")),
                 DamagedStoreError, r"store metadata is damaged: .*zarr.json: the key 'rows' is "
                                    r"missing", id="rows-missing"),
    pytest.param(lambda p: edit_json(_output(p), lambda d: _own(d).update(cols="a,b")),
                 DamagedStoreError, r"store metadata is damaged: .*zarr.json: 'cols' is a str, "
                                    r"not a list", id="cols-wrong-type"),
    pytest.param(lambda p: edit_json(_output(p), lambda d: _own(d).update(rows=[{"x": 1}] * 2)),
                 DamagedStoreError, r"every entry of 'rows' must be an object with a string "
                                    r"'label'", id="labels-missing"),
    pytest.param(lambda p: _invalid_json(_output(p)), DamagedStoreError,
                 r"store metadata is damaged: .*zarr.json: it is not valid JSON", id="bad-json"),
]


@pytest.mark.parametrize("make, error, match", OUTPUTS)
def test_reading_distances_from_the_wrong_thing(tmp_path, capsys, make, error, match):
    path = tmp_path / "thing.zarr"
    make(path)
    with pytest.raises(error, match=match):
        cca_scale.load_distances(path)
    code, _, err = run(capsys, "export", path, "-o", tmp_path / "d.csv")
    assert code == 1 and re.search(match, err) and "Traceback" not in err
    assert not (tmp_path / "d.csv").exists()
