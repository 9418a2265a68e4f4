"""Whole distance matrices in the comparison-output layout: :func:`load_distances` reads one
(checking the metadata it relies on), :func:`save_distances` writes one. The layout itself, and
the tile-by-tile writing of a running comparison, are in :mod:`cca_scale.engine.output`.
"""

from __future__ import annotations

import numpy as np

from cca_scale._json import info_to_records, records_to_info
from cca_scale.engine.output import (
    ADDED_IN_FORMAT_2,
    ATTR_KEY,
    DONE,
    FORMAT_VERSION,
    PAIR_ARRAYS,
    ComparisonOutput,
    _open_group,
    metric_prefix,
    output_metrics,
)
from cca_scale.errors import StoreConflictError, StoreError
from cca_scale.matrix import DistanceMatrix
from cca_scale.store.targets import check_output_target, creating

__all__ = ["load_distances", "save_distances"]


def read_matrix(group, path, metric: str | None = None) -> DistanceMatrix:
    """The matrix of one metric (default: the output's first) of an open output group, its
    metadata checked (DamagedStoreError if not)."""
    from cca_scale.errors import DamagedStoreError  # here: the read functions' own import

    where = f"{str(path).rstrip('/')}/zarr.json"
    meta = group.attrs[ATTR_KEY]
    if isinstance(meta, dict) and meta.get("kind") == "activation_store":
        raise StoreError(
            f"{str(path)!r} is an activation store, not a comparison output; run 'cca-scale "
            f"compare' on it first (cca-scale compare {path} --layer LAYER --out OUT.zarr, or "
            "cca_scale.compare(store, layer=...)) and read OUT."
        )

    def bad(what: str) -> DamagedStoreError:
        return DamagedStoreError(
            f"store metadata is damaged: {where}: {what}. Restore the output from its source, or "
            "delete it and rerun the comparison."
        )

    if not isinstance(meta, dict):
        raise bad(f"the attribute {ATTR_KEY!r} is a {type(meta).__name__}, not an object")
    meta = dict(meta)
    if meta.get("state") == "creating":
        raise StoreError(f"{path!r} was interrupted while being created; rerun the comparison.")
    for key in ("rows", "cols"):
        items = meta.get(key)
        if not isinstance(items, list):
            raise bad(f"the key {key!r} is missing" if items is None
                      else f"{key!r} is a {type(items).__name__}, not a list")
        if not all(isinstance(item, dict) and isinstance(item.get("label"), str)
                   for item in items):
            raise bad(f"every entry of {key!r} must be an object with a string 'label'")
    if not isinstance(meta.get("params", {}), dict):
        raise bad(f"'params' is a {type(meta['params']).__name__}, not an object")
    if meta.get("format", FORMAT_VERSION) >= 3 and not (
            isinstance(meta.get("metrics"), dict) and meta["metrics"]
            and all(isinstance(v, dict) for v in meta["metrics"].values())):
        raise bad("'metrics' must be a non-empty object of metric name -> parameters")
    held = output_metrics(meta)
    if metric is None:
        metric = held[0]
    elif metric not in held:
        raise StoreError(
            f"{str(path)!r} holds no {metric!r} distances; it holds {held}. Pass one of those "
            "(metric=..., --metric), or compute it: rerun the comparison with the metric added "
            "(only the new metric is computed)."
        )
    prefix = metric_prefix(meta, metric)
    rows, cols = meta.pop("rows"), meta.pop("cols")
    arrays = {}
    old_format = meta.get("format", FORMAT_VERSION) < 2
    for name in PAIR_ARRAYS:
        if old_format and name in ADDED_IN_FORMAT_2:
            continue
        try:
            arrays[name] = np.asarray(group[f"{prefix}{name}"][...])
        except KeyError:
            raise bad(f"its array {name!r} is missing") from None
        except Exception as exc:  # a chunk that does not decode
            raise DamagedStoreError(
                f"the comparison output is damaged: {str(path).rstrip('/')}/{prefix}{name} cannot "
                "be read "
                f"({type(exc).__name__}: {exc}). Delete it and rerun the comparison."
            ) from None
        if arrays[name].shape != (len(rows), len(cols)):
            raise bad(f"its array {name!r} has shape {arrays[name].shape}, but 'rows' and 'cols' "
                      f"list {len(rows)} x {len(cols)} items")
    diagnostics = {name: arrays[name] for name in arrays if name != "distance"}
    values = np.asarray(arrays["distance"], dtype=np.float64)
    flat = dict(meta.pop("params", {}))
    per_metric = meta.pop("metrics", None)
    if per_metric is not None:  # format 3: the metric's own parameters, and the others' names
        flat.update(per_metric[metric])
        flat["metrics"] = list(per_metric)
    flat.update({k: v for k, v in meta.items()})
    return DistanceMatrix(values, [r["label"] for r in rows], [c["label"] for c in cols], flat,
                          records_to_info(rows), records_to_info(cols), diagnostics)


def load_distances(path, *, metric: str | None = None) -> DistanceMatrix:
    """Read a comparison output (from :func:`cca_scale.compare` or :func:`save_distances`).

    Parameters
    ----------
    path : str or path-like
        The output group (a local path or an fsspec URL).
    metric : str, optional
        Which matrix of a multi-metric output (``compare(metric=[...])``). Default: the output's
        only metric, or the first one asked for when it holds several (``metadata["metrics"]``
        lists them). A metric the output does not hold raises StoreError naming those it holds.

    Returns
    -------
    DistanceMatrix
        Pairs not computed yet (an interrupted run) are NaN; see ``DistanceMatrix.complete``.

    Raises
    ------
    StoreError
        Nothing at ``path``, or something that is not a comparison output (an activation store,
        a Zarr array, another group).
    DamagedStoreError
        The output's metadata does not parse or lacks what it must hold.
    """
    import zarr

    from cca_scale.errors import DamagedStoreError  # here: the read functions' own import

    try:
        group = _open_group(path, "r")
    except StoreError:
        raise
    except (zarr.errors.ContainsArrayError, zarr.errors.NodeTypeValidationError):
        raise StoreError(f"{str(path)!r} is a Zarr array, not a comparison output.") from None
    except Exception as exc:  # the document does not parse: say how, with its path
        from cca_scale.store.documents import read_document
        from cca_scale.store.location import Location

        location = Location.from_user(path)
        read_document(location.zarr_store(read_only=True), location, "")
        raise DamagedStoreError(
            f"store metadata is damaged: {str(path).rstrip('/')}/zarr.json: Zarr cannot open it "
            f"({type(exc).__name__}: {exc}). Restore the output from its source, or delete it "
            "and rerun the comparison."
        ) from None
    if ATTR_KEY not in group.attrs:
        raise StoreError(f"{str(path)!r} is a Zarr group but not a cca_scale comparison output.")
    return read_matrix(group, str(path), metric=metric)


def save_distances(matrix: DistanceMatrix, path, *, overwrite: bool = False) -> None:
    """Write a DistanceMatrix in the comparison-output layout (read by :func:`load_distances`).

    ``overwrite`` replaces a comparison output; anything else at ``path`` is refused with
    UnsafeOutputError (:func:`check_output_target`), and a refused write raises
    StorageWriteError.
    """
    import zarr

    exists = check_output_target(path, kind="comparison") == "ours"
    if exists and not overwrite:
        raise StoreConflictError(f"{str(path)!r} exists; pass overwrite=True to replace it.")
    n_rows, n_cols = matrix.shape
    tile = max(1, max(n_rows, n_cols))
    rows = info_to_records(matrix.row_info)
    cols = info_to_records(matrix.col_info)
    meta = {k: v for k, v in matrix.metadata.items()
            if k not in ("rows", "cols", "metrics", "run_summary")}
    params = meta.pop("params", {})
    name = str(meta.get("metric") or "distance")  # the sub-group of its arrays (format 3)
    own = {k: meta.pop(k) for k in ("metric", "variant", "keep", "epsilon") if k in meta}
    with creating(path, kind="comparison"):  # a refused write leaves no half-written output
        group = zarr.open_group(store=str(path), mode="a", zarr_format=3)
        out = ComparisonOutput._create(group, path, params=params, metrics={name: own},
                                       rows=rows, cols=cols, square=matrix.is_square, tile=tile,
                                       extra_meta={k: v for k, v in meta.items() if k not in
                                                   ("format", "state", "tile", "square")})
        with zarr.config.set({"array.write_empty_chunks": True}):  # as tiles do
            group[f"{name}/distance"][...] = matrix.values
            for array in PAIR_ARRAYS:
                if array in matrix.diagnostics:
                    group[f"{name}/{array}"][...] = matrix.diagnostics[array]
        group[f"{name}/{DONE}"][...] = 1
        out.update_meta(complete=bool(matrix.complete))
