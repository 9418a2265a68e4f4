"""Checks at the boundary: every public entry point validates its arrays here, once.

Kernels further in (``compare``, the engine's tile tasks) trust their input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import is_cupy_array

from cca_scale.core.backend import array_namespace

from cca_scale.errors import ActivationError

__all__ = ["check_activations", "check_not_constant", "check_overdetermined", "check_pair",
           "constant_layer_error", "describe", "resolve_dtype"]


def describe(name: str, *, network: str | None = None, layer: str | None = None) -> str:
    """Say which array an error is about: ``network 'n1', layer 'fc2'`` or the argument name."""
    parts = []
    if network is not None:
        parts.append(f"network {network!r}")
    if layer is not None:
        parts.append(f"layer {layer!r}")
    return ", ".join(parts) if parts else f"argument {name!r}"


def resolve_dtype(dtype: Any) -> np.dtype:
    """The float dtype computations run in: float64 unless float32 is asked for."""
    resolved = np.dtype("float64" if dtype is None else dtype)
    if resolved not in (np.dtype("float32"), np.dtype("float64")):
        raise ActivationError(
            f"The 'dtype' parameter must be 'float32' or 'float64'. Got {dtype!r} instead."
        )
    return resolved


def check_activations(
    x: Any,
    *,
    name: str = "x",
    network: str | None = None,
    layer: str | None = None,
    dtype: Any = None,
    ensure_overdetermined: bool = True,
    allow_underdetermined: bool = False,
):
    """Validate one layer's activations and return them as a float array.

    Parameters
    ----------
    x : array of shape (n_datapoints, n_neurons)
        NumPy or CuPy array (anything ``np.asarray`` accepts is converted to NumPy).
    name, network, layer : str
        Used only to say which array an error is about.
    dtype : {None, 'float32', 'float64'}
        Float type of the returned array; None means float64.
    ensure_overdetermined : bool
        Refuse ``n_datapoints <= n_neurons`` (CCA is degenerate there: every canonical correlation
        tends to 1 whatever the data), unless ``allow_underdetermined`` is true.
    allow_underdetermined : bool
        The user's explicit opt-in to compare layers with at least as many neurons as datapoints.

    Returns
    -------
    array of shape (n_datapoints, n_neurons), float32 or float64, same array module as ``x``.

    Raises
    ------
    ActivationError
        Non-numeric or complex dtype, not 2-D, NaN or Inf, fewer than 2 datapoints, or
        ``n_datapoints <= n_neurons`` without opt-in. The message names the array.
    """
    who = describe(name, network=network, layer=layer)
    if not is_cupy_array(x):
        try:
            x = np.asarray(x)
        except (TypeError, ValueError) as exc:
            raise ActivationError(f"{who}: could not be read as a numeric array ({exc}).") from exc
    xp = array_namespace(x)
    kind = np.dtype(x.dtype).kind
    if kind not in "biuf":
        what = "complex" if kind == "c" else f"non-numeric ({x.dtype})"
        raise ActivationError(
            f"{who}: activations must be real numbers; got a {what} array. "
            "Convert it to float32 or float64."
        )
    if x.ndim != 2:
        hint = (
            " For convolutional layers of shape (n, h, w, c) use "
            "cca_scale.flatten_conv(acts, 'mean') (average over space, the paper's choice) or "
            "flatten_conv(acts, 'positions') (every position is a datapoint)."
            if x.ndim > 2
            else " Reshape a single neuron with x.reshape(-1, 1)."
        )
        raise ActivationError(
            f"{who}: expected a 2-D array of shape (n_datapoints, n_neurons), "
            f"got a {x.ndim}-D array of shape {tuple(x.shape)}.{hint}"
        )
    n_datapoints, n_neurons = (int(s) for s in x.shape)
    if n_datapoints < 2 or n_neurons < 1:
        raise ActivationError(
            f"{who}: need at least 2 datapoints and 1 neuron, got shape {tuple(x.shape)}."
        )
    x = xp.astype(x, resolve_dtype(dtype), copy=False)
    # Cheap test first (one reduction); the element-wise scan only runs to word the error.
    if not bool(xp.isfinite(xp.sum(x))):
        n_nan = int(xp.sum(xp.isnan(x)))
        n_inf = int(xp.sum(xp.isinf(x)))
        if n_nan or n_inf:
            found = " and ".join(
                f"{count} {label} value{'s' if count > 1 else ''}"
                for count, label in ((n_nan, "NaN"), (n_inf, "Inf"))
                if count
            )
            raise ActivationError(
                f"{who}: activations contain {found}. Remove or fix the datapoints or "
                "neurons that hold them before comparing."
            )
        raise ActivationError(
            f"{who}: activations overflow when summed (values near the float limit); rescale them."
        )
    if ensure_overdetermined:
        check_overdetermined(n_datapoints, n_neurons, who=who,
                             allow_underdetermined=allow_underdetermined)
    return x


def check_overdetermined(n_datapoints: int, n_neurons: int, *, who: str,
                         allow_underdetermined: bool = False) -> None:
    """Refuse ``n_datapoints <= n_neurons`` for CCA, unless the caller opted in.

    The one rule for the one-pair functions and the engine (which checks every selected layer's
    shape before any tile runs), worded the same in both; ``who`` names the array.
    """
    if n_datapoints <= n_neurons and not allow_underdetermined:
        raise ActivationError(
            f"{who}: {n_datapoints} datapoints for {n_neurons} neurons. With n_datapoints <= "
            "n_neurons CCA is degenerate: every canonical correlation tends to 1 whatever the "
            "data. Use more datapoints (the paper used many times the neuron count), fewer "
            "neurons, or pass allow_underdetermined=True (--allow-underdetermined) if you know "
            "what you are doing."
        )


def check_pair(x, y, *, names: tuple[str, str] = ("x", "y"), **kwargs):
    """Validate two layers compared over the same datapoints; returns both as float arrays.

    ``kwargs`` go to :func:`check_activations` for each. Mixing NumPy and CuPy is a TypeError.
    """
    x = check_activations(x, name=names[0], **kwargs)
    y = check_activations(y, name=names[1], **kwargs)
    array_namespace(x, y)  # raises TypeError on mixed array modules
    if x.shape[0] != y.shape[0]:
        raise ActivationError(
            f"{names[0]!r} and {names[1]!r} must have the same number of datapoints (rows, "
            f"in the same order): {names[0]!r} has {x.shape[0]} datapoints, {names[1]!r} has "
            f"{y.shape[0]}."
        )
    return x, y


def constant_layer_error(who: str) -> ActivationError:
    return ActivationError(
        f"{who}: the layer is constant (every neuron takes the same value on every datapoint), "
        "so it has no directions to correlate. Check that the right activations were recorded "
        "(a dead layer, or inputs that are all the same?)."
    )


def rounding_layer_error(who: str) -> ActivationError:
    return ActivationError(
        f"{who}: the layer varies only within the rounding of its stored precision (values "
        "far from 0 that differ by a few units in their last digit), so every direction it has "
        "could be rounding of a constant layer. Store it in float64, or subtract each neuron's "
        "mean before storing it in float32."
    )


def check_not_constant(x, *, name: str = "x", network: str | None = None,
                       layer: str | None = None) -> None:
    """Refuse a layer in which every neuron is constant. A constant neuron among others is fine."""
    xp = array_namespace(x)
    if not bool(xp.any(xp.max(x, axis=0) != xp.min(x, axis=0))):
        raise constant_layer_error(describe(name, network=network, layer=layer))
