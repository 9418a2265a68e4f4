"""Reduce convolutional activations ``(n, h, w, c)`` to 2-D ``(n_datapoints, n_neurons)``."""

from __future__ import annotations

import numpy as np
from array_api_compat import is_cupy_array

from cca_scale.core.backend import array_namespace
from cca_scale.errors import ActivationError

__all__ = ["CONV_MODES", "check_conv_mode", "flatten_conv"]

CONV_MODES = ("mean", "positions")


def check_conv_mode(mode, *, name: str = "mode", where: str | None = "flatten_conv",
                    allow_none: bool = False) -> None:
    """Refuse a convolutional reduction that is not one of :data:`CONV_MODES` (None too, unless
    ``allow_none``). ``name`` and ``where`` word the message: the parameter and its function."""
    if (mode is None and allow_none) or mode in CONV_MODES:
        return
    choices = ("None or " if allow_none else "") + f"one of {list(CONV_MODES)}"
    of = f" of {where}" if where else ""
    raise ActivationError(
        f"The '{name}' parameter{of} must be {choices}. Got {mode!r} instead."
    )


def flatten_conv(acts, mode: str):
    """Turn convolutional activations into a 2-D layer, by an explicit choice.

    Parameters
    ----------
    acts : array of shape (n, *spatial, channels)
        Channels last, e.g. ``(n, h, w, c)`` or ``(n, length, c)``. (PyTorch's ``(n, c, h, w)`` must
        be moved first: ``acts.permute(0, 2, 3, 1)``.)
    mode : {'mean', 'positions'}
        ``'mean'``: average over the spatial positions, giving ``(n, c)``, one neuron per channel
        (the paper's choice). ``'positions'``: every spatial position of every input is a datapoint,
        giving ``(n * h * w, c)``; compare only layers with the same spatial grid this way.

    Returns
    -------
    array of shape (n, c) or (n * prod(spatial), c), same array module as ``acts``.
    """
    check_conv_mode(mode)
    if not is_cupy_array(acts):
        acts = np.asarray(acts)
    if acts.ndim < 3:
        raise ActivationError(
            f"flatten_conv expects activations of shape (n, *spatial, channels) with at least 3 "
            f"dimensions; got shape {tuple(acts.shape)}. 2-D activations need no flattening."
        )
    xp = array_namespace(acts)
    if mode == "mean":
        return xp.mean(acts, axis=tuple(range(1, acts.ndim - 1)))
    return xp.reshape(acts, (-1, acts.shape[-1]))
