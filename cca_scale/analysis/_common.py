"""Small helpers shared by the analysis modules: attribute look-up and input checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cca_scale.errors import CcaScaleError
from cca_scale.matrix import DistanceMatrix

__all__ = ["attribute_values", "check_distance_matrix", "named_matrices", "check_finite"]


def check_distance_matrix(D: Any, *, name: str = "D") -> DistanceMatrix:
    """Refuse anything that is not a :class:`DistanceMatrix`, saying what to pass instead."""
    if not isinstance(D, DistanceMatrix):
        raise CcaScaleError(
            f"{name} must be a cca_scale.DistanceMatrix (from cca_scale.compare or "
            f"cca_scale.load_distances). Got {type(D).__name__} instead."
        )
    return D


def check_finite(values: np.ndarray, *, what: str) -> None:
    """Refuse NaN/Inf, counting them (cheap sum check first, as scikit-learn's check_array)."""
    if np.isfinite(np.sum(values)):
        return
    n_nan = int(np.isnan(values).sum())
    n_inf = int(np.isinf(values).sum())
    raise CcaScaleError(
        f"{what} has {n_nan} NaN and {n_inf} infinite distance(s) out of {values.size}. A NaN is a "
        "pair the engine has not computed yet: finish the comparison (rerun cca-scale compare, "
        "which resumes) or keep only computed networks with .subset()."
    )


def attribute_values(D: DistanceMatrix, by: Any, *, side: str = "row",
                     name: str = "by") -> pd.Series:
    """The value of an attribute for each row (or column) network, as a Series indexed by label.

    ``by`` is the name of a column of ``D.row_info`` / ``D.col_info``, or the values themselves: a
    mapping or Series from network id to value, or a sequence in row (column) order.
    """
    labels = D.row_labels if side == "row" else D.col_labels
    info = D.row_info if side == "row" else D.col_info
    index = pd.Index(labels, name="network")
    if isinstance(by, str):
        if by not in info.columns:
            known = sorted(map(str, info.columns))
            raise CcaScaleError(
                f"The attribute {by!r} is not among the {side} networks' attributes; known: "
                f"{known if known else 'none (this matrix carries no network attributes)'}. Pass "
                "the values themselves (a mapping from network id to value) instead."
            )
        values = info[by].copy()
        values.index = index
        values.name = by
    elif isinstance(by, (Mapping, pd.Series)):
        series = pd.Series(by) if isinstance(by, Mapping) else by
        series = series.copy()
        series.index = series.index.map(str)
        missing = [label for label in labels if label not in series.index]
        if missing:
            raise CcaScaleError(
                f"The {name!r} values miss {len(missing)} network(s) of the matrix, e.g. "
                f"{missing[:5]}."
            )
        values = series.reindex(index)
    elif isinstance(by, (Sequence, np.ndarray)):
        arr = np.asarray(by)
        if arr.ndim != 1 or arr.shape[0] != len(labels):
            raise CcaScaleError(
                f"The {name!r} values must be one per {side} network ({len(labels)}); got an array "
                f"of shape {arr.shape}."
            )
        values = pd.Series(arr, index=index)
    else:
        raise CcaScaleError(
            f"The {name!r} parameter must be an attribute name (str), a mapping from network id "
            f"to value, or a sequence in {side} order. Got {type(by).__name__} instead."
        )
    if values.isna().any():
        missing = list(values.index[values.isna()])
        raise CcaScaleError(
            f"Network(s) {missing[:5]} have no value for {values.name or name!r}; give every "
            "network a value or leave those networks out with D.subset()."
        )
    return values


def named_matrices(distances: Any, *, names: Sequence[str] | None = None,
                   key: str = "layer") -> list[tuple[str, DistanceMatrix]]:
    """``[(name, D), ...]`` from one DistanceMatrix, a sequence of them or a mapping name -> D.

    Names come from ``names``, the mapping's keys, each matrix's ``metadata[key]``, or the position.
    """
    if isinstance(distances, DistanceMatrix):
        items: list[tuple[Any, DistanceMatrix]] = [(None, distances)]
    elif isinstance(distances, Mapping):
        items = [(str(k), v) for k, v in distances.items()]
    elif isinstance(distances, Sequence) and not isinstance(distances, str):
        items = [(None, v) for v in distances]
    else:
        raise CcaScaleError(
            "Expected a DistanceMatrix, a sequence of them (one per layer) or a mapping from "
            f"{key} name to DistanceMatrix. Got {type(distances).__name__} instead."
        )
    if not items:
        raise CcaScaleError("No distance matrices given.")
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(items):
            raise CcaScaleError(
                f"Got {len(names)} {key} name(s) for {len(items)} distance matrices."
            )
    out = []
    for i, (label, D) in enumerate(items):
        check_distance_matrix(D, name=f"distances[{i}]")
        if names is not None:
            label = names[i]
        elif label is None:
            label = str(D.metadata.get(key, i))
        out.append((label, D))
    seen = [n for n, _ in out]
    if len(set(seen)) != len(seen):
        raise CcaScaleError(
            f"The {key} names {seen} repeat; pass distinct names (a mapping, or names=...)."
        )
    return out
