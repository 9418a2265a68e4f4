"""Every export format gives back the exact float64 matrix and its labels."""

import csv
import json

import numpy as np
import pandas as pd
import pytest

import cca_scale
from cca_scale import DistanceMatrix
from cca_scale.analysis import EXPORT_FORMATS, export_distances, load_distances

SUFFIX = {"csv": ".csv", "npy": ".npy", "netcdf": ".nc", "parquet": ".parquet"}
ROWS = ["0", "007", "1e3", "NA", "a,b", "réseau"]  # ids that parsers like to reinterpret
COLS = ["007", "x y", "0", "z"]


def awkward(rng, rows=ROWS, cols=COLS):
    values = rng.uniform(0, 1, size=(len(rows), len(cols)))
    values[0, 0] = 1.0 / 3.0
    values[1, 1] = 5e-324  # smallest subnormal
    values[2, 2] = np.nextafter(1.0, 0.0)
    values[3, 0] = 1e300
    values[4, 3] = np.nan  # a pair not computed yet
    values[5, 1] = 0.1 + 0.2
    info_r = pd.DataFrame({"lr": np.linspace(0.001, 0.1, len(rows)),
                           "seed": np.arange(len(rows), dtype=np.int64),
                           "regime": ["true", "random"] * (len(rows) // 2)}, index=rows)
    info_c = pd.DataFrame({"lr": np.linspace(0.2, 0.3, len(cols))}, index=cols)
    meta = {"metric": "pwcca", "variant": "paper", "layer": "fc1", "complete": False,
            "params": {"keep": 0.99, "networks": None}, "timings": [1.5, 2.0]}
    return DistanceMatrix(values, rows, cols, meta, info_r, info_c,
                          {"rho_max": rng.uniform(size=(len(rows), len(cols)))})


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_round_trip_is_exact(rng, tmp_path, fmt):
    D = awkward(rng)
    path = export_distances(D, tmp_path / f"fc1{SUFFIX[fmt]}", format=fmt)
    assert path.stat().st_size > 0
    back = load_distances(path, format=fmt)
    assert back.values.dtype == np.float64
    assert np.array_equal(back.values, D.values, equal_nan=True)
    assert back.row_labels == D.row_labels and back.col_labels == D.col_labels
    assert load_distances(path).row_labels == D.row_labels  # format from the extension
    if fmt != "csv":
        assert back.metadata == D.metadata
        np.testing.assert_array_equal(back.row_info["lr"].to_numpy(), D.row_info["lr"].to_numpy())
        assert list(back.row_info["regime"]) == list(D.row_info["regime"])
        assert list(back.row_info["seed"]) == list(range(len(ROWS)))


def test_square_matrix_round_trips_through_every_format(rng, tmp_path):
    labels = [f"net{i}" for i in range(7)]
    x = rng.normal(size=(7, 7))
    D = DistanceMatrix(np.abs(x), labels, labels, {"metric": "cka"})
    for fmt in EXPORT_FORMATS:
        back = load_distances(export_distances(D, tmp_path / f"d{SUFFIX[fmt]}"))
        assert np.array_equal(back.values, D.values) and back.labels == D.labels, fmt


def test_csv_layout(rng, tmp_path):
    D = awkward(rng)
    path = export_distances(D, tmp_path / "d.csv")
    with open(path, newline="") as fh:
        lines = list(csv.reader(fh))
    assert lines[0] == ["row", *COLS]
    assert [line[0] for line in lines[1:]] == ROWS
    assert lines[5][4] == ""  # NaN is an empty field
    for i, line in enumerate(lines[1:]):
        for j, field in enumerate(line[1:]):
            if field:
                assert float(field) == D.values[i, j]  # %.17g: exact with plain float()


def test_npy_writes_the_matrix_and_a_labels_file(rng, tmp_path):
    D = awkward(rng)
    path = export_distances(D, tmp_path / "d.npy", format="npy")
    assert np.array_equal(np.load(path, allow_pickle=False), D.values, equal_nan=True)
    side = json.loads((tmp_path / "d.npy.labels.json").read_text())
    assert side["row_labels"] == ROWS and side["col_labels"] == COLS
    (tmp_path / "d.npy.labels.json").unlink()
    with pytest.raises(FileNotFoundError, match="labels.json"):
        load_distances(path)


def test_netcdf_layout(rng, tmp_path):
    import xarray as xr

    D = awkward(rng)
    path = export_distances(D, tmp_path / "d.nc")
    with xr.open_dataset(path) as ds:
        da = ds["distance"].load()
        assert da.dims == ("row", "column")
        assert list(da["row"].values) == ROWS and list(da["column"].values) == COLS
        assert da.attrs["metric"] == "pwcca" and da.attrs["layer"] == "fc1"
        assert json.loads(da.attrs["cca_scale_metadata"]) == D.metadata
        assert "diagnostic_rho_max" in ds
        assert np.array_equal(da.values, D.values, equal_nan=True)
    back = load_distances(path)
    assert np.array_equal(back.diagnostics["rho_max"], D.diagnostics["rho_max"])


def test_parquet_layout(rng, tmp_path):
    D = awkward(rng)
    frame = pd.read_parquet(export_distances(D, tmp_path / "d.parquet"))
    assert list(frame.index) == ROWS and list(frame.columns) == COLS
    assert frame.index.name == "row"
    assert np.array_equal(frame.to_numpy(), D.values, equal_nan=True)


def test_overwrite_and_format_errors(rng, tmp_path):
    D = awkward(rng)
    path = export_distances(D, tmp_path / "d.csv")
    with pytest.raises(cca_scale.StoreConflictError, match="already exists"):
        export_distances(D, path)
    D2 = DistanceMatrix(D.values * 0.5, D.row_labels, D.col_labels)
    export_distances(D2, path, overwrite=True)
    assert np.array_equal(load_distances(path).values, D2.values, equal_nan=True)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind
    with pytest.raises(cca_scale.CcaScaleError, match="'format' parameter"):
        export_distances(D, tmp_path / "d.x", format="hdf5")
    with pytest.raises(cca_scale.CcaScaleError, match="Cannot tell the format"):
        export_distances(D, tmp_path / "d.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_distances(tmp_path / "missing.parquet")
    with pytest.raises(cca_scale.CcaScaleError, match="DistanceMatrix"):
        export_distances(D.values, tmp_path / "e.csv")


def test_load_distances_reads_engine_outputs_and_exports(rng, tmp_path):
    labels = ["a", "b", "c"]
    D = DistanceMatrix(rng.uniform(size=(3, 3)), labels, labels, {"metric": "pwcca"})
    export_distances(D, tmp_path / "d.parquet")
    assert np.array_equal(load_distances(tmp_path / "d.parquet").values, D.values)
    cca_scale.save_distances(D, tmp_path / "d.zarr")
    back = load_distances(tmp_path / "d.zarr")
    assert np.array_equal(back.values, D.values) and back.labels == D.labels


def test_read_exported_is_a_deprecated_alias_for_one_release(rng, tmp_path):
    D = DistanceMatrix(rng.random((2, 2)), ["a", "b"], ["a", "b"])
    path = export_distances(D, tmp_path / "d.csv")
    with pytest.warns(DeprecationWarning, match="use cca_scale.load_distances"):
        back = cca_scale.read_exported(path)
    assert np.array_equal(back.values, cca_scale.load_distances(path).values)
