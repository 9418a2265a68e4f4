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
    "InvalidQueryError",
    "DamagedStoreError",
    "UnsafeOutputError",
    "OutputBusyError",
    "StorageWriteError",
    "IllPosedWarning",
    "LaunchError",
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


class InvalidQueryError(StoreError):
    """A network query outside the allowed grammar. Queries are data, never code: only
    comparisons, ``and``/``or``/``not``, ``in`` lists, attribute names and literals."""


class DamagedStoreError(StoreError):
    """Stored data that cannot be read back as written: a missing or corrupt chunk, metadata
    that does not parse. Never read as zeros or skipped."""


class UnsafeOutputError(StoreError):
    """An output path that holds something cca_scale did not write there (an activation store,
    a non-Zarr folder, the current directory, a symlink, a device). It is never replaced."""


class OutputBusyError(StoreConflictError):
    """Another run holds the output's lock (two runs on one output would race)."""


class StorageWriteError(StoreError):
    """The file system refused a write (disk full, read-only, permission). Nothing half-written
    is left behind."""


class LaunchError(CcaScaleError):
    """A cluster that cannot be started or reached: unknown kind, bad options, missing package,
    unreachable or refusing scheduler."""


class IllPosedWarning(UserWarning):
    """CCA is ill-posed for this pair: ``rank_x + rank_y > n_datapoints - 1`` forces some
    canonical correlations to 1, and PWCCA then depends on an arbitrary basis inside that block.
    Use more datapoints (many times the neuron count) or fewer neurons."""
