"""``cca-scale ingest`` and ``cca-scale info``."""

import os

import numpy as np
import pytest

from cca_scale import ActivationStore
from cca_scale.cli.main import main
from cca_scale.store.ingest import parse_value, read_manifest

N = 60


def tree(path) -> dict[str, bytes]:
    """Every file under a directory with its bytes (empty if it does not exist)."""
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as handle:
                out[os.path.relpath(full, path)] = handle.read()
    return out


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(11)
    data = {}
    (tmp_path / "acts").mkdir()
    for net in ("a", "b", "c2"):
        for layer, width in (("fc1", 6), ("fc2", 4)):
            x = rng.normal(size=(N, width)).astype(np.float32)
            np.save(tmp_path / "acts" / f"{net}_{layer}.npy", x)
            data[net, layer] = x
    return tmp_path, data


def test_ingest_one_file_with_attrs_and_step(files, capsys):
    tmp, data = files
    store_path = tmp / "s.zarr"
    code, out, err = run(capsys, "ingest", store_path, "a", "fc1", tmp / "acts/a_fc1.npy",
                         "--attr", "lr=0.01", "--attr", "seed=3", "--attr", "labels=true")
    assert code == 0, err
    assert "network 'a', layer 'fc1': 60 datapoints x 6 neurons (float32)" in out
    code, out, err = run(capsys, "ingest", store_path, "a", "fc2", tmp / "acts/a_fc2.npy",
                         "--step", "5", "--n-datapoints", N)
    assert code == 0, err
    store = ActivationStore.open(store_path)
    np.testing.assert_array_equal(store.read("a", "fc1"), data["a", "fc1"])
    np.testing.assert_array_equal(store.read("a", "fc2", step=5), data["a", "fc2"])
    assert store.attributes().loc["a"].to_dict() == {"lr": 0.01, "seed": 3, "labels": "true"}
    assert store.networks("labels == 'true' and seed == 3") == ["a"]


def test_ingest_npz_conv_and_timesteps(tmp_path, capsys):
    rng = np.random.default_rng(2)
    conv = rng.normal(size=(N, 3, 3, 4))
    seq = rng.normal(size=(N, 5, 2))
    np.savez(tmp_path / "many.npz", conv=conv, other=conv[:, 0, 0])
    np.save(tmp_path / "seq.npy", seq)
    store_path = tmp_path / "s.zarr"
    code, _, err = run(capsys, "ingest", store_path, "n", "conv", tmp_path / "many.npz")
    assert code == 1 and "holds arrays ['conv', 'other']; name one with --key" in err
    code, _, err = run(capsys, "ingest", store_path, "n", "conv", tmp_path / "many.npz",
                       "--key", "conv")
    assert code == 1 and "2-D" in err and "flatten_conv" in err and "--conv mean" in err
    assert not store_path.exists()  # the store made for a refused write is removed again
    code, _, err = run(capsys, "ingest", store_path, "n", "conv", tmp_path / "many.npz",
                       "--key", "conv", "--conv", "mean")
    assert code == 0, err
    code, _, err = run(capsys, "ingest", store_path, "n", "pos", tmp_path / "many.npz",
                       "--key", "conv", "--conv", "positions")
    assert code == 1 and "at least 540 received" in err and "has 60 datapoints" in err
    code, _, err = run(capsys, "ingest", store_path, "n", "rnn", tmp_path / "seq.npy",
                       "--timesteps")
    assert code == 0, err
    store = ActivationStore.open(store_path)
    np.testing.assert_allclose(store.read("n", "conv"), conv.mean(axis=(1, 2)))
    np.testing.assert_array_equal(store.read("n", "rnn", timestep=4), seq[:, 4, :])
    assert store.layers("n") == ["conv", "rnn"]


def test_manifest_ingest_types_attributes(files, capsys):
    tmp, data = files
    manifest = tmp / "sweep.csv"
    manifest.write_text(
        "network,layer,path,step,lr,labels,seed,note\n"
        "a,fc1,acts/a_fc1.npy,,0.01,true,1,first\n"
        "a,fc2,acts/a_fc2.npy,,0.01,true,1,\n"
        f"b,fc1,{tmp / 'acts/b_fc1.npy'},,0.1,random,2,x\n"
        "c2,fc1,acts/c2_fc1.npy,7,0.1,random,,\n"
    )
    code, out, err = run(capsys, "ingest", tmp / "s.zarr", "--manifest", manifest)
    assert code == 0, err
    assert "stored 4 layer(s) of 3 network(s)" in out
    store = ActivationStore.open(tmp / "s.zarr")
    assert store.networks() == ["a", "b", "c2"]
    np.testing.assert_array_equal(store.read("b", "fc1"), data["b", "fc1"])
    np.testing.assert_array_equal(store.read("c2", "fc1", step=7), data["c2", "fc1"])
    table = store.attributes()
    assert table.loc["a", "lr"] == 0.01 and table.loc["b", "seed"] == 2
    assert table.loc["a", "labels"] == "true" and table.loc["a", "note"] == "first"
    assert "seed" not in store.attributes(["c2"]).dropna(axis=1).columns  # empty cells left out
    assert store.networks("lr == 0.1 and labels == 'random'") == ["b", "c2"]
    rows = read_manifest(str(manifest))
    assert [type(r.attrs["lr"]) for r in rows] == [float] * 4
    assert type(rows[0].attrs["seed"]) is int and rows[3].step == 7


def test_manifest_is_all_or_nothing(files, capsys):
    tmp, _ = files
    bad = np.load(tmp / "acts/b_fc2.npy")
    bad[30, 1] = np.nan
    np.save(tmp / "acts/bad.npy", bad)
    store_path = tmp / "s.zarr"
    assert run(capsys, "ingest", store_path, "a", "fc1", tmp / "acts/a_fc1.npy")[0] == 0
    before = tree(store_path)
    manifest = tmp / "m.csv"
    cases = [
        ("network,layer,path\nb,fc1,acts/b_fc1.npy\nb,fc2,acts/bad.npy\n", "NaN"),
        ("network,layer,path\nb,fc1,acts/b_fc1.npy\nb,fc2,acts/missing.npy\n",
         "line 3: cannot read activations from '.*missing.npy': no such file"),
        ("network,layer,path\nb,fc1,acts/b_fc1.npy\n../b,fc2,acts/b_fc2.npy\n",
         r"line 3: invalid name for a network: '\.\./b'"),
        ("network,layer,path\nb,fc1,acts/b_fc1.npy\nb,fc1,acts/b_fc2.npy\n",
         "on line 2 and again on line 3"),
        ("network,layer,path,lr\nb,fc1,acts/b_fc1.npy,0.1\nb,fc2,acts/b_fc2.npy,0.2\n",
         "lr=0.1 on line 2 but lr=0.2 on line 3"),
        ("network,layer,path\nb,fc1,acts/b_fc1.npy\na,fc1,acts/a_fc1.npy\n",
         "'a', layer 'fc1' already exists"),
        ("network,layer,file\nb,fc1,acts/b_fc1.npy\n", r"lacks the column\(s\) \['path'\]"),
        ("network,layer,path,bad key\nb,fc1,acts/b_fc1.npy,1\n", "invalid name for an attribute"),
        ("network,layer,path\n", "has no rows"),
    ]
    for text, message in cases:
        manifest.write_text(text)
        code, out, err = run(capsys, "ingest", store_path, "--manifest", manifest, "-q")
        assert code == 1, text
        assert err.startswith("cca-scale ingest: error: ") and len(err.strip().splitlines()) == 1
        assert __import__("re").search(message, err), (message, err)
        assert tree(store_path) == before, text


def test_ingest_refusals_name_the_file(files, capsys):
    tmp, _ = files
    store_path = tmp / "s.zarr"
    (tmp / "garbage.npy").write_bytes(b"not a numpy file at all")
    (tmp / "acts.txt").write_text("1 2 3")
    np.save(tmp / "objects.npy", np.array([[{"a": 1}]], dtype=object))
    for path, message in [(tmp / "missing.npy", "no such file"),
                          (tmp / "garbage.npy", ""),
                          (tmp / "objects.npy", ""),
                          (tmp / "acts.txt", "unsupported file type '.txt'"),
                          (tmp, "unsupported file type")]:
        code, _, err = run(capsys, "ingest", store_path, "a", "fc1", path)
        assert code == 1
        assert f"cannot read activations from '{path}'" in err and message in err
    assert not store_path.exists()
    assert run(capsys, "ingest", store_path, "a", "fc1", tmp / "acts/a_fc1.npy")[0] == 0
    before = tree(store_path)
    code, _, err = run(capsys, "ingest", store_path, "a", "fc1", tmp / "acts/b_fc1.npy")
    assert code == 1 and "already exists" in err and "--overwrite" in err
    assert tree(store_path) == before
    code, _, err = run(capsys, "ingest", store_path, "a", "fc1", tmp / "acts/b_fc1.npy",
                       "--fingerprint", "other")
    assert code == 1 and "fingerprint" in err
    code, _, err = run(capsys, "ingest", store_path, "a", "x", tmp / "acts/b_fc1.npy",
                       "--n-datapoints", 61)
    assert code == 1 and "60 datapoints per layer, not 61" in err
    assert tree(store_path) == before
    code, _, err = run(capsys, "ingest", store_path, "a", "fc1", tmp / "acts/b_fc1.npy",
                       "--overwrite")
    assert code == 0, err
    code, _, err = run(capsys, "ingest", store_path, "a", "fc1")
    assert code == 1 and "NETWORK LAYER FILE" in err
    code, _, err = run(capsys, "ingest", store_path, "a", "fc1", tmp / "acts/a_fc1.npy",
                       "--attr", "lr")
    assert code == 1 and "key=value" in err


def test_info_describes_the_store(files, capsys):
    tmp, _ = files
    store = ActivationStore.create(tmp / "s.zarr", n_datapoints=N, fingerprint="digits-60")
    rng = np.random.default_rng(0)
    store.add("net_b", "fc1", rng.normal(size=(N, 6)), attrs={"lr": 0.1, "labels": "true"})
    store.add("net_a", "fc1", rng.normal(size=(N, 4)).astype(np.float32), attrs={"lr": 0.01})
    for step in (0, 10, 20, 30, 40, 50, 60, 70):
        store.add("net_a", "fc2", rng.normal(size=(N, 3)), step=step)
    store.add("net_a", "rnn", rng.normal(size=(N, 5, 2)), timesteps=True)
    code, out, err = run(capsys, "info", tmp / "s.zarr")
    assert code == 0, err
    assert "datapoints:  60" in out and "fingerprint: digits-60" in out
    assert "networks:    2" in out
    assert out.index("net_b") < out.index("net_a")  # insertion order
    lines = out.splitlines()
    assert any("net_b" in l and "0.10" in l and "true" in l for l in lines)
    assert any(l.split()[:5] == ["net_a", "fc1", "60", "x", "4"] and "float32" in l
               for l in lines)
    assert any("fc2" in l and "8 steps 0, 10, 20, ..., 60, 70" in l for l in lines)
    assert any("rnn" in l and "5 timesteps" in l and "60 x 2" in l for l in lines)
    code, out, _ = run(capsys, "info", tmp / "s.zarr", "--query", "lr < 0.05")
    assert code == 0 and "net_b" not in out and "net_a" in out and "matching" in out
    code, _, err = run(capsys, "info", tmp / "nothing.zarr")
    assert code == 1 and "No activation store" in err


def test_info_versions(capsys):
    code, out, _ = run(capsys, "info", "--versions")
    assert code == 0
    for name in ("cca-scale", "numpy", "dask", "zarr", "torch", "GPU"):
        assert name in out
    code, _, err = run(capsys, "info")
    assert code == 1 and "--versions" in err


@pytest.mark.parametrize("command", ["ingest", "info"])
def test_help_has_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"cca-scale {command} " in out and "s3://" in out


def test_parse_value():
    assert parse_value("3") == 3 and type(parse_value("3")) is int
    assert parse_value("0.01") == 0.01 and parse_value("1e-3") == 0.001
    assert parse_value("true") == "true" and parse_value("nan") == "nan"
