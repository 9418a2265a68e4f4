"""Reduce convolutional activations ``(n, h, w, c)`` to 2-D ``(n_datapoints, n_neurons)``."""

from __future__ import annotations

from array_api_compat import array_namespace, is_cupy_array
import numpy as np

from cca_scale.errors import ActivationError

__all__ = ["flatten_conv", "CONV_MODES"]

CONV_MODES = ("mean", "positions")


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
    if mode not in CONV_MODES:
        raise ActivationError(
            f"The 'mode' parameter of flatten_conv must be one of {list(CONV_MODES)}. "
            f"Got {mode!r} instead."
        )
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
