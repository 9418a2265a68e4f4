"""``cca-scale cluster``, ``groups`` and ``export`` on engine outputs written by save_distances."""

import numpy as np
import pandas as pd
import pytest

import cca_scale
from cca_scale.analysis import cluster_agreement, group_statistics, load_distances
from cca_scale.cli.main import main
from test_analysis_clustering import planted
from test_plots import assert_image


@pytest.fixture
def out(rng, tmp_path):
    D = planted(rng)
    path = tmp_path / "fc1.zarr"
    cca_scale.save_distances(D, path)
    return D, path


def test_cluster_prints_clusters_agreement_and_writes_labels(out, tmp_path, capsys):
    D, path = out
    labels, png = tmp_path / "labels.csv", tmp_path / "fc1.png"
    rc = main(["cluster", str(path), "--by", "lr", "-o", str(labels), "--plot", str(png)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "12 networks" in text and "k = 3, chosen by silhouette" in text
    assert text.count("\ncluster ") == 3
    assert "agreement with lr: ARI = 1.000, NMI = 1.000" in text
    for network in D.labels:
        assert network in text
    table = pd.read_csv(labels)
    assert list(table.columns) == ["network", "cluster"]
    assert sorted(table["network"]) == sorted(D.labels)
    truth = D.info["lr"].loc[table["network"]].to_numpy()
    assert cluster_agreement(table["cluster"].to_numpy(), truth) == (1.0, 1.0)
    assert_image(png)


def test_cluster_with_k_and_dendrogram(out, tmp_path, capsys):
    _, path = out
    rc = main(["cluster", str(path), "-k", "2", "--dendrogram", str(tmp_path / "d.svg")])
    text = capsys.readouterr().out
    assert rc == 0 and "k = 2 (given)" in text and text.count("\ncluster ") == 2
    assert_image(tmp_path / "d.svg")


def test_cluster_errors_are_one_line(out, tmp_path, capsys):
    _, path = out
    assert main(["cluster", str(path), "--by", "width"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cca-scale cluster: error:") and "'width'" in err and "'lr'" in err
    existing = tmp_path / "labels.csv"
    existing.write_text("keep me")
    assert main(["cluster", str(path), "-o", str(existing)]) == 1
    assert "--overwrite" in capsys.readouterr().err and existing.read_text() == "keep me"
    assert main(["cluster", str(path), "--plot", str(tmp_path / "x.jpg")]) == 1
    assert "extension" in capsys.readouterr().err


def test_groups_prints_the_table_for_several_layers(rng, tmp_path, capsys):
    D = planted(rng, sizes=(4, 4))
    paths = []
    for layer, scale in (("conv1", 1.0), ("fc1", 0.5)):
        M = cca_scale.DistanceMatrix(D.values * scale, D.labels, D.labels,
                                     dict(D.metadata, layer=layer), D.info, D.info)
        paths.append(tmp_path / f"{layer}.zarr")
        cca_scale.save_distances(M, paths[-1])
    rc = main(["groups", *map(str, paths), "--by", "lr", "--correlate", "test_accuracy",
               "--plot", str(tmp_path / "groups.png")])
    text = capsys.readouterr().out
    assert rc == 0
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "group_a", "group_b", "kind", "mean", "std", "n_pairs"]
    expected = group_statistics({"conv1": D}, "lr")
    row = lines[2].split()  # conv1, 0.001 vs 0.01
    assert row[:4] == ["conv1", "0.001", "0.01", "between"]
    assert float(row[4]) == pytest.approx(expected["mean"].iloc[1], abs=5e-5)
    assert int(row[6]) == 2 * 4 * 4
    assert sum(line.split()[:1] == ["fc1"] for line in lines) == 3
    assert "conv1: mean distance to own lr group vs test_accuracy: r = " in text
    assert_image(tmp_path / "groups.png")


@pytest.mark.parametrize("fmt, suffix", [("csv", ".csv"), ("npy", ".npy"), ("netcdf", ".nc"),
                                         ("parquet", ".parquet")])
def test_export_every_format(out, tmp_path, capsys, fmt, suffix):
    D, path = out
    target = tmp_path / f"fc1{suffix}"
    assert main(["export", str(path), "--format", fmt, "-o", str(target)]) == 0
    assert f"wrote {target}: 12 x 12 float64, {fmt}" in capsys.readouterr().out
    back = load_distances(target)
    assert np.array_equal(back.values, D.values) and back.labels == D.labels
    assert main(["export", str(path), "--format", fmt, "-o", str(target)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["export", str(path), "--format", fmt, "-o", str(target), "--overwrite"]) == 0


def test_export_format_from_extension_and_exported_input(out, tmp_path, capsys):
    D, path = out
    assert main(["export", str(path), "-o", str(tmp_path / "a.parquet")]) == 0
    # An exported file is a valid OUT too.
    assert main(["export", str(tmp_path / "a.parquet"), "-o", str(tmp_path / "b.csv")]) == 0
    assert np.array_equal(load_distances(tmp_path / "b.csv").values, D.values)
    assert main(["export", str(path), "-o", str(tmp_path / "c.txt")]) == 1
    assert "Cannot tell the format" in capsys.readouterr().err
