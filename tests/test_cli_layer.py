"""``--layer`` of ``cca-scale cluster``, ``groups`` and ``export``: one layer of a multi-layer
output, refused on a matrix without layers, documented in ``--help``."""

import numpy as np
import pytest

import cca_scale
from cca_scale.analysis import load_distances
from cca_scale.cli.main import build_parser, main
from test_matrix_layers import NETWORKS, multi_layer


@pytest.fixture
def multi(tmp_path):
    D, _ = multi_layer()
    path = tmp_path / "all.zarr"
    cca_scale.save_distances(D, path)
    return D, path


@pytest.mark.parametrize("command", ["cluster", "groups", "export"])
def test_help_says_what_layer_does(command):
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    text = " ".join(sub.format_help().split())
    assert "--layer L" in text and "multi-layer output" in text
    assert "refused on a matrix without layers" in text


def test_export_one_layer(multi, tmp_path, capsys):
    D, path = multi
    csv = tmp_path / "fc1.csv"
    assert main(["export", str(path), "--layer", "fc1", "-o", str(csv)]) == 0
    assert "4 x 4" in capsys.readouterr().out
    back = load_distances(csv)
    assert back.row_labels == NETWORKS
    np.testing.assert_array_equal(back.values, D.for_layer("fc1").values)


def test_cluster_and_groups_one_layer(multi, capsys):
    D, path = multi
    assert main(["cluster", str(path), "--layer", "fc2", "-k", "2", "--by", "lr"]) == 0
    text = capsys.readouterr().out
    assert "4 networks" in text and "of layer fc2" in text
    assert main(["groups", str(path), "--layer", "conv1", "--by", "lr"]) == 0
    text = capsys.readouterr().out
    want = cca_scale.group_statistics({"conv1": D.for_layer("conv1")}, "lr")
    assert f"{want['mean'].iloc[0]:.4f}" in text


@pytest.mark.parametrize("command", [["cluster"], ["groups", "--by", "lr"],
                                     ["export", "-o", "x.csv"]])
def test_refused_without_layers_or_on_an_unknown_layer(multi, tmp_path, capsys, command):
    _, path = multi
    plain = tmp_path / "plain.zarr"
    cca_scale.save_distances(cca_scale.DistanceMatrix(np.zeros((2, 2)), ["a", "b"], ["a", "b"]),
                             plain)
    name, *rest = command
    rest = [str(tmp_path / r) if r.endswith(".csv") else r for r in rest]
    assert main([name, str(plain), "--layer", "fc1", *rest]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"cca-scale {name}: error:") and "not a multi-layer matrix" in err
    assert main([name, str(path), "--layer", "fc9", *rest]) == 1
    assert "Layer 'fc9' is not among" in capsys.readouterr().err
