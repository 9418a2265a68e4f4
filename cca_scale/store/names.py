"""Checks on everything that becomes a path or a metadata entry in an activation store.

Network and layer names become Zarr node names (directories on disk, key prefixes in object
stores), so they are held to a small portable form; attribute names become DataFrame columns
that ``store.networks("lr == 0.01")`` queries, so they are Python identifiers. The values a
store records about itself (datapoint count, dataset fingerprint, chunk size) are checked here too.
"""

from __future__ import annotations

import keyword
import math
import numbers
import re
from typing import Any

import numpy as np

from cca_scale.errors import InvalidNameError, StoreError

__all__ = [
    "ATTRIBUTE_FORM",
    "NAME_FORM",
    "check_attrs",
    "check_chunk_rows",
    "check_fingerprint",
    "check_n_datapoints",
    "check_name",
    "check_step",
    "check_timesteps_index",
    "listed",
]

MAX_NAME_LENGTH = 200
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
NAME_FORM = (
    f"1 to {MAX_NAME_LENGTH} characters from letters A-Z a-z, digits, '_', '-' and '.', "
    "starting with a letter or digit (e.g. 'lr0.01_seed3', 'layer1.0.conv1')"
)
ATTRIBUTE_FORM = (
    "a Python identifier: letters, digits and '_', not starting with a digit, not a Python "
    "keyword and not 'network' (so that it can be used in queries such as \"lr == 0.01\")"
)
#: Names the attributes table uses itself.
RESERVED_ATTRIBUTES = frozenset({"network"})
#: Names Zarr keeps for itself, compared case-insensitively (on macOS and Windows file systems a
#: network named "ZARR.JSON" is the file networks/zarr.json): the v3 document and the v2
#: documents, which Zarr-Python still looks for beside a node's children, and "c", the prefix
#: under which an array keeps its chunks. In this layout no network or layer lives inside an
#: array, so "c" would not collide today; it is refused anyway, so that no node can ever be read
#: as chunks by Zarr tools or a later layout. Names that only look like array names ("acts",
#: "step_<N>") are fine: arrays live inside layers, one level below any layer name.
RESERVED_NAMES = frozenset({"zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata", "c"})


def listed(names: list[str], limit: int) -> str:
    """Names as a message lists them: the first ``limit``, then how many more there are."""
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _shown(name: Any) -> str:
    return repr(name) if isinstance(name, str) else f"{name!r} (a {type(name).__name__})"


def check_name(name: Any, *, kind: str) -> str:
    """Return ``name`` if it is a valid network or layer name, else raise InvalidNameError.

    ``kind`` ("network" or "layer") only words the message. Refused: non-strings, the empty
    string, ``.`` and ``..``, anything with ``/`` or ``\\``, control characters, spaces, any
    character outside ``NAME_FORM``, and the names Zarr reserves (``RESERVED_NAMES``, in any case).
    """
    if (isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and _NAME_RE.fullmatch(name)
            and name.casefold() not in RESERVED_NAMES):
        return name
    if not isinstance(name, str):
        why = "it is not a string"
    elif name.casefold() in RESERVED_NAMES:
        why = ("Zarr reserves it, in any letter case, for its metadata documents or its chunk "
               "keys: the node would collide with them")
    elif not name:
        why = "it is empty"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        why = "it contains control characters"
    elif "/" in name or "\\" in name:
        why = "it contains a path separator"
    elif set(name) == {"."}:
        why = "it would refer to a directory outside its place in the store"
    elif len(name) > MAX_NAME_LENGTH:
        why = f"it has {len(name)} characters"
    else:
        why = "it contains characters outside the allowed form"
    raise InvalidNameError(f"invalid name for a {kind}: {_shown(name)} ({why}). "
                           f"A {kind} name must be {NAME_FORM}.")


def _optional_int(value: Any, parameter: str, *, minimum: int | None, wanted: str) -> int | None:
    """None, or ``value`` as an int if it is an integer >= ``minimum`` (numpy integers accepted,
    bools refused); else StoreError saying the parameter must be None or ``wanted``."""
    if value is None:
        return None
    if (isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
            and (minimum is None or value >= minimum)):
        return int(value)
    raise StoreError(
        f"The {parameter!r} parameter must be None or {wanted}. Got {value!r} instead."
    )


def check_step(step: Any) -> int | None:
    """A training step: None or an integer >= 0 (numpy integers accepted, bools refused)."""
    return _optional_int(step, "step", minimum=0, wanted="an integer >= 0")


def check_timesteps_index(timestep: Any) -> int | None:
    return _optional_int(timestep, "timestep", minimum=None, wanted="an integer")


def check_n_datapoints(n: Any) -> int | None:
    """A store's datapoint count: None (not fixed yet) or an integer >= 2."""
    return _optional_int(n, "n_datapoints", minimum=2, wanted="an integer >= 2")


def check_chunk_rows(chunk_rows: Any) -> int | None:
    """Datapoints per stored chunk: None (the default size) or a positive integer."""
    return _optional_int(chunk_rows, "chunk_rows", minimum=1, wanted="a positive integer")


def check_fingerprint(fingerprint: Any) -> str | None:
    """The user's dataset fingerprint: None or a non-empty printable string."""
    if fingerprint is None:
        return None
    if isinstance(fingerprint, str) and fingerprint and fingerprint.isprintable():
        return fingerprint
    raise StoreError(
        "The 'fingerprint' parameter must be None or a non-empty printable string identifying "
        f"the dataset (e.g. 'cifar10-test-10k'). Got {fingerprint!r} instead."
    )


def _attr_value(key: str, value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise StoreError(
                f"attribute {key!r} is {value!r}; attribute values must be finite. Leave the "
                "attribute out (or pass None to remove it) when the value is unknown."
            )
        return value
    if isinstance(value, (list, tuple)):
        return [_attr_value(key, v) for v in value]
    raise StoreError(
        f"attribute {key!r} must be a number, a string, a bool, None or a list of these; got "
        f"{type(value).__name__} {value!r}."
    )


def check_attrs(attrs: Any) -> dict[str, Any]:
    """Validate network attributes and return them as JSON-ready Python values.

    Keys must follow ``ATTRIBUTE_FORM``; values are numbers, strings, bools, None (which removes
    the attribute when merged) or lists of these. NumPy scalars are converted.
    """
    if attrs is None:
        return {}
    if not isinstance(attrs, dict):
        raise StoreError(
            f"The 'attrs' parameter must be a dict or None. Got {type(attrs).__name__}."
        )
    out = {}
    for key, value in attrs.items():
        if (not isinstance(key, str) or not key.isascii() or not key.isidentifier()
                or keyword.iskeyword(key) or key in RESERVED_ATTRIBUTES):
            raise InvalidNameError(
                f"invalid name for an attribute: {_shown(key)}. An attribute name must be "
                f"{ATTRIBUTE_FORM}."
            )
        out[key] = _attr_value(key, value)
    return out
