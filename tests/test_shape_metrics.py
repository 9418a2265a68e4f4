"""The angular Procrustes shape metric (Williams et al. 2021): equal to netrep's
``LinearMetric(alpha=1, center_columns=True, score_method="angular")``, a true metric, and what
the engine computes for it pair by pair."""

import numpy as np
import pytest

import cca_scale
from cca_scale import ActivationStore
from cca_scale.core.reference import reference_procrustes


def netrep_angular_procrustes(x, y):
    """netrep's ``LinearMetric(alpha=1, center_columns=True, zero_pad=True,
    score_method="angular").fit_score(x, y)``, transcribed step by step as an independent oracle.

    netrep is not a dependency (it is not on PyPI). Its steps for alpha=1: centre each layer's
    columns; whitening with alpha=1 is the identity (``whiten`` returns the layer unchanged); zero-
    pad the narrower layer to the wider's width; align by orthogonal Procrustes (``U, _, Vt =
    svd(X^T Y)``, ``Wx = U``, ``Wy = Vt^T``); score = ``arccos`` of the normalised Frobenius inner
    product of the aligned layers (``angular_distance``), clipped to [-1, 1].
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    width = max(x.shape[1], y.shape[1])
    x = np.pad(x, ((0, 0), (0, width - x.shape[1])))
    y = np.pad(y, ((0, 0), (0, width - y.shape[1])))
    u, _, vt = np.linalg.svd(x.T @ y)
    xa, ya = x @ u, y @ vt.T
    xa, ya = xa.ravel(), ya.ravel()
    corr = np.dot(xa, ya) / (np.linalg.norm(xa) * np.linalg.norm(ya))
    return float(np.arccos(np.clip(corr, -1.0, 1.0)))


def related(rng, n, widths, noise=0.7):
    """Layers sharing a 4-dimensional signal, with noise and non-zero means."""
    z = rng.standard_normal((n, 4))
    return [z @ rng.standard_normal((4, w)) + noise * rng.standard_normal((n, w))
            + rng.normal(size=w) for w in widths]


def rotation(rng, d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize("n,widths", [(300, (8, 5)), (300, (6, 6)), (20, (30, 45)),
                                      (500, (1, 12)), (40, (40, 3))])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_netrep_oracle_and_closed_form(n, widths, seed):
    rng = np.random.default_rng(seed)
    x, y = related(rng, n, widths)
    oracle = netrep_angular_procrustes(x, y)
    # the oracle is checked against the closed form first, then the library against both
    assert oracle == pytest.approx(reference_procrustes(x, y), abs=1e-10)
    assert cca_scale.procrustes_distance(x, y) == pytest.approx(oracle, abs=1e-10)
    assert cca_scale.procrustes_distance(y, x) == pytest.approx(oracle, abs=1e-10)


def test_range_ends():
    """pi/2 for orthogonal centred layers, near 0 for equal ones; never outside [0, pi/2]."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 6))
    x -= x.mean(axis=0)
    q, _ = np.linalg.qr(np.hstack([np.ones((200, 1)), x]))
    y = rng.standard_normal((200, 4)) @ np.eye(4)  # made orthogonal to x and the constant:
    y -= q @ (q.T @ y)
    assert cca_scale.procrustes_distance(x, y) == pytest.approx(np.pi / 2, abs=1e-10)
    values = [cca_scale.procrustes_distance(*related(np.random.default_rng(s), 100, (5, 7),
                                                     noise=s / 5)) for s in range(10)]
    assert all(0.0 <= v <= np.pi / 2 for v in values)


def test_metric_axioms():
    rng = np.random.default_rng(4)
    n = 120
    d = cca_scale.procrustes_distance
    pool = related(rng, n, (5, 7, 9, 5, 12, 3), noise=1.0) + [
        rng.standard_normal((n, w)) for w in (4, 8, 6)]
    for x in pool:  # non-negativity and symmetry
        for y in pool:
            assert d(x, y) >= 0.0
            assert abs(d(x, y) - d(y, x)) <= 1e-12
    # identity: rotation, isotropic scaling and translation leave the shape; the arccos turns
    # rounding of the ratio near 1 into ~sqrt(2 eps) ~ 2e-8, hence the tolerance
    for k, x in enumerate(pool):
        g = np.random.default_rng(10 + k)
        y = 2.5 * x @ rotation(g, x.shape[1]) + g.normal(size=x.shape[1])
        assert d(x, y) <= 1e-6
    # triangle inequality on 30 random triples of the pool and fresh layers
    for t in range(30):
        g = np.random.default_rng(100 + t)
        a, b, c = (pool[i] for i in g.choice(len(pool), 3, replace=False))
        if t % 2:
            a, b, c = related(g, n, tuple(g.integers(2, 10, size=3)), noise=g.uniform(0.1, 2))
        assert d(a, c) <= d(a, b) + d(b, c) + 1e-12


def test_a_shape_metric_is_not_cca():
    """Negative control: an invertible, non-orthogonal map leaves CCA at 0 but not Procrustes."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 6))
    y = x @ np.diag([1.0, 2.0, 5.0, 0.5, 1.0, 3.0])
    assert cca_scale.mean_cca_distance(x, y) < 1e-10
    assert cca_scale.procrustes_distance(x, y) > 0.1


def test_underdetermined_and_unequal_widths_need_no_opt_in():
    rng = np.random.default_rng(6)
    x, y = related(rng, 10, (25, 40))  # n <= d, widths differ
    assert cca_scale.procrustes_distance(x, y) == pytest.approx(
        netrep_angular_procrustes(x, y), abs=1e-10)


def test_engine_equals_one_pair_function(tmp_path):
    rng = np.random.default_rng(7)
    acts = related(rng, 150, (6, 9, 5, 12))
    store = ActivationStore.create(tmp_path / "acts.zarr", n_datapoints=150)
    for k, x in enumerate(acts):
        store.add(f"n{k}", "h", x, attrs={"seed": k})
    D = cca_scale.compare(store, layer="h", metric="procrustes", n_workers=1)
    assert D.metadata["metric"] == "procrustes"
    for i, x in enumerate(acts):
        for j, y in enumerate(acts):
            want = 0.0 if i == j else cca_scale.procrustes_distance(x, y)
            assert D.values[i, j] == pytest.approx(want, abs=1e-10), (i, j)
