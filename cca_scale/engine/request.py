"""One comparison request, checked once at the boundary, read by ``submit``, ``compare`` and
``plan`` alike (no copy of the checks can drift).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cca_scale.core.registry import DEFAULT_EPSILON, check_epsilon, check_metric, get_metric
from cca_scale.core.validation import resolve_dtype
from cca_scale.errors import CcaScaleError

__all__ = ["DEFAULT_CHUNK_ROWS", "ComparisonRequest", "check_count", "check_layers",
           "check_metrics"]

#: Datapoints per streamed block in a tile task (the GEMM's inner dimension per step).
DEFAULT_CHUNK_ROWS = 4096
#: What an output records as ``rank_floor`` where the default tolerance drops directions within
#: rounding to a stored precision coarser than float64 (outputs from before that rule lack it).
RANK_FLOOR = "stored precision"
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


def _names(value: Any, name: str, what: str) -> tuple[str, ...] | None:
    """A list of names (a list/tuple, or a comma-separated string from the command line), or None
    when ``value`` is one plain name. Empty lists, empty names and duplicates are refused."""
    if isinstance(value, str):
        if "," not in value:
            return None
        items = [v.strip() for v in value.split(",")]
    elif not isinstance(value, bytes) and isinstance(value, (list, tuple)):
        items = list(value)
    else:
        return None
    if not items or not all(isinstance(v, str) and v for v in items):
        raise CcaScaleError(
            f"The '{name}' parameter must be a {what} name or a non-empty list of {what} names "
            f"(no empty names). Got {value!r} instead."
        )
    seen, dups = set(), []
    for v in items:
        if v in seen and v not in dups:
            dups.append(v)
        seen.add(v)
    if dups:
        raise CcaScaleError(
            f"The '{name}' parameter lists {what}(s) {dups} more than once. Got {value!r}; give "
            "each once."
        )
    return tuple(items)


def check_metrics(metric: Any) -> str | tuple[str, ...]:
    """``metric``: one registered name (returned as given), or a list of them (a tuple of the
    registry's names; a comma-separated string counts as a list). Unknown names list the known
    ones; empty lists and duplicates (aliases included) are refused."""
    many = _names(metric, "metric", "metric")
    if many is None:
        get_metric(metric)
        return metric
    names = tuple(get_metric(m).name for m in many)
    _names(list(names), "metric", "metric")  # an alias and its name are one metric
    return names


def check_layers(layer: Any) -> str | tuple[str, ...]:
    """``layer``: one layer name, ``'all'``, or a list of names (``'fc1,fc2'`` counts as one).
    A name holding ``'/'`` is refused: labels use it as the separator."""
    many = _names(layer, "layer", "layer")
    if many is None:
        if not isinstance(layer, str) or not layer:
            raise CcaScaleError(
                f"The 'layer' parameter must be a layer name, a list of layer names or 'all'. "
                f"Got {layer!r}.")
        return layer
    slashed = [v for v in many if "/" in v]
    if slashed or "all" in many:
        raise CcaScaleError(
            f"The 'layer' parameter lists {slashed or ['all']}: a layer name never contains '/', "
            "and 'all' stands alone (layer='all'). Got {!r}.".format(layer))
    return many


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

    layer: Any
    metric: Any = "pwcca"
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
        layer = check_layers(layer)
        options["metric"] = check_metrics(options.get("metric", "pwcca"))
        against_layer = options.get("against_layer")
        if against_layer is not None and (not isinstance(against_layer, str) or not against_layer):
            raise CcaScaleError(
                f"The 'against_layer' parameter must be None or a layer name. Got "
                f"{against_layer!r}."
            )
        if against_layer is not None and (isinstance(layer, tuple) or layer == "all"):
            raise CcaScaleError(
                "The 'against_layer' parameter needs one 'layer': a list of layers (or 'all') "
                "already compares every layer with every other one.")
        req = cls(layer=layer, **options)
        for name in req.metrics:
            check_metric(name, req.variant).check_options(keep=req.keep)
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
    def metrics(self) -> tuple[str, ...]:
        """The metrics computed, in the order asked (one for ``metric='pwcca'``)."""
        return self.metric if isinstance(self.metric, tuple) else (self.metric,)

    @property
    def many_metrics(self) -> bool:
        """``metric`` was a list: ``compare`` returns a dict of matrices."""
        return isinstance(self.metric, tuple)

    @property
    def many_layers(self) -> bool:
        """``layer`` was a list or ``'all'``: items are (network, layer), labelled ``net/layer``."""
        return isinstance(self.layer, tuple) or self.layer == "all"

    @property
    def needs_overdetermined(self) -> bool:
        """CCA-family metrics refuse ``n_datapoints <= n_neurons`` unless opted in."""
        return (any(get_metric(m).cca_family for m in self.metrics)
                and not self.allow_underdetermined)

    def metric_params(self, metric: str) -> dict:
        """What one metric's arrays record: its name and the options that change its result."""
        used = get_metric(metric).used_options(variant=self.variant, keep=self.keep,
                                               epsilon=self.epsilon)
        return {"metric": metric, **used}

    def output_params(self, n_datapoints: int, stored_dtypes=()) -> dict:
        """The parameters an output records, shared by its metrics; a rerun must match them to
        resume. Each metric's own (:meth:`metric_params`) are recorded with its arrays.

        ``stored_dtypes``: the dtypes the compared activations are stored in. Where one is
        coarser than float64 and ``rtol`` is the default, ``rank_floor`` records that directions
        within rounding to it are dropped (:func:`~cca_scale.core.basis.stored_noise`), so an
        output computed before that rule (which kept them) is not resumed under it.
        """
        params = {
            "layer": list(self.layer) if isinstance(self.layer, tuple) else self.layer,
            "against_layer": self.against_layer, "networks": self.networks,
            "against": self.against, "step": self.step, "against_step": self.against_step,
            "timestep": self.timestep, "dtype": self.dtype, "rtol": self.rtol,
            "n_datapoints": n_datapoints,
        }
        if self.rtol is None and any(np.dtype(d) != np.float64 for d in stored_dtypes):
            params["rank_floor"] = RANK_FLOOR
        return params
