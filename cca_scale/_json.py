"""JSON-safe copies of metadata: what goes into Zarr attributes and ``findings.json``."""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["info_to_records", "json_safe", "records_to_info"]


def json_safe(value):
    """Plain JSON types from numpy/pandas scalars; NaN becomes None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    pd = sys.modules.get("pandas")  # without pandas loaded, no value can be one of its missing
    if pd is not None and (value is pd.NA or value is pd.NaT):
        return None
    return str(value)


def info_to_records(info: pd.DataFrame) -> list[dict]:
    """Network attributes (one row per label) as JSON-safe records ``{"label": ..., **row}``."""
    return [json_safe({"label": label, **row}) for label, row in
            zip(info.index, info.to_dict(orient="records"))]


def records_to_info(records: list[dict]) -> pd.DataFrame:
    """The inverse of :func:`info_to_records`: a DataFrame indexed by label (index "network")."""
    import pandas as pd

    if not records:
        return pd.DataFrame(index=pd.Index([], name="network"))
    frame = pd.DataFrame.from_records(records).set_index("label")
    frame.index.name = "network"
    return frame.convert_dtypes(dtype_backend="numpy_nullable").infer_objects()
