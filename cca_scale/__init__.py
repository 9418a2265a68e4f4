"""cca_scale: all-pairs projection weighted CCA between neural network representations.

Arrays are ``(n_datapoints, n_neurons)`` everywhere. Distances are ``1 - similarity``; PWCCA's is
directional: ``d(x, y)`` uses the weights of ``x``.

Public names are imported on first use (as SciPy and scikit-image do, SPEC 1), so that
``import cca_scale``, ``cca-scale --help`` and each Dask worker's first task load only what they
use. ``__all__`` is the public API; anything not in it is private.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("cca-scale")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

#: public name -> (module, attribute)
_LAZY = {
    "ActivationError": ("cca_scale.errors", "ActivationError"),
    "ActivationStore": ("cca_scale.store", "ActivationStore"),
    "Basis": ("cca_scale.core", "Basis"),
    "capture": ("cca_scale.store.capture", "capture"),
    "cca": ("cca_scale.core", "cca"),
    "CCAResult": ("cca_scale.core", "CCAResult"),
    "CcaScaleError": ("cca_scale.errors", "CcaScaleError"),
    "cka_distance": ("cca_scale.core", "cka_distance"),
    "cluster": ("cca_scale.analysis", "cluster"),
    "cluster_agreement": ("cca_scale.analysis", "cluster_agreement"),
    "ClusterResult": ("cca_scale.analysis", "ClusterResult"),
    "compare": ("cca_scale.engine", "compare"),
    "compare_bases": ("cca_scale.core", "compare"),
    "compare_metrics": ("cca_scale.workflows", "compare_metrics"),
    "Comparison": ("cca_scale.engine", "Comparison"),
    "convergence_curves": ("cca_scale.analysis", "convergence_curves"),
    "convergence_order": ("cca_scale.analysis", "convergence_order"),
    "cosine_distance": ("cca_scale.core", "cosine_distance"),
    "DamagedStoreError": ("cca_scale.errors", "DamagedStoreError"),
    "DistanceMatrix": ("cca_scale.matrix", "DistanceMatrix"),
    "euclidean_distance": ("cca_scale.core", "euclidean_distance"),
    "export_distances": ("cca_scale.analysis", "export_distances"),
    "flatten_conv": ("cca_scale.core", "flatten_conv"),
    "group_correlation": ("cca_scale.analysis", "group_correlation"),
    "group_statistics": ("cca_scale.analysis", "group_statistics"),
    "IllPosedWarning": ("cca_scale.errors", "IllPosedWarning"),
    "in_memory_distances": ("cca_scale.engine.in_memory", "in_memory_distances"),
    "InvalidNameError": ("cca_scale.errors", "InvalidNameError"),
    "InvalidQueryError": ("cca_scale.errors", "InvalidQueryError"),
    "launch": ("cca_scale.runtime", "launch"),
    "LayerNotFoundError": ("cca_scale.errors", "LayerNotFoundError"),
    "load_distances": ("cca_scale.analysis.export", "load_distances"),
    "mean_cca_distance": ("cca_scale.core", "mean_cca_distance"),
    "NetworkNotFoundError": ("cca_scale.errors", "NetworkNotFoundError"),
    "OutputBusyError": ("cca_scale.errors", "OutputBusyError"),
    "PairResult": ("cca_scale.core", "PairResult"),
    "prepare": ("cca_scale.core", "prepare"),
    "procrustes_distance": ("cca_scale.core", "procrustes_distance"),
    "pwcca_distance": ("cca_scale.core", "pwcca_distance"),
    "read_exported": ("cca_scale.analysis", "read_exported"),
    "save_distances": ("cca_scale.engine", "save_distances"),
    "signal_noise_split": ("cca_scale.analysis", "signal_noise_split"),
    "StorageWriteError": ("cca_scale.errors", "StorageWriteError"),
    "StoreConflictError": ("cca_scale.errors", "StoreConflictError"),
    "StoreError": ("cca_scale.errors", "StoreError"),
    "submit": ("cca_scale.engine", "submit"),
    "subsample_neurons": ("cca_scale.analysis", "subsample_neurons"),
    "svcca_distance": ("cca_scale.core", "svcca_distance"),
    "timestep_distances": ("cca_scale.analysis", "timestep_distances"),
    "training_dynamics": ("cca_scale.workflows", "training_dynamics"),
    "UnsafeOutputError": ("cca_scale.errors", "UnsafeOutputError"),
}

__all__ = [*_LAZY, "__version__"]  # the lazy table is the one list of public names


def __getattr__(name: str):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'cca_scale' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


