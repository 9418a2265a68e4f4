"""The metric registry: every entry's kernel against its reference, every flag against the math.

Everything here iterates over the registry, so a new metric is checked by adding its entry.
"""

from dataclasses import astuple

import numpy as np
import pytest

from cca_scale.core import prepare
from cca_scale.core.pairs import compare, pair_distances
from cca_scale.core.registry import (
    ALIGNED_METRICS,
    CCA_METRICS,
    METRICS,
    VARIANTS,
    get_metric,
)
from cca_scale.errors import ActivationError, CcaScaleError


def option_sets(info):
    """Every variant of a metric that has them; ``keep`` as a count and as a variance fraction."""
    sets = [{}]
    if info.takes_variant:
        sets = [{**s, "variant": v} for s in sets for v in VARIANTS]
    if info.takes_keep:
        sets = [{**s, "keep": k} for s in sets for k in (3, 0.9)]
    if info.takes_epsilon:
        sets = [{**s, "epsilon": 1e-10} for s in sets]
    return sets


CASES = [pytest.param(name, options, id=f"{name}-{'-'.join(map(str, options.values()))}")
         for name, info in METRICS.items() for options in option_sets(info)]


def layers(seed, widths, n=300, scale=1.0):
    """Two related, well-conditioned layers with non-zero means over the same datapoints."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 4))
    out = []
    for w in widths:
        x = z @ rng.standard_normal((4, w)) + 0.7 * rng.standard_normal((n, w)) + rng.normal(size=w)
        out.append(scale * x)
    return out


def widths_for(info):
    return (6, 6) if info.aligned else (8, 5)


def distances(name, options, x, y):
    a, b = prepare(x), prepare(y)
    return pair_distances(a.q.T @ b.q, a, b, metric=name, **options)


@pytest.mark.parametrize("name,options", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_kernel_equals_reference(name, options, seed):
    info = METRICS[name]
    x, y = layers(seed, widths_for(info))
    res = distances(name, options, x, y)
    np.testing.assert_allclose(res.forward, info.reference(x, y, **options), rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(res.backward, info.reference(y, x, **options), rtol=1e-10,
                               atol=1e-10)


@pytest.mark.parametrize("name,options", CASES)
def test_per_layer_hooks_give_the_one_pair_result(name, options):
    """The engine's route (each layer prepared once, its side computed once, then the kernel on the
    prepared bases' cross product) is the one-pair route; a prepared basis is a truncation."""
    info = METRICS[name]
    x, y = layers(2, widths_for(info))
    a, b = prepare(x), prepare(y)
    opts = info.kernel_options(**options)
    pa, pb = info.prepare(a, opts), info.prepare(b, opts)
    for basis, prepared in ((a, pa), (b, pb)):
        assert prepared.rank <= basis.rank
        np.testing.assert_array_equal(prepared.s, basis.s[:prepared.rank])
        np.testing.assert_array_equal(prepared.vt, basis.vt[:prepared.rank])
    sides = (info.side_of(pa, opts), info.side_of(pb, opts))
    engine = info.pair(pa.q.T @ pb.q, pa, pb, opts, sides=sides)
    one_pair = pair_distances(a.q.T @ b.q, a, b, metric=name, **options)
    np.testing.assert_equal(astuple(engine), astuple(one_pair))  # NaN diagnostics included


@pytest.mark.parametrize("name,options", CASES)
def test_directional_flag(name, options):
    info = METRICS[name]
    gaps = []
    for seed in range(3):
        x, y = layers(seed, widths_for(info))
        a, b = prepare(x), prepare(y)
        cross = a.q.T @ b.q
        forward = pair_distances(cross, a, b, metric=name, **options)
        reverse = pair_distances(cross.T, b, a, metric=name, **options).forward
        np.testing.assert_allclose(forward.backward, reverse, rtol=1e-10, atol=1e-10)
        gaps.append(abs(forward.forward - reverse) / max(1.0, abs(reverse)))
    if info.directional:
        assert max(gaps) > 1e-6
    else:
        assert max(gaps) <= 1e-12


@pytest.mark.parametrize("name,options", CASES)
def test_bounded_flag(name, options):
    info = METRICS[name]
    values = []
    unrelated = (layers(3, widths_for(info))[0], layers(4, widths_for(info))[1])
    for seed, scale in ((0, 1.0), (1, 10.0), (2, 0.1), (None, 1.0)):
        # the last pair is unrelated (independent signals), where distances are largest
        x, y = unrelated if seed is None else layers(seed, widths_for(info), scale=scale)
        res = distances(name, options, x, y)
        values += [res.forward, res.backward]
    values = np.array(values)
    inside = (values >= -1e-12) & (values <= 1 + 1e-12)
    assert inside.all() if info.bounded else not inside.all()


@pytest.mark.parametrize("name", METRICS)
def test_cca_family_flag_refuses_n_at_most_d(name):
    from cca_scale import in_memory_distances
    from cca_scale.engine.request import ComparisonRequest

    info = METRICS[name]
    x, y = layers(3, (8, 8), n=6)
    assert ComparisonRequest.build(layer="h", metric=name).needs_overdetermined == info.cca_family
    if info.cca_family:
        with pytest.raises(ActivationError, match="CCA is degenerate"):
            in_memory_distances({"x": x, "y": y}, metric=name)
        in_memory_distances({"x": x, "y": y}, metric=name, allow_underdetermined=True)
    else:
        D = in_memory_distances({"x": x, "y": y}, metric=name)
        assert np.isfinite(D.values).all()


@pytest.mark.parametrize("name", METRICS)
def test_aligned_flag_refuses_unequal_widths(name):
    info = METRICS[name]
    a, b = (prepare(v) for v in layers(4, (8, 5)))
    if info.aligned:
        with pytest.raises(CcaScaleError, match="compares neuron by neuron"):
            compare(a, b, metric=name)
    else:
        assert np.isfinite(compare(a, b, metric=name).forward)


def test_derived_views_and_entries():
    assert CCA_METRICS == tuple(n for n, m in METRICS.items() if m.cca_family)
    assert ALIGNED_METRICS == tuple(n for n, m in METRICS.items() if m.aligned)
    names = list(METRICS)
    aliases = [alias for m in METRICS.values() for alias in m.aliases]
    assert len(set(names + aliases)) == len(names) + len(aliases)
    for name, info in METRICS.items():
        assert info.name == name and get_metric(name) is info
        assert all(get_metric(alias) is info for alias in info.aliases)
        assert info.description and "\n" not in info.description and ";" not in info.description


def test_options_are_checked_only_where_taken():
    get_metric("cka").check_options(keep=1.5, epsilon=-1.0, variant="google")
    with pytest.raises(CcaScaleError, match="'keep' parameter"):
        get_metric("svcca").check_options(keep=1.5)
    with pytest.raises(CcaScaleError, match="'epsilon' parameter"):
        get_metric("pwcca").check_options(epsilon=-1.0)
    with pytest.raises(CcaScaleError, match="'variant' parameter"):
        get_metric("pwcca").check_options(variant="google")
    assert get_metric("pwcca").used_options(variant="paper", epsilon=1e-3) == {
        "variant": "paper", "keep": None, "epsilon": None}
    assert get_metric("pwcca").used_options(variant="svcca", epsilon=1e-3)["epsilon"] == 1e-3


@pytest.mark.parametrize("command", ["compare", "dynamics"])
def test_cli_metric_choices_are_the_registry(command):
    from cca_scale.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    (metric,) = [a for a in sub._actions if a.dest == "metric"]
    assert list(metric.choices) == list(METRICS)
    for name, info in METRICS.items():
        assert f"{name}: {info.description}" in metric.help


@pytest.mark.parametrize("bad", ["pwca", "PWCCA", None, ["pwcca"]])
def test_unknown_metric_lists_the_known_ones(bad):
    known = str(list(METRICS))
    with pytest.raises(CcaScaleError) as caught:
        get_metric(bad)
    assert str(caught.value) == (f"The 'metric' parameter must be one of {known}. "
                                 f"Got {bad!r} instead.")
    a = prepare(layers(5, (4,))[0])
    with pytest.raises(CcaScaleError, match="'metric' parameter must be one of"):
        compare(a, a, metric=bad)
