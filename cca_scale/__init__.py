"""cca_scale: all-pairs projection weighted CCA between neural network representations.

Arrays are ``(n_datapoints, n_neurons)`` everywhere. Distances are ``1 - similarity``; PWCCA's is
directional: ``d(x, y)`` uses the weights of ``x``.
"""

from importlib.metadata import PackageNotFoundError, version as _version

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

from cca_scale.matrix import DistanceMatrix

try:
    __version__ = _version("cca-scale")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "ActivationError",
    "Basis",
    "cca",
    "CCAResult",
    "CcaScaleError",
    "cka_distance",
    "compare",
    "compare_bases",
    "Comparison",
    "cosine_distance",
    "DistanceMatrix",
    "euclidean_distance",
    "flatten_conv",
    "InvalidNameError",
    "LayerNotFoundError",
    "load_distances",
    "mean_cca_distance",
    "NetworkNotFoundError",
    "PairResult",
    "prepare",
    "pwcca_distance",
    "save_distances",
    "StoreConflictError",
    "StoreError",
    "submit",
    "svcca_distance",
    "__version__",
]
