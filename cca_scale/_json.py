"""JSON-safe copies of metadata: what goes into Zarr attributes and ``findings.json``."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["json_safe"]


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
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)
