"""The metric registry: one :class:`MetricInfo` per metric, as ``scipy.spatial.distance`` does.

Everything that depends on which metric is asked for reads it here: the one-pair dispatch
(:func:`~cca_scale.core.pairs.pair_distances`), the checks at every boundary (one-pair functions,
the engine's request, ``in_memory_distances``), the engine's per-layer steps and the CLI's
``--metric`` choices and help. Adding a metric is one entry in :data:`METRICS`, its kernel
(:mod:`cca_scale.core.kernels`) and its readable reference (:mod:`cca_scale.core.reference`);
``tests/test_registry.py`` then checks the kernel against the reference and every flag against
the math.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from cca_scale.core.backend import array_namespace

from cca_scale.core import batched, kernels, reference
from cca_scale.core.basis import Basis
from cca_scale.core.batched import BatchResult, Layers
from cca_scale.core.kernels import DEFAULT_EPSILON, PairResult
from cca_scale.errors import CcaScaleError

__all__ = [
    "ALIGNED_METRICS",
    "CCA_METRICS",
    "DEFAULT_EPSILON",
    "METRICS",
    "METRIC_NAMES",
    "MetricInfo",
    "VARIANTS",
    "check_aligned",
    "check_epsilon",
    "check_keep",
    "check_metric",
    "check_variant",
    "get_metric",
]

#: PWCCA's variants: the paper's formula, or the original implementation's (google/svcca).
VARIANTS = ("paper", "svcca")


def check_variant(variant: Any) -> None:
    """``variant``: one of :data:`VARIANTS`."""
    if variant not in VARIANTS:
        raise CcaScaleError(
            f"The 'variant' parameter must be one of {list(VARIANTS)}. Got {variant!r} instead."
        )


def check_keep(keep: Any) -> None:
    """SVCCA's ``keep``: an int >= 1 (directions) or a float in (0, 1) (variance fraction)."""
    ok = (
        isinstance(keep, (int, np.integer)) and not isinstance(keep, bool) and keep >= 1
    ) or (isinstance(keep, (float, np.floating)) and 0.0 < keep < 1.0)
    if not ok:
        raise CcaScaleError(
            "The 'keep' parameter must be an int >= 1 (number of SVD directions) or a float in "
            f"(0, 1) (fraction of variance to keep). Got {keep!r} instead."
        )


def check_epsilon(epsilon: Any) -> None:
    """The svcca variant's ``epsilon``: a finite float >= 0 (variance cut-off and ridge)."""
    ok = isinstance(epsilon, (int, float, np.integer, np.floating)) and not isinstance(
        epsilon, bool) and np.isfinite(epsilon) and epsilon >= 0
    if not ok:
        raise CcaScaleError(
            "The 'epsilon' parameter must be a finite number >= 0 (the svcca variant's variance "
            f"cut-off and ridge; default {DEFAULT_EPSILON}). Got {epsilon!r} instead."
        )


#: The validator of each option a metric may take.
OPTION_CHECKS: Mapping[str, Callable[[Any], None]] = MappingProxyType(
    {"variant": check_variant, "keep": check_keep, "epsilon": check_epsilon})


@dataclass(frozen=True)
class MetricInfo:
    """One metric: what it is, what it needs, and the code that computes it.

    Attributes
    ----------
    name : str
        The name users pass (``metric=...``, ``--metric``); also what outputs record.
    description : str
        One line, shown by ``--help``.
    kernel : callable
        ``kernel(cross, a, b, *, <its options>, both) -> BatchResult``
        (:mod:`cca_scale.core.batched`): the distances of P pairs from their stacked cross
        products ``a.q.T @ b.q`` (shape (P, rank_a, rank_b)) of PREPARED layers (after
        ``prepare_basis``), ``a`` and ``b`` stacked as :class:`~cca_scale.core.batched.Layers`
        (with their ``side`` factors, for a metric that has that hook).
    reference : callable
        ``reference(x, y, *, <its options>) -> float``: ``d(x, y)`` computed literally from the
        activations (NumPy float64, slow, shares no code with the kernel), for tests and benchmarks.
    aliases : tuple of str
        Other names accepted for it.
    directional : bool
        ``d(x, y) != d(y, x)`` in general (PWCCA: the first argument's weights).
    bounded : bool
        Every value lies in [0, 1]. Metrics with another fixed range (cosine: [0, 2], procrustes:
        [0, pi/2]) are not bounded in this sense; their descriptions give the range.
    cca_family : bool
        Built on CCA: degenerate when ``n_datapoints <= n_neurons``, refused there unless
        ``allow_underdetermined``.
    aligned : bool
        Compares neuron by neuron: both layers need the same number of neurons.
    takes_variant, takes_keep, takes_epsilon : bool
        The options it takes (each checked by :data:`OPTION_CHECKS`). For a metric with variants,
        ``epsilon`` is used by its non-paper variant only.
    prepare_basis : callable, optional
        ``prepare_basis(basis, **options) -> Basis``, run once per layer before the kernel. It must
        return the basis' leading directions (a truncation), so that the cross product of two
        prepared bases is the leading block of the unprepared ones'.
    side : callable, optional
        ``side(basis, **options)``: per-layer factors the kernel takes as ``sides`` (computed once
        per layer by the engine, by the kernel itself when not given); None where not needed.
    """

    name: str
    description: str
    kernel: Callable[..., PairResult]
    reference: Callable[..., float]
    aliases: tuple[str, ...] = ()
    directional: bool = False
    bounded: bool = True
    cca_family: bool = False
    aligned: bool = False
    takes_variant: bool = False
    takes_keep: bool = False
    takes_epsilon: bool = False
    prepare_basis: Callable[..., Basis] | None = None
    side: Callable[..., Any] | None = None

    @property
    def options(self) -> tuple[str, ...]:
        """Names of the options it takes, in the order variant, keep, epsilon."""
        taken = (self.takes_variant, self.takes_keep, self.takes_epsilon)
        return tuple(name for name, takes in zip(OPTION_CHECKS, taken) if takes)

    @property
    def needs_sides(self) -> bool:
        return self.side is not None

    def check_options(self, **values: Any) -> None:
        """Check the given values of the options it takes; the others are ignored."""
        for name in self.options:
            if name in values:
                OPTION_CHECKS[name](values[name])

    def kernel_options(self, *, variant: str = "paper", keep: Any = 0.99,
                       epsilon: float = DEFAULT_EPSILON) -> dict[str, Any]:
        """The options it takes, by name, to pass to its kernel and hooks."""
        given = {"variant": variant, "keep": keep, "epsilon": epsilon}
        return {name: given[name] for name in self.options}

    def used_options(self, *, variant: str = "paper", keep: Any = 0.99,
                     epsilon: float = DEFAULT_EPSILON) -> dict[str, Any]:
        """``variant``, ``keep``, ``epsilon``: the value where it changes the result, else None
        (what an output records)."""
        used = self.kernel_options(variant=variant, keep=keep, epsilon=epsilon)
        if used.get("variant") == "paper":
            used.pop("epsilon", None)
        return {name: used.get(name) for name in OPTION_CHECKS}

    def prepare(self, basis: Basis, options: Mapping[str, Any]) -> Basis:
        """The per-layer step (``prepare_basis``), or the basis itself."""
        return basis if self.prepare_basis is None else self.prepare_basis(basis, **options)

    def side_of(self, basis: Basis, options: Mapping[str, Any]) -> Any:
        """The per-layer factors of a prepared basis (``side``), or None."""
        return None if self.side is None else self.side(basis, **options)

    def batch(self, cross, a: Layers, b: Layers, options: Mapping[str, Any], *,
              both: bool = True) -> BatchResult:
        """Run the kernel on P pairs of prepared layers and their stacked cross products."""
        return self.kernel(cross, a, b, **options, both=both)

    def pair(self, cross, a: Basis, b: Basis, options: Mapping[str, Any], *,
             sides: tuple[Any, Any] | None = None, both: bool = True) -> PairResult:
        """Run the kernel on two prepared bases and their cross product: a batch of one."""
        xp = array_namespace(cross)
        side_a, side_b = sides if sides is not None and self.needs_sides else (None, None)
        la = Layers.of([a], xp, None if side_a is None else [side_a])
        lb = Layers.of([b], xp, None if side_b is None else [side_b])
        return self.batch(cross[None, :, :], la, lb, options, both=both).pair(0)


_ENTRIES = (
    MetricInfo(
        "pwcca", "projection-weighted CCA (Morcos et al. 2018), directional (the row's "
        "weights)", batched.pwcca_batch, reference.reference_pwcca,
        directional=True, cca_family=True, takes_variant=True, takes_epsilon=True,
        side=kernels.pwcca_side),
    MetricInfo(
        "mean_cca", "1 - the mean of all canonical correlations", batched.mean_cca_batch,
        reference.reference_mean_cca, cca_family=True),
    MetricInfo(
        "svcca", "SVCCA (Raghu et al. 2017): mean CCA of each layer's top SVD directions "
        "(keep)", batched.svcca_batch, reference.reference_svcca, cca_family=True,
        takes_keep=True, prepare_basis=kernels.svcca_basis),
    MetricInfo(
        "cka", "1 - linear CKA (Kornblith et al. 2019)", batched.cka_batch,
        reference.reference_cka),
    MetricInfo(
        "procrustes", "angular Procrustes shape metric (Williams et al. 2021), a true metric, "
        "in radians in [0, pi/2]", batched.procrustes_batch, reference.reference_procrustes,
        bounded=False),
    MetricInfo(
        "cosine", "1 - cosine of the activation matrices, neuron by neuron (the paper's "
        "baseline, equal widths, in [0, 2])", batched.cosine_batch, reference.reference_cosine,
        bounded=False, aligned=True),
    MetricInfo(
        "euclidean", "root-mean-square distance between datapoints' activations (the paper's "
        "baseline, equal widths, in the layer's units)", batched.euclidean_batch,
        reference.reference_euclidean, bounded=False, aligned=True),
)

#: Every metric by name.
METRICS: Mapping[str, MetricInfo] = MappingProxyType({m.name: m for m in _ENTRIES})
_BY_ANY_NAME = MappingProxyType({**{alias: m for m in _ENTRIES for alias in m.aliases},
                                 **METRICS})

#: Derived views, exported as before: the names; the CCA family (degenerate when n_datapoints <=
#: n_neurons, refused unless opted in); the neuron-by-neuron metrics (equal widths).
METRIC_NAMES = tuple(METRICS)
CCA_METRICS = tuple(name for name, m in METRICS.items() if m.cca_family)
ALIGNED_METRICS = tuple(name for name, m in METRICS.items() if m.aligned)


def get_metric(name: Any) -> MetricInfo:
    """The :class:`MetricInfo` of a name or alias; an unknown name lists the known ones."""
    try:
        return _BY_ANY_NAME[name]
    except (KeyError, TypeError):
        aliases = sorted(set(_BY_ANY_NAME) - set(METRICS))
        also = f" (or an alias: {aliases})" if aliases else ""
        raise CcaScaleError(
            f"The 'metric' parameter must be one of {list(METRICS)}{also}. Got {name!r} instead."
        ) from None


def check_metric(metric: Any, variant: Any = "paper") -> MetricInfo:
    """Refuse unknown metric or variant names, listing the known ones; returns the metric."""
    info = get_metric(metric)
    check_variant(variant)
    return info


def check_aligned(metric: str, n_neurons_a: int, n_neurons_b: int) -> None:
    """Neuron-by-neuron metrics (cosine, Euclidean) need layers of the same width."""
    if get_metric(metric).aligned and n_neurons_a != n_neurons_b:
        others = [name for name, m in METRICS.items() if not (m.aligned or m.cca_family)]
        raise CcaScaleError(
            f"metric={metric!r} compares neuron by neuron, so both layers need the same number "
            f"of neurons; got {n_neurons_a} and {n_neurons_b}. CCA-based metrics "
            f"({', '.join(CCA_METRICS)}) and {', '.join(others)} compare layers of any widths."
        )
