"""Outputs never destroy what is not theirs: ``compare --out``, ``export -o`` and ``ingest``
refuse every path that holds something cca_scale did not write there, whatever ``--overwrite``
says, and leave every byte in place; a full or read-only disk is one clear error, with nothing
half-written left."""

import errno
import hashlib
import importlib
import json
import os
import re
import shutil
import stat

import numpy as np
import pytest
import zarr

import cca_scale
from cca_scale import ActivationStore, DistanceMatrix
from cca_scale.analysis import export_distances, load_distances
from cca_scale.cli.main import main
from cca_scale.errors import StorageWriteError, UnsafeOutputError
from cca_scale.store.targets import check_output_target

N = 40
LAYER = "h"
ENGINE = importlib.import_module("cca_scale.engine.compare")  # the module, not the function


def snapshot(root) -> dict:
    """Every path under ``root`` (itself included) with what it is: a file's SHA-256, a link's
    target, a folder, or another kind of node with its mode."""
    out = {}

    def record(path):
        rel = os.path.relpath(path, root)
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            out[rel] = ("link", os.readlink(path))
        elif stat.S_ISREG(info.st_mode):
            with open(path, "rb") as fh:
                out[rel] = ("file", hashlib.sha256(fh.read()).hexdigest())
        elif stat.S_ISDIR(info.st_mode):
            out[rel] = ("dir",)
        else:
            out[rel] = ("other", info.st_mode, info.st_rdev)

    record(root)
    for folder, dirs, files in os.walk(root):  # does not follow links into folders
        for name in dirs + files:
            record(os.path.join(folder, name))
    return out


def devnull_state():
    info = os.lstat("/dev/null")
    return stat.S_ISCHR(info.st_mode), info.st_rdev


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _acts(rng, k):
    return rng.normal(size=(N, 3)) + np.arange(3) * k


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A working directory with an input store, a user's folder and file, links, a foreign
    Zarr group, another activation store and a comparison output of ours."""
    root = tmp_path_factory.mktemp("template")
    rng = np.random.default_rng(5)
    (root / "data").mkdir()
    store = ActivationStore.create(root / "data" / "acts.zarr", n_datapoints=N)
    for k, net in enumerate(("n0", "n1", "n2")):
        store.add(net, LAYER, _acts(rng, k))
    np.save(root / "x.npy", _acts(rng, 3))
    (root / "results").mkdir()
    (root / "results" / "thesis.txt").write_text("three years of work")
    (root / "empty").mkdir()
    os.symlink("results", root / "link_dir")
    os.symlink("results/thesis.txt", root / "link_file")
    os.symlink("results/thesis.txt", root / "link.csv")
    plain = zarr.open_group(str(root / "plain.zarr"), mode="w")
    plain.attrs["owner"] = "someone else"
    ActivationStore.create(root / "other.zarr", n_datapoints=N)
    labels = ["n0", "n1", "n2"]
    D = DistanceMatrix(rng.uniform(size=(3, 3)), labels, labels, {"metric": "pwcca"})
    cca_scale.save_distances(D, root / "fc.zarr")
    (root / "mine.csv").write_text("id,value\n1,2\n")
    np.save(root / "mine.npy", np.zeros(3))
    return root


@pytest.fixture
def place(template, tmp_path, monkeypatch):
    """A fresh copy of the template (links copied as links), as the working directory."""
    root = tmp_path / "cwd"
    shutil.copytree(template, root, symlinks=True)
    monkeypatch.chdir(root)
    return root


def assert_refused(code, err, command):
    assert code == 1
    assert err.startswith(f"cca-scale {command}: error:") and err.count("\n") == 1, err
    assert "refusing" in err and "Nothing there was touched" in err


# -- compare --out ----------------------------------------------------------------------------
COMPARE_TARGETS = [
    ("results", "is a folder ('thesis.txt')"),
    (".", "is the current working directory"),
    ("data/acts.zarr", "is the input"),
    ("data", "contains the input"),
    ("data/acts.zarr/out.zarr", "is inside the input"),
    ("data/acts.zarr/networks", "is inside the input"),
    ("link_dir", "is a symbolic link (to 'results')"),
    ("link_file", "is a symbolic link"),
    ("/dev/null", "is a character device"),
    ("other.zarr", "is a cca_scale activation store, not a comparison output"),
    ("plain.zarr", "Zarr group holding data that is not a cca_scale comparison output"),
    ("results/thesis.txt", "is a file"),
]


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
@pytest.mark.parametrize("target, what", COMPARE_TARGETS, ids=[t for t, _ in COMPARE_TARGETS])
def test_compare_refuses_hostile_out_before_a_cluster(place, capsys, monkeypatch, target, what,
                                                      overwrite):
    def no_cluster(**kwargs):
        raise AssertionError("a cluster was started before the output was checked")

    monkeypatch.setattr(ENGINE, "open_client", no_cluster)
    before, null = snapshot(place), devnull_state()
    code, _, err = run(capsys, "compare", "data/acts.zarr", "--layer", LAYER, "--out", target,
                       *(["--overwrite"] if overwrite else []))
    assert_refused(code, err, "compare")
    assert what in err and "choose another --out" in err
    assert snapshot(place) == before and devnull_state() == null
    code, _, err = run(capsys, "compare", "data/acts.zarr", "--layer", LAYER, "--out", target,
                       "--dry-run")
    assert_refused(code, err, "compare")


def test_library_refusals_are_unsafe_output_errors(place):
    os.symlink("other.zarr", place / "store_link")
    before = snapshot(place)
    with pytest.raises(UnsafeOutputError, match="is the input"):
        cca_scale.compare("data/acts.zarr", layer=LAYER, out="data/acts.zarr", overwrite=True)
    with pytest.raises(UnsafeOutputError, match="is a folder"):
        cca_scale.save_distances(cca_scale.load_distances("fc.zarr"), "results", overwrite=True)
    with pytest.raises(UnsafeOutputError, match="symbolic link"):
        ActivationStore.create("link_dir", overwrite=True)
    with pytest.raises(UnsafeOutputError, match="symbolic link"):
        ActivationStore.create("store_link", overwrite=True)  # not through the link
    with pytest.raises(UnsafeOutputError, match="comparison output, not an activation store"):
        ActivationStore.create("fc.zarr", overwrite=True)
    assert snapshot(place) == before


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


@pytest.fixture
def shared_cluster(client, monkeypatch):
    """``cca-scale compare`` runs on one in-process cluster for the whole module."""
    monkeypatch.setattr(ENGINE, "open_client", lambda **kwargs: (client, False))
    return client


def test_compare_reuses_and_overwrites_only_its_own_output(place, capsys, shared_cluster):
    code, out, err = run(capsys, "compare", "data/acts.zarr", "--layer", LAYER, "--out",
                         "new.zarr", "--quiet")
    assert code == 0, err
    first = cca_scale.load_distances("new.zarr")
    code, _, err = run(capsys, "compare", "data/acts.zarr", "--layer", LAYER, "--out",
                       "new.zarr", "--quiet")
    assert code == 0 and re.search(r"resuming: (\d+) of \1 tiles already done", err), err
    code, _, err = run(capsys, "compare", "data/acts.zarr", "--layer", LAYER, "--out",
                       "new.zarr", "--metric", "cka", "--quiet")
    assert code == 1 and "other parameters" in err and "--overwrite" in err
    code, _, err = run(capsys, "compare", "data/acts.zarr", "--layer", LAYER, "--out",
                       "new.zarr", "--metric", "cka", "--overwrite", "--quiet")
    assert code == 0, err
    again = cca_scale.load_distances("new.zarr")
    assert again.metadata["metric"] == "cka" and again.labels == first.labels
    code, _, err = run(capsys, "compare", "data/acts.zarr", "--layer", LAYER, "--out",
                       "empty", "--quiet")  # an empty folder: nothing there to lose
    assert code == 0, err
    assert cca_scale.load_distances("empty").labels == first.labels


def test_an_interrupted_creation_counts_as_ours(place, shared_cluster):
    zarr.open_group(str(place / "half.zarr"), mode="w")  # killed before the attributes
    assert check_output_target("half.zarr", kind="comparison") == "ours"
    half = zarr.open_group(str(place / "creating.zarr"), mode="w")
    half.attrs["cca_scale"] = {"format": 1, "state": "creating"}
    half.create_array("distance", shape=(3, 3), dtype="float64")
    for out in ("half.zarr", "creating.zarr"):
        d = cca_scale.compare("data/acts.zarr", layer=LAYER, out=out, client=shared_cluster)
        assert d.shape == (3, 3)


def test_targets_on_urls_and_memory_stores():
    acts = "memory://targets/acts.zarr"
    ActivationStore.create(acts, n_datapoints=N)
    for out, what in ((acts, "is the input"), (acts + "/x.zarr", "is inside the input"),
                      ("memory://targets", "contains the input")):
        with pytest.raises(UnsafeOutputError, match=what):
            check_output_target(out, kind="comparison", inputs=(acts,))
    with pytest.raises(UnsafeOutputError, match="activation store, not a comparison output"):
        check_output_target(acts, kind="comparison")
    assert check_output_target("memory://targets/new.zarr", kind="comparison",
                               inputs=(acts,)) == "absent"
    assert check_output_target(acts, kind="activations") == "ours"
    import fsspec

    fsspec.filesystem("memory").pipe("/targets-foreign/notes.txt", b"mine")
    with pytest.raises(UnsafeOutputError, match=r"holds keys \('notes.txt'\)"):
        check_output_target("memory://targets-foreign", kind="comparison")
    memory = zarr.storage.MemoryStore()
    assert check_output_target(memory, kind="activations") == "absent"
    ActivationStore.create(memory, n_datapoints=N)
    assert check_output_target(memory, kind="activations") == "ours"
    foreign = zarr.storage.MemoryStore()
    zarr.open_group(foreign, mode="w").attrs["x"] = 1
    with pytest.raises(UnsafeOutputError, match="not a cca_scale activation store"):
        ActivationStore.create(foreign, overwrite=True)


# -- export -o --------------------------------------------------------------------------------
EXPORT_TARGETS = [
    ("results", ["--format", "csv"], "is a folder"),
    (".", ["--format", "csv"], "is the current working directory"),
    ("link.csv", [], "is a symbolic link"),
    ("link_dir", ["--format", "csv"], "is a symbolic link"),
    ("/dev/null", ["--format", "csv"], "is a character device"),
    ("results/thesis.txt", ["--format", "csv"], "its header does not start with the 'row'"),
    ("mine.csv", [], "its header does not start with the 'row' column"),
    ("mine.npy", [], "without the .labels.json file"),
    ("results/thesis.txt", ["--format", "npy"], "not a npy file"),
    ("results/thesis.txt", ["--format", "parquet"], "not a parquet file"),
    ("results/thesis.txt", ["--format", "netcdf"], "not a netcdf file"),
    ("fc.zarr/x.csv", [], "is inside the input"),
]


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
@pytest.mark.parametrize("target, options, what", EXPORT_TARGETS,
                         ids=[f"{t}-{'-'.join(o)}" for t, o, _ in EXPORT_TARGETS])
def test_export_refuses_hostile_targets(place, capsys, target, options, what, overwrite):
    before, null = snapshot(place), devnull_state()
    code, _, err = run(capsys, "export", "fc.zarr", "-o", target, *options,
                       *(["--overwrite"] if overwrite else []))
    assert_refused(code, err, "export")
    assert what in err and "choose another -o FILE" in err
    assert snapshot(place) == before and devnull_state() == null


@pytest.mark.parametrize("fmt, suffix", [("csv", ".csv"), ("npy", ".npy"), ("netcdf", ".nc"),
                                         ("parquet", ".parquet")])
def test_export_replaces_only_its_own_files(place, capsys, fmt, suffix):
    target = f"d{suffix}"
    assert run(capsys, "export", "fc.zarr", "-o", target)[0] == 0
    assert check_output_target(target, kind=fmt) == "ours"
    assert run(capsys, "export", "fc.zarr", "-o", target, "--overwrite")[0] == 0
    code, _, err = run(capsys, "export", target, "-o", target, "--overwrite")
    assert_refused(code, err, "export")
    assert "is the input" in err
    # A look-alike of another program: the same extension, no cca_scale signature.
    foreign = place / f"foreign{suffix}"
    frame = load_distances(target).to_pandas()
    frame.attrs = {}
    if fmt == "csv":
        frame.to_csv(foreign, index_label="network")
    elif fmt == "npy":
        np.save(foreign, frame.to_numpy())
        (place / f"foreign{suffix}.labels.json").write_text(json.dumps({"format": "mine"}))
    elif fmt == "netcdf":
        frame.rename_axis(index="row", columns="column").stack().to_xarray().to_netcdf(
            foreign, engine="netcdf4")
    else:
        frame.to_parquet(foreign)
    before = snapshot(place)
    code, _, err = run(capsys, "export", "fc.zarr", "-o", foreign, "--overwrite")
    assert_refused(code, err, "export")
    assert snapshot(place) == before


# -- ingest -----------------------------------------------------------------------------------
INGEST_TARGETS = [
    ("results", "is a folder ('thesis.txt')"),
    (".", "is the current working directory"),
    ("link_dir", "is a symbolic link"),
    ("link_file", "is a symbolic link"),
    ("/dev/null", "is a character device"),
    ("results/thesis.txt", "is a file"),
    ("fc.zarr", "is a cca_scale comparison output, not an activation store"),
    ("plain.zarr", "not a cca_scale activation store"),
]


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
@pytest.mark.parametrize("target, what", INGEST_TARGETS, ids=[t for t, _ in INGEST_TARGETS])
def test_ingest_refuses_hostile_stores(place, capsys, target, what, overwrite):
    before, null = snapshot(place), devnull_state()
    code, _, err = run(capsys, "ingest", target, "n9", LAYER, "x.npy",
                       *(["--overwrite"] if overwrite else []))
    assert_refused(code, err, "ingest")
    assert what in err and "choose another store path" in err
    assert snapshot(place) == before and devnull_state() == null


def test_refused_ingest_into_an_empty_folder_leaves_it(place, capsys):
    before = snapshot(place)
    code, _, err = run(capsys, "ingest", "empty", "n9", LAYER, "x.npy", "--n-datapoints", N + 1)
    assert code == 1 and "datapoints" in err
    assert snapshot(place) == before  # the folder the user made is still there, still empty
    code, _, err = run(capsys, "ingest", "fresh.zarr", "n9", LAYER, "x.npy", "--n-datapoints",
                       N + 1)
    assert code == 1 and snapshot(place) == before  # the folder it made is gone again
    code, _, err = run(capsys, "ingest", "empty", "n9", LAYER, "x.npy")
    assert code == 0, err
    assert ActivationStore.open("empty").networks() == ["n9"]


# -- disk full, read-only -----------------------------------------------------------------------
def _refuse_writes(monkeypatch, code, only=None):
    """Make every Zarr write on local disk (or those whose key contains ``only``) fail."""
    real = zarr.storage.LocalStore.set

    async def failing(self, key, value):
        if only is None or only in key:
            raise OSError(code, os.strerror(code), str(self.root / key))
        return await real(self, key, value)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", failing)


STORAGE_ERRORS = [(errno.ENOSPC, "no space left on device (ENOSPC); free space or choose"),
                  (errno.EROFS, "read-only file system (EROFS); choose")]


@pytest.mark.parametrize("code, words", STORAGE_ERRORS, ids=["ENOSPC", "EROFS"])
@pytest.mark.parametrize("target, only", [("new.zarr", None), ("new.zarr", "/c/"),
                                          ("empty", None), ("data/acts.zarr", "/c/")],
                         ids=["new", "new-data", "empty-folder", "existing-store"])
def test_ingest_on_a_full_or_read_only_disk(place, capsys, monkeypatch, code, words, target,
                                            only):
    before = snapshot(place)
    _refuse_writes(monkeypatch, code, only)
    code_, _, err = run(capsys, "ingest", target, "n9", LAYER, "x.npy")
    assert code_ == 1 and err.count("\n") == 1, err
    assert "cannot write to" in err and words in err and "store path" in err
    assert snapshot(place) == before


@pytest.mark.parametrize("code, words", STORAGE_ERRORS, ids=["ENOSPC", "EROFS"])
def test_compare_output_creation_on_a_full_or_read_only_disk(place, capsys, monkeypatch,
                                                             shared_cluster, code, words):
    before = snapshot(place)
    _refuse_writes(monkeypatch, code)
    code_, _, err = run(capsys, "compare", "data/acts.zarr", "--layer", LAYER, "--out",
                        "new.zarr", "--quiet")
    assert code_ == 1 and err.count("\n") == 1, err
    assert "cannot write to" in err and words in err and "another --out" in err
    with pytest.raises(StorageWriteError, match="cannot write to"):
        cca_scale.save_distances(cca_scale.load_distances("fc.zarr"), "fc.zarr", overwrite=True)
    # Replacing our own output, as asked, then refused: the old one is gone, and nothing
    # half-written is left in its place.
    assert not (place / "fc.zarr").exists() or not any((place / "fc.zarr").iterdir())
    assert {k: v for k, v in snapshot(place).items() if not k.startswith("fc.zarr")} == \
        {k: v for k, v in before.items() if not k.startswith("fc.zarr")}


def test_a_tile_write_on_a_full_disk_is_one_error(place, monkeypatch):
    from cca_scale.engine.output import write_tile_arrays
    from cca_scale.engine.tiles import iter_tiles

    tile = next(iter(iter_tiles(3, 3, 3, square=True)))
    blocks = {name: np.zeros((3, 3)) for name in ("rank_row", "rank_col", "rho_max", "rho_min",
                                                  "distance")}
    before = snapshot(place)
    _refuse_writes(monkeypatch, errno.ENOSPC)
    with pytest.raises(StorageWriteError, match="no space left on device"):
        write_tile_arrays(str(place / "fc.zarr"), tile, blocks, None)
    assert snapshot(place) == before


def _refuse_export_writes(monkeypatch, code):
    """Disk full: the writer gets half its bytes out, then ENOSPC. Read-only: the final
    rename fails with EROFS."""
    from cca_scale.analysis import export as export_module

    def half_then_full(target):
        if hasattr(target, "write"):
            target.write(b"half")
        else:
            with open(target, "wb") as fh:
                fh.write(b"half")
        raise OSError(code, os.strerror(code), str(target))

    if code == errno.ENOSPC:
        monkeypatch.setattr(export_module, "_write_csv", lambda D, path: half_then_full(path))
        monkeypatch.setattr(export_module, "_write_parquet", lambda D, path: half_then_full(path))
        monkeypatch.setattr(np, "save", lambda fh, *args, **kwargs: half_then_full(fh))
    else:
        def read_only(src, dst):
            raise OSError(code, os.strerror(code), str(dst))

        monkeypatch.setattr(os, "replace", read_only)


@pytest.mark.parametrize("code, words", STORAGE_ERRORS, ids=["ENOSPC", "EROFS"])
@pytest.mark.parametrize("fmt, suffix", [("csv", ".csv"), ("npy", ".npy"), ("parquet", ".parquet")])
def test_export_on_a_full_or_read_only_disk(place, capsys, monkeypatch, code, words, fmt,
                                            suffix):
    assert run(capsys, "export", "fc.zarr", "-o", f"d{suffix}")[0] == 0
    D = load_distances(f"d{suffix}")
    before = snapshot(place)
    _refuse_export_writes(monkeypatch, code)
    for target in (f"d{suffix}", f"new{suffix}"):  # replacing an export, and a new one
        code_, _, err = run(capsys, "export", "fc.zarr", "-o", target, "--overwrite")
        assert code_ == 1 and err.count("\n") == 1, err
        assert "cannot write to" in err and words in err and "-o FILE" in err
    with pytest.raises(StorageWriteError, match=words.split(";")[0].replace("(", r"\(")
                       .replace(")", r"\)")):
        export_distances(D, place / f"e{suffix}")
    monkeypatch.undo()
    assert snapshot(place) == before  # no temporary file left, the old export untouched
