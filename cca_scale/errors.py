"""Exceptions raised by cca_scale.

Every error is a :class:`CcaScaleError`, itself a :class:`ValueError`, so callers that already
catch ``ValueError`` keep working. The command-line interface catches ``CcaScaleError`` and exits
non-zero with the message alone (the traceback only under ``--debug``).
"""

from __future__ import annotations

__all__ = [
    "CcaScaleError",
    "ActivationError",
    "StoreError",
    "StoreConflictError",
    "NotFoundError",
    "LayerNotFoundError",
    "NetworkNotFoundError",
    "InvalidNameError",
]


class CcaScaleError(ValueError):
    """Base class of every error cca_scale raises on purpose."""


class ActivationError(CcaScaleError):
    """Activations that cannot be compared: NaN/Inf, wrong shape or dtype, too few datapoints."""


class StoreError(CcaScaleError):
    """A problem with an activation store or a distance-matrix output."""


class StoreConflictError(StoreError):
    """A write that disagrees with what a store holds (datapoints, existing layer, parameters)."""


class InvalidNameError(StoreError):
    """A network, layer or attribute name that could escape the store or collide."""


class NotFoundError(CcaScaleError, KeyError):
    """Something asked for by name does not exist. Also a ``KeyError``."""

    def __str__(self) -> str:  # KeyError would quote the message; show it as written.
        return str(self.args[0]) if self.args else ""


class LayerNotFoundError(NotFoundError):
    """A layer name that no selected network has."""


class NetworkNotFoundError(NotFoundError):
    """A network id that the store does not hold."""
