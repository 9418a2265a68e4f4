"""cca_scale: all-pairs projection weighted CCA between neural network representations.

Arrays are ``(n_datapoints, n_neurons)`` everywhere. Distances are ``1 - similarity``; PWCCA's is
directional: ``d(x, y)`` uses the weights of ``x``.
"""

from importlib.metadata import PackageNotFoundError, version as _version

from cca_scale.analysis import (
    ClusterResult,
    cluster,
    cluster_agreement,
    compare_metrics,
    convergence_curves,
    convergence_order,
    export_distances,
    group_correlation,
    group_statistics,
    read_exported,
    signal_noise_split,
    subsample_neurons,
    timestep_distances,
)
from cca_scale.capture import capture
from cca_scale.core import (
    Basis,
    CCAResult,
    PairResult,
    cca,
    cka_distance,
    compare as compare_bases,
    cosine_distance,
    euclidean_distance,
    flatten_conv,
    mean_cca_distance,
    prepare,
    pwcca_distance,
    svcca_distance,
)
from cca_scale.engine import Comparison, compare, load_distances, save_distances, submit
from cca_scale.errors import (
    ActivationError,
    CcaScaleError,
    InvalidNameError,
    LayerNotFoundError,
    NetworkNotFoundError,
    StoreConflictError,
    StoreError,
)
from cca_scale.launch import launch
from cca_scale.matrix import DistanceMatrix
from cca_scale.store import ActivationStore

try:
    __version__ = _version("cca-scale")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

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
