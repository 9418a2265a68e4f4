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
from cca_scale.errors import (
    ActivationError,
    CcaScaleError,
    InvalidNameError,
    LayerNotFoundError,
    NetworkNotFoundError,
    StoreConflictError,
    StoreError,
)

try:
    __version__ = _version("cca-scale")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "ActivationError",
    "Basis",
    "CCAResult",
    "CcaScaleError",
    "InvalidNameError",
    "LayerNotFoundError",
    "NetworkNotFoundError",
    "PairResult",
    "StoreConflictError",
    "StoreError",
    "__version__",
    "cca",
    "cka_distance",
    "compare_bases",
    "cosine_distance",
    "euclidean_distance",
    "flatten_conv",
    "mean_cca_distance",
    "prepare",
    "pwcca_distance",
    "svcca_distance",
]
