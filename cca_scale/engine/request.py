"""One comparison request, checked once at the boundary, read by ``submit``, ``compare`` and
``plan`` alike (no copy of the checks can drift).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any

from cca_scale.core.registry import DEFAULT_EPSILON, check_epsilon, check_metric, get_metric
from cca_scale.core.validation import resolve_dtype
from cca_scale.errors import CcaScaleError

__all__ = ["DEFAULT_CHUNK_ROWS", "ComparisonRequest", "check_count"]

#: Datapoints per streamed block in a tile task (the GEMM's inner dimension per step).
DEFAULT_CHUNK_ROWS = 4096
_STEP_WORDS = ("last", "final", "all")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_count(value: Any, name: str, *, allow_none: bool = True) -> int | None:
    """A positive integer option (``n_workers``, ``tile``, ``chunk_rows``), or None."""
    if value is None and allow_none:
        return None
    if _is_int(value) and value >= 1:
        return int(value)
    raise CcaScaleError(
        f"The '{name}' parameter must be a positive integer{' or None' if allow_none else ''}. "
        f"Got {value!r} instead."
    )


def _check_step(value: Any, name: str, *, same: bool = False) -> Any:
    words = _STEP_WORDS + (("same",) if same else ())
    if value is None or (isinstance(value, str) and value in words):
        return value
    if _is_int(value) and value >= 0:
        return int(value)
    raise CcaScaleError(
        f"The '{name}' parameter must be an integer >= 0, None or one of {list(words)}. "
        f"Got {value!r} instead."
    )


def _check_timestep(value: Any) -> Any:
    if value is None or value == "all" or _is_int(value):
        return value if not _is_int(value) else int(value)
    raise CcaScaleError(
        f"The 'timestep' parameter must be an integer, 'all' or None. Got {value!r} instead."
    )


def _check_selection(value: Any, name: str) -> Any:
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, bytes) and hasattr(value, "__iter__"):
        items = list(value)
        if all(isinstance(v, str) for v in items):
            return items
    raise CcaScaleError(
        f"The '{name}' parameter must be None, a list of network ids or a query string such "
        f"as \"lr == 0.01\". Got {value!r} instead."
    )


def _check_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    raise CcaScaleError(f"The '{name}' parameter must be True or False. Got {value!r} instead.")


def _check_rtol(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) \
            and 0.0 < value < 1.0:
        return float(value)
    raise CcaScaleError(
        f"The 'rtol' parameter must be None or a float in (0, 1). Got {value!r} instead."
    )


@dataclass(frozen=True)
class ComparisonRequest:
    """What to compare and how: every option of :func:`cca_scale.compare`, checked.

    Build it with :meth:`build`, which raises :class:`~cca_scale.errors.CcaScaleError` with the
    option's name for any value outside its domain; the engine trusts it afterwards.
    """

    layer: str
    metric: str = "pwcca"
    variant: str = "paper"
    networks: Any = None
    against: Any = None
    step: Any = None
    against_step: Any = "same"
    against_layer: str | None = None
    timestep: Any = None
    dtype: str = "float64"
    tile: int | None = None
    keep: Any = 0.99
    epsilon: float = DEFAULT_EPSILON
    rtol: float | None = None
    allow_underdetermined: bool = False
    overwrite: bool = False
    chunk_rows: int = DEFAULT_CHUNK_ROWS

    @classmethod
    def build(cls, *, layer: Any, **options: Any) -> "ComparisonRequest":
        """Check every option and return the request. Unknown option names are refused."""
        known = set(cls.__dataclass_fields__) - {"layer"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise CcaScaleError(
                f"Unknown option(s) {unknown} for a comparison; known: {sorted(known)}."
            )
        if not isinstance(layer, str) or not layer:
            raise CcaScaleError(f"The 'layer' parameter must be a layer name. Got {layer!r}.")
        against_layer = options.get("against_layer")
        if against_layer is not None and (not isinstance(against_layer, str) or not against_layer):
            raise CcaScaleError(
                f"The 'against_layer' parameter must be None or a layer name. Got "
                f"{against_layer!r}."
            )
        req = cls(layer=layer, **options)
        check_metric(req.metric, req.variant).check_options(keep=req.keep)
        check_epsilon(req.epsilon)  # whatever the metric: the request records a float
        return cls(
            **{**asdict(req),
               "networks": _check_selection(req.networks, "networks"),
               "against": _check_selection(req.against, "against"),
               "step": _check_step(req.step, "step"),
               "against_step": _check_step(req.against_step, "against_step", same=True),
               "timestep": _check_timestep(req.timestep),
               "dtype": resolve_dtype(req.dtype).name,
               "tile": check_count(req.tile, "tile"),
               "rtol": _check_rtol(req.rtol),
               "epsilon": float(req.epsilon),
               "allow_underdetermined": _check_bool(req.allow_underdetermined,
                                                    "allow_underdetermined"),
               "overwrite": _check_bool(req.overwrite, "overwrite"),
               "chunk_rows": check_count(req.chunk_rows, "chunk_rows", allow_none=False)})

    @property
    def needs_overdetermined(self) -> bool:
        """CCA-family metrics refuse ``n_datapoints <= n_neurons`` unless opted in."""
        return get_metric(self.metric).cca_family and not self.allow_underdetermined

    def output_params(self, n_datapoints: int) -> dict:
        """The parameters an output records; a rerun must match them to resume."""
        used = get_metric(self.metric).used_options(variant=self.variant, keep=self.keep,
                                                    epsilon=self.epsilon)
        return {
            "metric": self.metric, **used,
            "layer": self.layer, "against_layer": self.against_layer, "networks": self.networks,
            "against": self.against, "step": self.step, "against_step": self.against_step,
            "timestep": self.timestep, "dtype": self.dtype, "rtol": self.rtol,
            "n_datapoints": n_datapoints,
        }
