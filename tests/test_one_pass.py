"""One pass, many answers: several metrics and several layers in one engine run (format 3).

Each metric of a multi-metric run must equal its own single run bit for bit (one stacked cross
product per tile serves them all, SVCCA's truncation included); each layer block of a multi-layer
run must equal the per-layer (and against_layer) runs; adding a metric computes only it.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import zarr

import cca_scale
from cca_scale import ActivationStore
from cca_scale.core.registry import METRIC_NAMES
from cca_scale.engine.output import DONE, PAIR_ARRAYS, ComparisonOutput
from cca_scale.engine.tiles import iter_tiles
from conftest import flatten_to_format_2

N = 5
LAYERS = {"fa": 6, "fb": 6, "fc": 9}


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    rng = np.random.default_rng(14)
    path = tmp_path_factory.mktemp("onepass") / "acts.zarr"
    store = ActivationStore.create(path, n_datapoints=200)
    for k in range(N):
        z = rng.normal(size=(200, 3))
        for layer, width in LAYERS.items():
            x = np.maximum(z @ rng.normal(size=(3, width)) + 0.7 * rng.normal(size=(200, width)),
                           0)
            store.add(f"n{k}", layer, x, attrs={"group": "a" if k < 3 else "b"})
    return path


def _files(out, metric) -> dict:
    root = os.path.join(str(out), metric)
    found = {}
    for base, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(base, name), "rb") as fh:
                found[os.path.relpath(os.path.join(base, name), root)] = fh.read()
    return found


def _assert_same(got, want):
    assert got.values.dtype == want.values.dtype
    np.testing.assert_array_equal(got.values, want.values)
    for name in want.diagnostics:
        np.testing.assert_array_equal(got.diagnostics[name], want.diagnostics[name],
                                      err_msg=name)


def test_every_metric_in_one_run_equals_its_own_run(client, store_path, tmp_path):
    many = cca_scale.compare(store_path, layer="fa", metric=list(METRIC_NAMES),
                             out=tmp_path / "all.zarr", client=client, tile=2, keep=3)
    assert isinstance(many, dict) and list(many) == list(METRIC_NAMES)
    for metric in METRIC_NAMES:
        one = cca_scale.compare(store_path, layer="fa", metric=metric, client=client, tile=2,
                                keep=3, out=tmp_path / f"{metric}.zarr")
        _assert_same(many[metric], one)
        assert many[metric].metadata["metric"] == metric
        _assert_same(cca_scale.load_distances(tmp_path / "all.zarr", metric=metric), one)
    # the default is the first metric asked for
    assert cca_scale.load_distances(tmp_path / "all.zarr").metadata["metric"] == METRIC_NAMES[0]
    with pytest.raises(cca_scale.StoreError, match="holds no 'procrustes_x'.*holds"):
        cca_scale.load_distances(tmp_path / "all.zarr", metric="procrustes_x")
    summary = many["pwcca"].metadata["run_summary"]
    assert summary["pairs_computed"] == {m: N * (N - 1) for m in METRIC_NAMES}
    assert summary["pairs_resumed"] == {m: 0 for m in METRIC_NAMES}
    assert summary["bytes_read"] > 0 and summary["out"] == str(tmp_path / "all.zarr")


def test_several_layers_equal_the_per_layer_and_against_layer_runs(client, store_path,
                                                                   tmp_path):
    metrics = ["pwcca", "cka", "svcca"]
    many = cca_scale.compare(store_path, layer=["fa", "fc"], metric=metrics, client=client,
                             tile=1, keep=3, out=tmp_path / "ac.zarr")
    m = many["pwcca"]
    assert m.shape == (2 * N, 2 * N)
    assert list(m.row_labels[:3]) == ["n0/fa", "n0/fc", "n1/fa"]
    assert {"network", "layer", "step", "timestep"} <= set(m.row_info.columns)
    assert list(m.row_info["layer"][:2]) == ["fa", "fc"]
    for metric in metrics:
        d = many[metric]
        for la in ("fa", "fc"):
            ri = [i for i, lab in enumerate(d.row_labels) if lab.endswith(f"/{la}")]
            for lb in ("fa", "fc"):
                ci = [i for i, lab in enumerate(d.col_labels) if lab.endswith(f"/{lb}")]
                block = d.values[np.ix_(ri, ci)]
                if la == lb:
                    one = cca_scale.compare(store_path, layer=la, metric=metric, client=client,
                                            tile=1, keep=3, out=tmp_path / f"{metric}{la}.zarr")
                    np.testing.assert_array_equal(block, one.values)
                else:
                    cross = cca_scale.compare(store_path, layer=la, against_layer=lb,
                                              metric=metric, client=client, tile=1, keep=3,
                                              out=tmp_path / f"{metric}{la}{lb}.zarr")
                    np.testing.assert_allclose(block, cross.values, rtol=0, atol=1e-12)
    assert cca_scale.compare(store_path, layer="all", metric="cka", client=client, tile=2,
                             out=tmp_path / "all.zarr").shape == (3 * N, 3 * N)


def test_adding_a_metric_computes_only_it(client, store_path, tmp_path):
    out = tmp_path / "out.zarr"
    first = cca_scale.submit(store_path, layer=["fa", "fc"], metric=["pwcca"], out=out,
                             client=client, tile=3)
    first.result()
    before = _files(out, "pwcca")
    handle = cca_scale.submit(store_path, layer=["fa", "fc"], metric=["pwcca", "cka"], out=out,
                              client=client, tile=3)
    assert handle.resume.done == 0  # no tile has cka yet
    both = handle.result()
    summary = handle.run_summary
    total = 2 * N * (2 * N - 1)
    assert summary.pairs_computed == {"pwcca": 0, "cka": total}
    assert summary.pairs_resumed == {"pwcca": total, "cka": 0}
    assert _files(out, "pwcca") == before  # not one byte of pwcca rewritten
    alone = cca_scale.compare(store_path, layer=["fa", "fc"], metric="cka", client=client, tile=3,
                              out=tmp_path / "cka.zarr")
    _assert_same(both["cka"], alone)
    # A third run asking for both finds everything done and computes nothing.
    again = cca_scale.submit(store_path, layer=["fa", "fc"], metric=["cka", "pwcca"], out=out,
                             client=client, tile=3)
    assert again.resume.done == again.resume.total and not again.futures
    again.result()
    # A metric the output holds must keep its parameters.
    with pytest.raises(cca_scale.StoreConflictError, match="variant: 'paper' -> 'svcca'"):
        cca_scale.compare(store_path, layer=["fa", "fc"], metric=["pwcca", "cka"],
                          variant="svcca", out=out, client=client)


@pytest.mark.parametrize("seed", range(3))
def test_any_done_subset_of_a_multi_metric_multi_layer_output_resumes_bit_identically(
        client, store_path, tmp_path_factory, tmp_path, seed):
    kwargs = dict(layer=["fa", "fc"], metric=["pwcca", "svcca", "cka"], keep=3, tile=2,
                  client=client)
    ref = tmp_path_factory.getbasetemp() / "onepass_ref.zarr"
    if not ref.exists():
        cca_scale.compare(store_path, out=ref, **kwargs)
    out = tmp_path / "out.zarr"
    shutil.copytree(ref, out)
    meta = ComparisonOutput.open(out).meta
    tiles = list(iter_tiles(len(meta["rows"]), len(meta["cols"]), 2, square=True))
    rng = np.random.default_rng(seed)
    group = zarr.open_group(str(out), mode="r+")
    undone = 0
    for metric in kwargs["metric"]:
        for t in tiles:
            if rng.random() < 0.4:
                undone += 1
                for bi, bj in {(t.bi, t.bj), (t.bj, t.bi)}:
                    how = rng.integers(3)
                    if how == 0:  # never computed
                        for name in PAIR_ARRAYS:
                            path = os.path.join(str(out), metric, name, "c", str(bi), str(bj))
                            if os.path.exists(path):
                                os.remove(path)
                        group[f"{metric}/{DONE}"][bi, bj] = 0
                    elif how == 1:  # a chunk lost after the tile finished
                        os.remove(os.path.join(str(out), metric, "distance", "c", str(bi),
                                               str(bj)))
                    else:  # a chunk that no longer decodes
                        with open(os.path.join(str(out), metric, "rank_row", "c", str(bi),
                                               str(bj)), "wb") as fh:
                            fh.write(b"\x00not zstd\xff" * 4)
    got = cca_scale.compare(store_path, out=out, **kwargs)
    for metric in kwargs["metric"]:
        _assert_same(got[metric], cca_scale.load_distances(ref, metric=metric))
        assert ComparisonOutput.open(out).metric_done_mask(metric).all()
    assert (undone > 0) == (sum(got["cka"].metadata["run_summary"]["pairs_computed"].values())
                            > 0)


def test_a_format_2_output_reads_and_resumes_as_before(client, store_path, tmp_path):
    ref = tmp_path / "ref.zarr"
    want = cca_scale.compare(store_path, layer="fa", out=ref, client=client, tile=2)
    out = tmp_path / "old.zarr"
    shutil.copytree(ref, out)
    flatten_to_format_2(out)
    _assert_same(cca_scale.load_distances(out), want)
    assert cca_scale.load_distances(out, metric="pwcca").metadata["format"] == 2
    os.remove(out / "distance" / "c" / "0" / "1")  # a lost chunk: that tile is redone
    handle = cca_scale.submit(store_path, layer="fa", out=out, client=client, tile=2)
    assert handle.resume.total - handle.resume.done == 1
    _assert_same(handle.result(), want)
    assert ComparisonOutput.open(out).meta["format"] == 2
    with pytest.raises(cca_scale.StoreConflictError, match="format-2 output.*'pwcca' only"):
        cca_scale.compare(store_path, layer="fa", metric=["pwcca", "cka"], out=out,
                          client=client)


def test_cli_metric_and_layer_lists_end_to_end(store_path, tmp_path):
    out = tmp_path / "cli.zarr"
    run = subprocess.run(
        [sys.executable, "-m", "cca_scale.cli.main", "compare", str(store_path), "--layer",
         "fa,fc", "--metric", "pwcca,cka", "--out", str(out), "--workers", "1", "--tile", "4",
         "--quiet"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "run summary: 2 metric(s), 90 pairs each" in run.stderr
    assert "cka" in run.stderr and f"output: {out}" in run.stderr
    cka = cca_scale.load_distances(out, metric="cka")
    assert cka.shape == (10, 10) and cka.complete and cka.row_labels[1] == "n0/fc"
    csv = tmp_path / "cka.csv"
    exported = subprocess.run(
        [sys.executable, "-m", "cca_scale.cli.main", "export", str(out), "-o", str(csv), "--metric",
         "cka"], capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr
    from cca_scale.analysis import load_distances

    np.testing.assert_allclose(load_distances(csv).values, cka.values)


@pytest.mark.parametrize("kwargs,match", [
    ({"metric": ["pwcca", "nope"]}, r"'metric' parameter must be one of .*'nope'"),
    ({"metric": ["pwcca", "cka", "pwcca"]}, r"lists metric\(s\) \['pwcca'\] more than once"),
    ({"metric": []}, "non-empty list of metric names"),
    ({"metric": "pwcca,,cka"}, "no empty names"),
    ({"layer": []}, "non-empty list of layer names"),
    ({"layer": ["fa", "fa"]}, r"lists layer\(s\) \['fa'\] more than once"),
    ({"layer": ["fa", "x/y"]}, "never contains '/'"),
    ({"layer": ["fa", "fc"], "against_layer": "fb"}, "needs one 'layer'"),
    ({"layer": ["fa", "fc"], "metric": ["cka", "cosine"]},
     r"\['cosine'\] compare neuron by neuron.*'fa' \(6 neurons\), 'fc' \(9 neurons\)"),
    ({"layer": ["fa", "zz"]}, "Layer 'zz' does not exist"),
])
def test_bad_lists_are_refused_before_any_cluster_starts(store_path, tmp_path, kwargs, match):
    options = {"layer": "fa", **kwargs}
    with pytest.raises(cca_scale.CcaScaleError, match=match):  # an unreachable scheduler
        cca_scale.compare(store_path, out=tmp_path / "x.zarr", scheduler="tcp://127.0.0.1:9",
                          **options)
    assert not (tmp_path / "x.zarr").exists()
