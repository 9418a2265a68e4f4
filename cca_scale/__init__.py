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
from typing import TYPE_CHECKING

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
    "compare_metrics": ("cca_scale.analysis", "compare_metrics"),
    "Comparison": ("cca_scale.engine", "Comparison"),
    "convergence_curves": ("cca_scale.analysis", "convergence_curves"),
    "convergence_order": ("cca_scale.analysis", "convergence_order"),
    "cosine_distance": ("cca_scale.core", "cosine_distance"),
    "DistanceMatrix": ("cca_scale.matrix", "DistanceMatrix"),
    "euclidean_distance": ("cca_scale.core", "euclidean_distance"),
    "export_distances": ("cca_scale.analysis", "export_distances"),
    "flatten_conv": ("cca_scale.core", "flatten_conv"),
    "group_correlation": ("cca_scale.analysis", "group_correlation"),
    "group_statistics": ("cca_scale.analysis", "group_statistics"),
    "InvalidNameError": ("cca_scale.errors", "InvalidNameError"),
    "launch": ("cca_scale.deploy", "launch"),
    "LayerNotFoundError": ("cca_scale.errors", "LayerNotFoundError"),
    "load_distances": ("cca_scale.engine", "load_distances"),
    "mean_cca_distance": ("cca_scale.core", "mean_cca_distance"),
    "NetworkNotFoundError": ("cca_scale.errors", "NetworkNotFoundError"),
    "PairResult": ("cca_scale.core", "PairResult"),
    "prepare": ("cca_scale.core", "prepare"),
    "pwcca_distance": ("cca_scale.core", "pwcca_distance"),
    "read_exported": ("cca_scale.analysis", "read_exported"),
    "save_distances": ("cca_scale.engine", "save_distances"),
    "signal_noise_split": ("cca_scale.analysis", "signal_noise_split"),
    "StoreConflictError": ("cca_scale.errors", "StoreConflictError"),
    "StoreError": ("cca_scale.errors", "StoreError"),
    "submit": ("cca_scale.engine", "submit"),
    "subsample_neurons": ("cca_scale.analysis", "subsample_neurons"),
    "svcca_distance": ("cca_scale.core", "svcca_distance"),
    "timestep_distances": ("cca_scale.analysis", "timestep_distances"),
}

__all__ = [
    "ActivationError",
    "ActivationStore",
    "Basis",
    "capture",
    "cca",
    "CCAResult",
    "CcaScaleError",
    "cka_distance",
    "cluster",
    "cluster_agreement",
    "ClusterResult",
    "compare",
    "compare_bases",
    "compare_metrics",
    "Comparison",
    "convergence_curves",
    "convergence_order",
    "cosine_distance",
    "DistanceMatrix",
    "euclidean_distance",
    "export_distances",
    "flatten_conv",
    "group_correlation",
    "group_statistics",
    "InvalidNameError",
    "launch",
    "LayerNotFoundError",
    "load_distances",
    "mean_cca_distance",
    "NetworkNotFoundError",
    "PairResult",
    "prepare",
    "pwcca_distance",
    "read_exported",
    "save_distances",
    "signal_noise_split",
    "StoreConflictError",
    "StoreError",
    "submit",
    "subsample_neurons",
    "svcca_distance",
    "timestep_distances",
    "__version__",
]


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


if TYPE_CHECKING:  # static analysers see the real imports
    from cca_scale.errors import ActivationError
    from cca_scale.store import ActivationStore
    from cca_scale.core import Basis
    from cca_scale.core import CCAResult
    from cca_scale.errors import CcaScaleError
    from cca_scale.analysis import ClusterResult
    from cca_scale.engine import Comparison
    from cca_scale.matrix import DistanceMatrix
    from cca_scale.errors import InvalidNameError
    from cca_scale.errors import LayerNotFoundError
    from cca_scale.errors import NetworkNotFoundError
    from cca_scale.core import PairResult
    from cca_scale.errors import StoreConflictError
    from cca_scale.errors import StoreError
    from cca_scale.store.capture import capture
    from cca_scale.core import cca
    from cca_scale.core import cka_distance
    from cca_scale.analysis import cluster
    from cca_scale.analysis import cluster_agreement
    from cca_scale.engine import compare
    from cca_scale.core import compare as compare_bases
    from cca_scale.analysis import compare_metrics
    from cca_scale.analysis import convergence_curves
    from cca_scale.analysis import convergence_order
    from cca_scale.core import cosine_distance
    from cca_scale.core import euclidean_distance
    from cca_scale.analysis import export_distances
    from cca_scale.core import flatten_conv
    from cca_scale.analysis import group_correlation
    from cca_scale.analysis import group_statistics
    from cca_scale.deploy import launch
    from cca_scale.engine import load_distances
    from cca_scale.core import mean_cca_distance
    from cca_scale.core import prepare
    from cca_scale.core import pwcca_distance
    from cca_scale.analysis import read_exported
    from cca_scale.engine import save_distances
    from cca_scale.analysis import signal_noise_split
    from cca_scale.engine import submit
    from cca_scale.analysis import subsample_neurons
    from cca_scale.core import svcca_distance
    from cca_scale.analysis import timestep_distances
