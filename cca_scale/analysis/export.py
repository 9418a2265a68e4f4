"""Export a distance matrix to CSV, NumPy, netCDF or Parquet at full float64 precision, and back.

=========  ==========================  =========================================================
format     file                        what it holds
=========  ==========================  =========================================================
csv        ``FILE`` (``.csv``)         Header row: ``row`` then the column network ids; one line
                                       per row network: its id, then the distances written with
                                       ``%.17g`` (17 significant digits: every float64 reads back
                                       exactly). NaN is an empty field. Matrix and ids only.
npy        ``FILE`` (``.npy``) and     The (n_rows, n_cols) float64 array (``numpy.save``, no
           ``FILE.labels.json``        pickle) and, beside it, a JSON file with ``row_labels``,
                                       ``col_labels``, ``metadata``, ``row_info``, ``col_info``.
netcdf     ``FILE`` (``.nc``)          ``DistanceMatrix.to_xarray()``: variable ``distance`` with
                                       dims ``(row, column)``, network ids as coordinates, network
                                       attributes as ``row_<attr>``/``column_<attr>``
                                       coordinates, metadata as attributes (plus all of it as
                                       JSON in ``cca_scale_metadata``), diagnostics as variables
                                       ``diagnostic_<name>``.
parquet    ``FILE`` (``.parquet``)     ``DistanceMatrix.to_pandas()``: row ids as the index
                                       (``row``), column ids as the columns, metadata and network
                                       attributes in the table's pandas ``attrs``.
=========  ==========================  =========================================================

An existing file is replaced (``overwrite=True``) only when it carries its format's cca_scale
signature (the ``row`` header, the labels file, ``cca_scale_metadata``; see
:mod:`cca_scale.store.targets`); anything else is refused and left untouched.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cca_scale.analysis._common import check_distance_matrix
from cca_scale.errors import CcaScaleError, NotFoundError, StoreConflictError, StoreError
from cca_scale.matrix import DistanceMatrix
from cca_scale.store.targets import (
    EXPORT_META_ATTR,
    NPY_SIDECAR,
    NPY_SIDECAR_FORMAT,
    check_output_target,
    storage_errors,
)

__all__ = ["EXPORT_FORMATS", "export_distances", "format_from_path", "load_distances",
           "read_exported"]

EXPORT_FORMATS = ("csv", "npy", "netcdf", "parquet")
_SUFFIXES = {".csv": "csv", ".npy": "npy", ".nc": "netcdf", ".nc4": "netcdf",
             ".netcdf": "netcdf", ".parquet": "parquet", ".pq": "parquet"}
_SIDECAR = NPY_SIDECAR
_META_ATTR = EXPORT_META_ATTR  # also the signature that marks a netCDF or Parquet file as ours


class ExportNotFoundError(NotFoundError, FileNotFoundError):
    """An exported file (or its labels file) that does not exist."""


def format_from_path(path: str | os.PathLike, format: str | None = None) -> str:
    """The export format: ``format`` checked, or guessed from the file's extension."""
    if format is not None:
        if format not in EXPORT_FORMATS:
            raise CcaScaleError(
                f"The 'format' parameter must be one of {list(EXPORT_FORMATS)}. Got {format!r} "
                "instead."
            )
        return format
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise CcaScaleError(
            f"Cannot tell the format of {str(path)!r} from its extension; pass format= one of "
            f"{list(EXPORT_FORMATS)} (extensions: {sorted(_SUFFIXES)})."
        )
    return _SUFFIXES[suffix]


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=_json_default, allow_nan=True))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def _info_to_json(info: pd.DataFrame) -> dict[str, Any]:
    out = {}
    for col in info.columns:
        series = info[col]
        values = [None if pd.isna(v) else (v.item() if isinstance(v, np.generic) else v)
                  for v in series.tolist()]
        out[str(col)] = {"dtype": str(series.dtype), "values": _jsonable(values)}
    return out


def _info_from_json(data: dict[str, Any] | None, labels: tuple[str, ...]) -> pd.DataFrame:
    index = pd.Index(labels, name="network")
    frame = pd.DataFrame(index=index)
    for col, spec in (data or {}).items():
        values = spec["values"]
        dtype = spec.get("dtype", "object")
        series = pd.Series(values, index=index, dtype=object)
        if dtype.startswith(("int", "uint", "float", "bool")) and series.notna().all():
            series = series.astype(dtype)
        elif dtype.startswith("float"):
            series = series.astype("float64")
        frame[col] = series
    return frame


def _check_target(path: Path, fmt: str, overwrite: bool, inputs) -> None:
    """Only a new file, or an export of this format that cca_scale wrote, may be written."""
    if check_output_target(path, kind=fmt, inputs=inputs) == "ours" and not overwrite:
        raise StoreConflictError(
            f"{str(path)!r} already exists; pass overwrite=True (--overwrite) to replace it."
        )
    if not path.parent.exists():
        raise ExportNotFoundError(f"The folder {str(path.parent)!r} does not exist.")


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def export_distances(D: DistanceMatrix, path: str | os.PathLike, *, format: str | None = None,
                     overwrite: bool = False, inputs=()) -> Path:
    """Write a distance matrix to a file at full float64 precision.

    Parameters
    ----------
    D : DistanceMatrix
    path : str or path-like
        The file to write.
    format : {'csv', 'npy', 'netcdf', 'parquet'}, optional
        Default: from the extension (``.csv``, ``.npy``, ``.nc``, ``.parquet``). See the module
        docstring for each layout; ``npy`` also writes ``path + '.labels.json'``.
    overwrite : bool
        Replace an existing export of this format written by cca_scale (refused by default).
        Never replaces anything else: a file without the format's signature (see
        :mod:`cca_scale.store.targets`), a folder, a symbolic link or a device is refused with
        UnsafeOutputError, with or without ``overwrite``.
    inputs : iterable of str or path-like
        Files or folders the matrix was read from; ``path`` may not be one of them or lie
        inside one.

    Returns
    -------
    pathlib.Path
        The file written. Each format reads back with :func:`load_distances` to the exact same
        values (``np.array_equal``, NaN included) and labels.

    Raises
    ------
    StoreConflictError
        An export of this format exists and ``overwrite`` is False.
    UnsafeOutputError
        ``path`` holds something cca_scale did not export, or overlaps ``inputs``; untouched.
    StorageWriteError
        The file system refused the write (disk full, read-only, permission); no temporary file
        is left and an existing export is untouched.
    CcaScaleError
        Unknown format; ``netcdf``/``parquet`` without xarray+netCDF4 / pyarrow (``pip install
        cca-scale[export]``).
    """
    D = check_distance_matrix(D)
    path = Path(path)
    fmt = format_from_path(path, format)
    sidecar = Path(str(path) + _SIDECAR)
    _check_target(path, fmt, overwrite, inputs)
    tmp, side_tmp = _tmp(path), _tmp(sidecar)
    try:
        # Every byte goes to temporary files first; renames (which need no space) come last.
        with storage_errors(path, kind=fmt):
            if fmt == "csv":
                _write_csv(D, tmp)
            elif fmt == "npy":
                with open(tmp, "wb") as fh:
                    np.save(fh, D.values, allow_pickle=False)
                side_tmp.write_text(json.dumps(_sidecar(D), indent=1, allow_nan=True))
                os.replace(side_tmp, sidecar)
            elif fmt == "netcdf":
                _write_netcdf(D, tmp)
            else:
                _write_parquet(D, tmp)
            os.replace(tmp, path)
    finally:
        for leftover in (tmp, side_tmp):
            if leftover.exists():
                leftover.unlink()
    return path


def _sidecar(D: DistanceMatrix) -> dict[str, Any]:
    return {"format": NPY_SIDECAR_FORMAT,
            "shape": list(D.shape), "row_labels": list(D.row_labels),
            "col_labels": list(D.col_labels), "metadata": _jsonable(D.metadata),
            "row_info": _info_to_json(D.row_info), "col_info": _info_to_json(D.col_info)}


def _write_csv(D: DistanceMatrix, path: Path) -> None:
    D.to_pandas().to_csv(path, float_format="%.17g", na_rep="", index_label="row")


def _need(module: str, fmt: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise CcaScaleError(
            f"format={fmt!r} needs {module}, which is not installed: pip install "
            "'cca-scale[export]'."
        ) from None


def _write_netcdf(D: DistanceMatrix, path: Path) -> None:
    _need("xarray", "netcdf")
    _need("netCDF4", "netcdf")
    da = D.to_xarray()
    attrs = {}
    for key, value in da.attrs.items():  # netCDF attributes: str, numbers, not bool or None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            value = json.dumps(_jsonable(value))
        attrs[str(key)] = value
    attrs[_META_ATTR] = json.dumps(_jsonable(D.metadata), allow_nan=True)
    da.attrs = attrs
    ds = da.to_dataset()
    for name, values in D.diagnostics.items():
        ds[f"diagnostic_{name}"] = (("row", "column"), np.asarray(values))
    ds.to_netcdf(path, engine="netcdf4")


def _write_parquet(D: DistanceMatrix, path: Path) -> None:
    _need("pyarrow", "parquet")
    frame = D.to_pandas()
    frame.attrs = {_META_ATTR: _jsonable(D.metadata), "row_info": _info_to_json(D.row_info),
                   "col_info": _info_to_json(D.col_info)}
    frame.to_parquet(path, engine="pyarrow")


def _read_exported(path: str | os.PathLike, *, format: str | None = None) -> DistanceMatrix:
    """Read a file written by :func:`export_distances` back into a DistanceMatrix.

    Parameters
    ----------
    path : str or path-like
    format : {'csv', 'npy', 'netcdf', 'parquet'}, optional
        Default: from the extension.

    Returns
    -------
    DistanceMatrix
        Values and labels exactly as written; metadata and network attributes as far as the
        format keeps them (CSV keeps neither).
    """
    path = Path(path)
    fmt = format_from_path(path, format)
    if not path.exists():
        raise ExportNotFoundError(f"{str(path)!r} does not exist.")
    try:
        if fmt == "csv":
            return _read_csv(path)
        if fmt == "npy":
            return _read_npy(path)
        if fmt == "netcdf":
            return _read_netcdf(path)
        return _read_parquet(path)
    except (OSError, ValueError, KeyError) as exc:
        if isinstance(exc, CcaScaleError):
            raise
        raise StoreError(f"Cannot read {str(path)!r} as {fmt}: {exc}") from exc


def _read_csv(path: Path) -> DistanceMatrix:
    with open(path, newline="") as fh:
        header = next(csv.reader(fh))
    if len(header) < 1:
        raise StoreError(f"{str(path)!r} has an empty header row.")
    # Everything as text, then NumPy's correctly rounded parser: exact whatever pandas' own
    # float parser does (its precision option changed across versions).
    frame = pd.read_csv(path, index_col=0, dtype=str, keep_default_na=False)
    if frame.shape[1] != len(header) - 1:
        raise StoreError(f"{str(path)!r}: the header has {len(header) - 1} columns but the rows "
                         f"have {frame.shape[1]}.")
    text = frame.to_numpy(dtype=str)
    values = np.where(text == "", "nan", text).astype(np.float64)
    return DistanceMatrix(values, [str(v) for v in frame.index], header[1:])


def _read_npy(path: Path) -> DistanceMatrix:
    sidecar = Path(str(path) + _SIDECAR)
    if not sidecar.exists():
        raise ExportNotFoundError(
            f"{str(sidecar)!r} (the labels of {str(path)!r}) does not exist; it is written beside "
            "the .npy by export_distances."
        )
    values = np.load(path, allow_pickle=False)
    side = json.loads(sidecar.read_text())
    rows, cols = tuple(side["row_labels"]), tuple(side["col_labels"])
    return DistanceMatrix(values, rows, cols, side.get("metadata", {}),
                          _info_from_json(side.get("row_info"), rows),
                          _info_from_json(side.get("col_info"), cols))


def _info_from_coords(ds, prefix: str, dim: str, labels: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame(index=pd.Index(labels, name="network"))
    for name, coord in ds.coords.items():
        if name != dim and str(name).startswith(prefix + "_") and coord.dims == (dim,):
            frame[str(name)[len(prefix) + 1:]] = coord.values
    return frame


def _read_netcdf(path: Path) -> DistanceMatrix:
    xr = _need("xarray", "netcdf")
    with xr.open_dataset(path, engine="netcdf4") as ds:
        ds = ds.load()
    if "distance" not in ds:
        raise StoreError(f"{str(path)!r} has no variable 'distance'.")
    da = ds["distance"]
    rows = tuple(str(v) for v in ds["row"].values)
    cols = tuple(str(v) for v in ds["column"].values)
    meta_text = da.attrs.get(_META_ATTR)
    metadata = json.loads(meta_text) if isinstance(meta_text, str) else \
        {k: v for k, v in da.attrs.items()}
    diagnostics = {str(name)[len("diagnostic_"):]: np.asarray(ds[name].values)
                   for name in ds.data_vars if str(name).startswith("diagnostic_")}
    return DistanceMatrix(np.asarray(da.transpose("row", "column").values, dtype=np.float64),
                          rows, cols, metadata, _info_from_coords(ds, "row", "row", rows),
                          _info_from_coords(ds, "column", "column", cols), diagnostics)


def _read_parquet(path: Path) -> DistanceMatrix:
    _need("pyarrow", "parquet")
    frame = pd.read_parquet(path, engine="pyarrow")
    rows = tuple(str(v) for v in frame.index)
    cols = tuple(str(v) for v in frame.columns)
    attrs = frame.attrs or {}
    return DistanceMatrix(frame.to_numpy(dtype=np.float64), rows, cols,
                          attrs.get(_META_ATTR, {}),
                          _info_from_json(attrs.get("row_info"), rows),
                          _info_from_json(attrs.get("col_info"), cols))


def load_distances(path: str | os.PathLike, *, metric: str | None = None,
                   format: str | None = None) -> DistanceMatrix:
    """Read a distance matrix: an engine output or a file written by :func:`export_distances`.

    The one reader of results (``cca_scale.load_distances``; the command line reads its ``OUT``
    arguments this way).

    Parameters
    ----------
    path : str or path-like
        An engine output (``fc1.zarr``, from :func:`cca_scale.compare` or
        :func:`cca_scale.save_distances`; a local path or an fsspec URL), or an exported file,
        told by its extension (``.csv``, ``.npy``, ``.nc``, ``.parquet``) or by ``format``.
    metric : str, optional
        The matrix of a multi-metric output (default: its only or first metric). An exported
        file holds one matrix; a ``metric`` it does not record is refused.
    format : {'csv', 'npy', 'netcdf', 'parquet'}, optional
        Read ``path`` as an export of this format, whatever its extension.

    Returns
    -------
    DistanceMatrix
        Values and labels exactly as written. Pairs an interrupted run has not computed yet are
        NaN (see ``DistanceMatrix.complete``).
    """
    if format is not None or Path(path).suffix.lower() in _SUFFIXES:
        matrix = _read_exported(path, format=format)
        held = matrix.metadata.get("metric")
        if metric is not None and held is not None and held != metric:
            raise CcaScaleError(f"{str(path)!r} holds {held!r} distances, not {metric!r}.")
        return matrix
    from cca_scale.engine.results import load_distances as read_output

    return read_output(path, metric=metric)


def read_exported(path: str | os.PathLike, *, format: str | None = None) -> DistanceMatrix:
    """Deprecated (one release): use :func:`load_distances`, which reads exports and outputs."""
    import warnings

    warnings.warn("cca_scale.read_exported is deprecated and will be removed in the next "
                  "release; use cca_scale.load_distances(path, format=...), which reads exported "
                  "files and engine outputs alike.", DeprecationWarning, stacklevel=2)
    return _read_exported(path, format=format)
