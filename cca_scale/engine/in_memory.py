"""All pairs of a few in-memory layers, with the core one-pair math: the engine's small sibling
(no Dask, no store), for a handful of layers (timesteps of one RNN, a quick look). For a store,
:func:`cca_scale.compare` does the same at scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from cca_scale.core.registry import DEFAULT_EPSILON, check_metric
from cca_scale.errors import CcaScaleError
from cca_scale.matrix import DistanceMatrix

__all__ = ["in_memory_distances"]


def in_memory_distances(activations: Mapping[str, Any], *, metric: str = "pwcca",
                        variant: str = "paper", keep: int | float = 0.99,
                        epsilon: float | None = None, rtol: float | None = None,
                        dtype: Any = None, info: pd.DataFrame | None = None,
                        allow_underdetermined: bool = False) -> DistanceMatrix:
    """All-pairs distances between a few in-memory layers, with the core one-pair math.

    Parameters
    ----------
    activations : mapping of str to array of shape (n_datapoints, n_neurons)
        Layers by name (network id, ``'t=3'``, ...), all over the same datapoints; NumPy or CuPy.
    metric : {'pwcca', 'mean_cca', 'svcca', 'cka', 'cosine', 'euclidean'}
    variant : {'paper', 'svcca'}
        For PWCCA (see :func:`cca_scale.pwcca_distance`).
    keep : int or float
        For SVCCA (see :func:`cca_scale.svcca_distance`).
    epsilon : float, optional
        For ``variant='svcca'`` (default 1e-10).
    rtol, dtype, allow_underdetermined
        As in :func:`cca_scale.prepare`.
    info : pandas.DataFrame, optional
        Attributes of each layer, indexed by name; become ``row_info`` and ``col_info``.

    Returns
    -------
    DistanceMatrix
        Square, ``values[i, j] = d(layer i, layer j)`` (PWCCA with layer i's weights), with
        diagnostics ``rank_row``, ``rank_col``, ``rho_max``, ``rho_min``.

    Notes
    -----
    Each layer is factored once (:func:`cca_scale.prepare`) and each unordered pair compared once
    (:func:`cca_scale.compare_bases`, both directions from one SVD); the diagonal is computed too,
    not set, so it is 0 only up to rounding (about 1e-15). ``variant='svcca'`` calls
    :func:`cca_scale.pwcca_distance` for every ordered pair, the route that reproduces the
    original implementation bit for bit. For many networks use the engine, ``cca_scale.compare``.
    """
    from cca_scale.core import compare, prepare, pwcca_distance

    metric_info = check_metric(metric, variant)
    metric_info.check_options(keep=keep)
    if not isinstance(activations, Mapping) or not activations:
        raise CcaScaleError(
            "activations must be a non-empty mapping from name to (n_datapoints, n_neurons) "
            f"array. Got {type(activations).__name__} instead."
        )
    eps = DEFAULT_EPSILON if epsilon is None else float(epsilon)
    labels = [str(k) for k in activations]
    if len(set(labels)) != len(labels):
        raise CcaScaleError(f"The layer names {labels} repeat once converted to text.")
    arrays = list(activations.values())
    n = len(arrays)
    values = np.full((n, n), np.nan)
    diag = {k: np.full((n, n), np.nan) for k in ("rank_row", "rank_col", "rho_max", "rho_min")}
    if metric == "pwcca" and variant == "svcca":
        for i in range(n):
            for j in range(n):
                values[i, j] = pwcca_distance(arrays[i], arrays[j], variant="svcca", epsilon=eps,
                                              allow_underdetermined=allow_underdetermined)
        diag = {}
    else:
        bases = [prepare(a, rtol=rtol, dtype=dtype, name=label, network=label,
                         allow_underdetermined=allow_underdetermined or not metric_info.cca_family)
                 for a, label in zip(arrays, labels, strict=True)]
        for i in range(n):
            for j in range(i, n):
                res = compare(bases[i], bases[j], metric=metric, variant=variant, keep=keep,
                              epsilon=eps)
                values[i, j], values[j, i] = res.forward, res.backward
                for (a, b), rank_a, rank_b in (((i, j), res.rank_a, res.rank_b),
                                               ((j, i), res.rank_b, res.rank_a)):
                    diag["rank_row"][a, b], diag["rank_col"][a, b] = rank_a, rank_b
                    diag["rho_max"][a, b], diag["rho_min"][a, b] = res.rho_max, res.rho_min
    metadata: dict[str, Any] = {"metric": metric, "variant": variant,
                                "computed_by": "cca_scale.in_memory_distances"}
    used = metric_info.used_options(variant=variant, keep=keep, epsilon=eps)
    metadata.update({k: used[k] for k in ("keep", "epsilon") if used[k] is not None})
    return DistanceMatrix(values, labels, labels, metadata, info, info, diag)
