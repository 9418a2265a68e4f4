"""PWCCA against the paper's baselines (cosine, Euclidean; Figs A5, A8) and linear CKA: the
default metric list and one tidy table of several metrics' matrices. Running them is
:func:`cca_scale.compare_metrics` (in :mod:`cca_scale.workflows`, which drives the engine).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from cca_scale.analysis._common import check_distance_matrix
from cca_scale.core.registry import METRICS
from cca_scale.errors import CcaScaleError
from cca_scale.matrix import DistanceMatrix

__all__ = ["BASELINE_METRICS", "METRIC_COLUMNS", "metrics_table"]

#: The default metrics of :func:`cca_scale.compare_metrics`: PWCCA and the baselines (every
#: metric of the registry outside the CCA family, shape metrics such as procrustes excepted: ask
#: for them).
BASELINE_METRICS = ("pwcca",) + tuple(name for name, m in METRICS.items()
                                      if not m.cca_family and name != "procrustes")
#: Columns of :func:`metrics_table`, in order.
METRIC_COLUMNS = ("metric", "row", "column", "distance")


def metrics_table(distances: Mapping[str, DistanceMatrix], *,
                  include_self: bool = False) -> pd.DataFrame:
    """One tidy table of several metrics' matrices over the same networks.

    Parameters
    ----------
    distances : mapping of str to DistanceMatrix
        Metric name to its matrix.
    include_self : bool
        Keep the pairs of a network with itself (dropped by default).

    Returns
    -------
    pandas.DataFrame
        Columns ``metric, row, column, distance``: one line per metric and directed pair, in the
        matrices' row-major order. Join ``D.row_info`` on ``row`` for attributes.
    """
    if not isinstance(distances, Mapping) or not distances:
        raise CcaScaleError("distances must be a non-empty mapping from metric name to "
                            "DistanceMatrix.")
    frames = []
    for metric, D in distances.items():
        check_distance_matrix(D, name=f"distances[{metric!r}]")
        rows = np.repeat(np.asarray(D.row_labels, dtype=object), len(D.col_labels))
        cols = np.tile(np.asarray(D.col_labels, dtype=object), len(D.row_labels))
        frame = pd.DataFrame({"metric": str(metric), "row": rows, "column": cols,
                              "distance": D.values.ravel()})
        if not include_self:
            frame = frame[frame["row"] != frame["column"]]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)[list(METRIC_COLUMNS)]
