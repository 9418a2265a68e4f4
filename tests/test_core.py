"""Core math: the fast prepared path against covariance-based references, and stated properties."""

import dataclasses

import numpy as np
import pytest

import cca_scale
from cca_scale.core import BasisAccumulator, compare, pair_distances, prepare
from cca_scale.core import reference as ref
from cca_scale.core.pairs import svcca_rank
from conftest import make_pair, requires_gpu

TOL = 1e-10  # float64 fast path vs the literal covariance formulas on well-conditioned data


# -- agreement with references ----------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_paper_pwcca_matches_covariance_reference(seed):
    rng = np.random.default_rng(seed)
    x, y = make_pair(rng, n=int(rng.integers(300, 900)), dx=int(rng.integers(3, 25)),
                     dy=int(rng.integers(3, 25)))
    assert cca_scale.pwcca_distance(x, y) == pytest.approx(ref.reference_pwcca_paper(x, y), abs=TOL)
    assert cca_scale.pwcca_distance(y, x) == pytest.approx(ref.reference_pwcca_paper(y, x), abs=TOL)


@pytest.mark.parametrize("seed", range(6))
def test_svcca_variant_matches_covariance_reference(seed):
    rng = np.random.default_rng(100 + seed)
    x, y = make_pair(rng, n=int(rng.integers(300, 900)), dx=int(rng.integers(3, 25)),
                     dy=int(rng.integers(3, 25)))
    for a, b in ((x, y), (y, x)):
        got = cca_scale.pwcca_distance(a, b, variant="svcca")
        assert got == pytest.approx(ref.reference_pwcca_svcca(a, b), abs=1e-9)


# Values returned by the original implementation (google/svcca pwcca.compute_pwcca at commit
# 1f9f7ea, epsilon=1e-10, with its upstream PR #9 fix) on these seeded inputs: 1 - similarity.
ORIGINAL = {
    1: (dict(n=800, dx=10, dy=6), 0.8177638671637164, 0.7259228152909339),
    2: (dict(n=500, dx=5, dy=14), 0.8122253259441738, 0.7782189980812871),
    3: (dict(n=1200, dx=20, dy=20, noise=1.5), 0.42394140326469415, 0.37794651228173515),
}


@pytest.mark.parametrize("seed", sorted(ORIGINAL))
def test_svcca_variant_reproduces_published_implementation(seed):
    kwargs, sim_xy, sim_yx = ORIGINAL[seed]
    x, y = make_pair(np.random.default_rng(seed), **kwargs)
    if seed == 3:
        x = np.maximum(x, 0)
    assert cca_scale.pwcca_distance(x, y, variant="svcca") == pytest.approx(1 - sim_xy, abs=1e-9)
    assert cca_scale.pwcca_distance(y, x, variant="svcca") == pytest.approx(1 - sim_yx, abs=1e-9)


def test_engine_route_of_svcca_variant_matches_one_pair_route(rng):
    x, y = make_pair(rng, n=700, dx=9, dy=13)
    res = compare(prepare(x), prepare(y), metric="pwcca", variant="svcca")
    assert res.forward == pytest.approx(cca_scale.pwcca_distance(x, y, variant="svcca"), abs=1e-9)
    assert res.backward == pytest.approx(cca_scale.pwcca_distance(y, x, variant="svcca"), abs=1e-9)


def test_svcca_variant_in_stacks_equals_pair_by_pair(rng):
    """The svcca kernel runs regular pairs as stacks (grouped by shape) and pairs with a null
    direction one by one: each pair gets what it gets alone, and the original's value."""
    from cca_scale.core.kernels import SvccaSide, stable_pwcca_batch, stable_pwcca_similarity
    from cca_scale.core.pairs import original_pwcca_similarity

    n, d = 600, 8
    layers = [make_pair(rng, n=n, dx=d - 1, dy=d - 1)[k] for k in (0, 1)]
    layers += [make_pair(rng, n=n, dx=d - 1, dy=d - 1)[0]]
    dup = make_pair(rng, n=n, dx=d - 1, dy=3)[0]
    layers.append(np.hstack([dup, dup[:, :1]]))  # a duplicated unit: rank d - 1, d kept neurons
    bases = [prepare(x) for x in layers]
    sides = [SvccaSide.of(b) for b in bases]
    assert [s.regular for s in sides] == [True, True, True, False]
    pairs = [(i, j) for i in range(4) for j in range(4) if i != j]
    xs, ys = [sides[i] for i, _ in pairs], [sides[j] for _, j in pairs]
    cross = np.stack([bases[i].q.T @ bases[j].q for i, j in pairs])
    forward, backward, rho_max, rho_min, kx, ky = stable_pwcca_batch(xs, ys, cross)
    for p, (i, j) in enumerate(pairs):
        sim, nx, ny, rho = stable_pwcca_similarity(xs[p], ys[p], cross[p])
        assert forward[p] == sim  # the same stacked code, one pair or many
        assert (rho_max[p], rho_min[p], kx[p], ky[p]) == (rho[0], rho[-1], nx, ny)
        assert backward[p] == pytest.approx(
            stable_pwcca_similarity(ys[p], xs[p], cross[p].T)[0], abs=1e-12)
        if sides[i].regular and sides[j].regular:
            assert forward[p] == pytest.approx(
                original_pwcca_similarity(layers[i], layers[j], 1e-10), abs=1e-9)
            assert backward[p] == pytest.approx(
                original_pwcca_similarity(layers[j], layers[i], 1e-10), abs=1e-9)
    assert np.isnan(stable_pwcca_batch(xs, ys, cross, both=False)[1]).all()


def test_variants_differ_on_generic_data(rng):
    x, y = make_pair(rng, n=800, dx=10, dy=7)
    paper, original = (cca_scale.pwcca_distance(x, y, variant=v) for v in ("paper", "svcca"))
    assert abs(paper - original) > 1e-3


@pytest.mark.parametrize("seed", range(4))
def test_mean_cca_and_svcca_match_references(seed):
    rng = np.random.default_rng(200 + seed)
    x, y = make_pair(rng, n=500, dx=15, dy=11)
    assert cca_scale.mean_cca_distance(x, y) == pytest.approx(ref.reference_mean_cca(x, y), abs=TOL)
    for keep in (0.5, 0.9, 0.99, 1, 4, 50):
        assert cca_scale.svcca_distance(x, y, keep=keep) == pytest.approx(
            ref.reference_svcca(x, y, keep), abs=TOL)


def test_baselines_match_direct_formulas(rng):
    x, y = make_pair(rng, n=400, dx=8, dy=8)
    xc, yc = x - x.mean(0), y - y.mean(0)
    cka = np.linalg.norm(xc.T @ yc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert cca_scale.cka_distance(x, y) == pytest.approx(1 - cka, abs=TOL)
    cos = np.sum(x * y) / (np.linalg.norm(x) * np.linalg.norm(y))
    assert cca_scale.cosine_distance(x, y) == pytest.approx(1 - cos, abs=TOL)
    assert cca_scale.euclidean_distance(x, y) == pytest.approx(
        np.sqrt(np.sum((x - y) ** 2) / len(x)), rel=1e-10)


# -- properties -------------------------------------------------------------------------------
def test_rho_sorted_in_unit_interval_with_min_rank_length(rng):
    x, y = make_pair(rng, n=500, dx=12, dy=7)
    res = cca_scale.cca(x, y)
    rho = np.asarray(res.rho)
    assert rho.shape == (7,)
    assert np.all(np.diff(rho) <= 1e-15) and rho.min() >= 0 and rho.max() <= 1
    np.testing.assert_allclose(rho, ref.reference_cca(x, y)[0], atol=1e-10)
    h = res.x_variates()
    np.testing.assert_allclose(h.T @ h, np.eye(7), atol=1e-10)  # orthonormal canonical variates
    assert np.sum(res.x_weights) == pytest.approx(1.0) and np.all(res.x_weights >= 0)


@pytest.mark.parametrize("metric", ["pwcca", "mean_cca", "svcca"])
def test_distance_to_itself_and_to_invertible_affine_map_is_zero(rng, metric):
    x, _ = make_pair(rng, n=500, dx=10)
    fn = {"pwcca": cca_scale.pwcca_distance, "mean_cca": cca_scale.mean_cca_distance,
          "svcca": lambda a, b: cca_scale.svcca_distance(a, b, keep=10)}[metric]
    mapped = x @ rng.normal(size=(10, 10)) + rng.normal(size=10)
    assert fn(x, x) == pytest.approx(0.0, abs=1e-10)
    assert fn(x, mapped) == pytest.approx(0.0, abs=1e-9)
    assert fn(mapped, x) == pytest.approx(0.0, abs=1e-9)


def test_invariances_where_the_math_says_so(rng):
    x, y = make_pair(rng, n=600, dx=9, dy=7)
    a = rng.normal(size=(7, 7))
    base = cca_scale.pwcca_distance(x, y)
    # rho, hence mean CCA, are invariant to invertible affine maps of either side.
    np.testing.assert_allclose(cca_scale.cca(x @ rng.normal(size=(9, 9)) + 3, y @ a).rho,
                               cca_scale.cca(x, y).rho, atol=1e-9)
    # PWCCA d(x, y) weighs by x's neurons: invariant to any invertible map of y ...
    assert cca_scale.pwcca_distance(x, y @ a - 5) == pytest.approx(base, abs=1e-9)
    # ... and to translating, permuting, sign-flipping and uniformly scaling x's neurons ...
    perm = rng.permutation(9)
    signs = rng.choice([-1.0, 1.0], size=9)
    moved = 2.5 * x[:, perm] * signs + 7
    assert cca_scale.pwcca_distance(moved, y) == pytest.approx(base, abs=1e-9)
    # ... but not to a general linear map of x (the weights change): a negative control.
    assert abs(cca_scale.pwcca_distance(x @ rng.normal(size=(9, 9)), y) - base) > 1e-4


def test_pwcca_is_directional(rng):
    x, y = make_pair(rng, n=800, dx=20, dy=5)
    assert abs(cca_scale.pwcca_distance(x, y) - cca_scale.pwcca_distance(y, x)) > 1e-3
    res = compare(prepare(x), prepare(y))
    assert res.forward == pytest.approx(cca_scale.pwcca_distance(x, y), abs=1e-12)
    assert res.backward == pytest.approx(cca_scale.pwcca_distance(y, x), abs=1e-12)


def test_both_variants_agree_when_all_correlations_are_equal(rng):
    # Every canonical correlation equals c, so any weighting gives 1 - c.
    n, d, c = 1000, 6, 0.7
    q, _ = np.linalg.qr(rng.normal(size=(n, 2 * d)) - 0)
    q -= q.mean(0)
    q, _ = np.linalg.qr(q)
    x = q[:, :d] @ rng.normal(size=(d, d)) + 2.0
    y = (c * q[:, :d] + np.sqrt(1 - c**2) * q[:, d:]) @ rng.normal(size=(d, d)) - 1.0
    np.testing.assert_allclose(cca_scale.cca(x, y).rho, c, atol=1e-10)
    for variant in ("paper", "svcca"):
        assert cca_scale.pwcca_distance(x, y, variant=variant) == pytest.approx(1 - c, abs=1e-8)
    assert cca_scale.mean_cca_distance(x, y) == pytest.approx(1 - c, abs=1e-10)


def test_projection_weighting_discounts_low_variance_noise(rng):
    # Paper Fig 2: shared signal dims plus unshared noise dims. The true distance of the signal is
    # 0; PWCCA stays near it while mean CCA counts every noise direction as fully dissimilar.
    n, sig, noise = 3000, 5, 15
    s = rng.normal(size=(n, sig))
    pw, mean = [], []
    for scale in (0.05, 0.2):
        x = np.hstack([s @ rng.normal(size=(sig, sig)), scale * rng.normal(size=(n, noise))])
        y = np.hstack([s @ rng.normal(size=(sig, sig)), scale * rng.normal(size=(n, noise))])
        pw.append(cca_scale.pwcca_distance(x, y))
        mean.append(cca_scale.mean_cca_distance(x, y))
    assert all(p < 0.6 * m for p, m in zip(pw, mean))
    assert pw[0] < pw[1]  # weaker noise, closer to the signal's distance of 0
    assert mean[0] == pytest.approx(mean[1], abs=0.02)  # mean CCA is blind to the noise level


@pytest.mark.parametrize("dead", [0, 4, 9])
def test_dead_units_are_dropped_wherever_they_sit(rng, dead):
    x, y = make_pair(rng, n=500, dx=10, dy=8)
    x_dead = x.copy()
    x_dead[:, dead] = 0.0 if dead != 4 else 3.25  # dead ReLU, or a stuck unit
    kept = np.delete(x_dead, dead, axis=1)
    basis = prepare(x_dead)
    assert basis.rank == 9
    assert not bool(basis.kept_neurons[dead]) and int(np.sum(basis.kept_neurons)) == 9
    for metric in (cca_scale.pwcca_distance, cca_scale.mean_cca_distance):
        assert metric(x_dead, y) == pytest.approx(metric(kept, y), abs=1e-10)
        assert metric(y, x_dead) == pytest.approx(metric(y, kept), abs=1e-10)


def test_float32_agrees_with_float64_to_stated_accuracy(rng):
    x, y = make_pair(rng, n=2000, dx=32, dy=24)
    d64 = cca_scale.pwcca_distance(x, y)
    d32 = cca_scale.pwcca_distance(x.astype(np.float32), y.astype(np.float32), dtype="float32")
    assert d32 == pytest.approx(d64, abs=1e-4)
    assert prepare(x, dtype="float32").q.dtype == np.float32
    assert prepare(x.astype(np.float32)).q.dtype == np.float64  # float64 unless asked


def test_streamed_basis_equals_in_memory_basis(rng):
    x, y = make_pair(rng, n=1000, dx=12, dy=9)
    full_x, full_y = prepare(x), prepare(y)
    streamed = []
    for arr in (x, y):
        acc = BasisAccumulator()
        for start in range(0, len(arr), 137):
            acc.update(arr[start:start + 137])
        basis = acc.finalize()
        assert basis.q is None and basis.n_datapoints == len(arr)
        streamed.append(dataclasses.replace(basis, q=basis.project(arr)))
    np.testing.assert_allclose(streamed[0].s, full_x.s, rtol=1e-10)
    np.testing.assert_allclose(streamed[0].mean, full_x.mean, atol=1e-12)
    np.testing.assert_allclose(streamed[0].q.T @ streamed[0].q, np.eye(12), atol=1e-10)
    for metric in ("pwcca", "mean_cca", "svcca", "cka"):
        want = compare(full_x, full_y, metric=metric)
        got = compare(*streamed, metric=metric)
        assert got.forward == pytest.approx(want.forward, abs=1e-10)
        assert got.backward == pytest.approx(want.backward, abs=1e-10)


def test_svcca_rank_rules():
    s = np.array([3.0, 2.0, 1.0, 0.5])  # variances 9, 4, 1, .25 of 14.25
    assert svcca_rank(s, 2) == 2 and svcca_rank(s, 10) == 4
    assert svcca_rank(s, 9 / 14.25) == 1
    assert svcca_rank(s, 0.64) == 2
    assert svcca_rank(s, 0.99) == 4


def test_pair_kernel_one_direction_skips_backward(rng):
    x, y = make_pair(rng)
    a, b = prepare(x), prepare(y)
    res = pair_distances(a.q.T @ b.q, a, b, both=False)
    assert np.isnan(res.backward) and res.forward == pytest.approx(compare(a, b).forward)


def test_flatten_conv_modes(rng):
    acts = rng.normal(size=(5, 4, 3, 7))
    np.testing.assert_allclose(cca_scale.flatten_conv(acts, "mean"), acts.mean(axis=(1, 2)))
    pos = cca_scale.flatten_conv(acts, "positions")
    assert pos.shape == (60, 7)
    np.testing.assert_array_equal(pos[:12], acts[0].reshape(12, 7))
    with pytest.raises(ValueError, match="'mean', 'positions'"):
        cca_scale.flatten_conv(acts, "avg")
    with pytest.raises(ValueError, match="at least 3"):
        cca_scale.flatten_conv(acts[:, 0, 0], "mean")


# -- bad input --------------------------------------------------------------------------------
def _bad(rng):
    x, y = make_pair(rng, n=50, dx=4, dy=3)
    nan_x = x.copy()
    nan_x[3, 1] = np.nan
    inf_y = y.copy()
    inf_y[0, 0] = np.inf
    const = np.ones((50, 4))
    return [
        ((nan_x, y), {}, "argument 'x'.*NaN"),
        ((x, inf_y), {}, "argument 'y'.*Inf"),
        ((x, y[:40]), {}, "datapoints.*50.*40"),
        ((x.reshape(50, 2, 2), y), {}, "2-D.*flatten_conv"),
        ((x[:, 0], y), {}, "2-D"),
        ((x[:4], y[:4]), {}, "datapoints for 4 neurons.*degenerate.*allow_underdetermined"),
        ((const, y), {}, "constant"),
        ((x.astype(complex), y), {}, "complex"),
        ((np.array([["a"] * 4] * 50), y), {}, "non-numeric"),
        ((x, y), {"variant": "google"}, "'variant' parameter must be one of.*'paper', 'svcca'"),
        ((x, y), {"dtype": "float16"}, "float32' or 'float64"),
    ]


@pytest.mark.parametrize("case", range(11))
def test_bad_input_is_refused_with_a_clear_message(rng, case):
    args, kwargs, match = _bad(rng)[case]
    with pytest.raises(cca_scale.ActivationError if "parameter" not in match else ValueError,
                       match=match):
        cca_scale.pwcca_distance(*args, **kwargs)


@pytest.mark.parametrize("variant", ["paper", "svcca"])
def test_constant_layer_refused_in_both_variants(rng, variant):
    _, y = make_pair(rng)
    with pytest.raises(cca_scale.ActivationError, match="argument 'x'.*constant"):
        cca_scale.pwcca_distance(np.full((600, 3), 2.0), y, variant=variant)


def test_underdetermined_needs_opt_in(rng):
    x, y = make_pair(rng, n=10, dx=12, dy=12)
    with pytest.raises(cca_scale.ActivationError, match="degenerate"):
        cca_scale.mean_cca_distance(x, y)
    assert 0 <= cca_scale.mean_cca_distance(x, y, allow_underdetermined=True) <= 1


@pytest.mark.parametrize("keep", [0, 1.0, -3, "all", True, 1.5])
def test_bad_keep_is_refused(rng, keep):
    x, y = make_pair(rng)
    with pytest.raises(ValueError, match="'keep' parameter"):
        cca_scale.svcca_distance(x, y, keep=keep)


def test_aligned_metrics_need_same_width(rng):
    x, y = make_pair(rng, dx=5, dy=6)
    with pytest.raises(ValueError, match="same number of neurons.*5 and 6"):
        cca_scale.cosine_distance(x, y)


def test_integer_activations_are_accepted_as_float(rng):
    x, y = make_pair(rng)
    xi = np.round(x * 100).astype(np.int64)
    assert cca_scale.mean_cca_distance(xi, y) == pytest.approx(
        cca_scale.mean_cca_distance(xi.astype(float), y))


# -- GPU --------------------------------------------------------------------------------------
@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("variant", ["paper", "svcca"])
def test_cupy_matches_numpy(rng, variant):
    import cupy

    x, y = make_pair(rng, n=3000, dx=40, dy=30)
    want = cca_scale.pwcca_distance(x, y, variant=variant)
    got = cca_scale.pwcca_distance(cupy.asarray(x), cupy.asarray(y), variant=variant)
    assert got == pytest.approx(want, abs=1e-8)
    res = cca_scale.cca(cupy.asarray(x), cupy.asarray(y))
    assert isinstance(res.rho, cupy.ndarray)
    np.testing.assert_allclose(res.rho.get(), np.asarray(cca_scale.cca(x, y).rho), atol=1e-9)
    basis = prepare(cupy.asarray(x))
    assert isinstance(basis.q, cupy.ndarray)
