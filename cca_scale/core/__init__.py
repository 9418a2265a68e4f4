"""The math: CCA, SVCCA and PWCCA on NumPy or CuPy. Imports neither Dask nor Zarr."""

from cca_scale.core.basis import Basis, BasisAccumulator, default_rtol, prepare
from cca_scale.core.conv import flatten_conv
from cca_scale.core.metrics import (
    CCAResult,
    cca,
    cka_distance,
    cosine_distance,
    euclidean_distance,
    mean_cca_distance,
    procrustes_distance,
    pwcca_distance,
    svcca_distance,
)
from cca_scale.core.pairs import METRICS, VARIANTS, PairResult, compare, pair_distances
from cca_scale.core.validation import check_activations, check_pair

__all__ = [
    "Basis",
    "BasisAccumulator",
    "cca",
    "CCAResult",
    "check_activations",
    "check_pair",
    "cka_distance",
    "compare",
    "cosine_distance",
    "default_rtol",
    "euclidean_distance",
    "flatten_conv",
    "mean_cca_distance",
    "METRICS",
    "pair_distances",
    "PairResult",
    "prepare",
    "procrustes_distance",
    "pwcca_distance",
    "svcca_distance",
    "VARIANTS",
]
