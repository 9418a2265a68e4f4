"""Degenerate layers: duplicated, collinear and dead units, low rank plus tiny noise, few
datapoints, float32 input, ill-posed pairs. Every metric stays finite and in range, the one-pair
functions and the engine's tile task agree, and ``variant='svcca'`` reproduces the original
implementation wherever the original is defined (checked against a transcription of it below).

All inputs are seeded. Where the original is defined or not can depend on rounding (that is the
point of these inputs), so no test assumes either outcome: each case is routed by what the
transcription does on this machine, and each branch asserts its own property.
"""

import logging
import warnings

import numpy as np
import pytest

import cca_scale
from cca_scale import ActivationStore
from cca_scale.core import compare, prepare
from cca_scale.engine.output import ComparisonOutput
from cca_scale.engine.results import load_distances
from cca_scale.engine.tasks import TileSpec, prepare_task, tile_task
from cca_scale.engine.tiles import iter_tiles

EPS = 1e-10  # the svcca variant's epsilon, as the original's tutorials pass it
TIGHT = 1e-10  # one-pair vs engine where both compute the same stable quantity
ORIGINAL_TOL = 1e-12  # one-pair vs the original where the original is defined


# -- test oracle: the original implementation ------------------------------------------------
# A transcription of google/svcca at commit 1f3fbf1: cca_core.get_cca_similarity (the parts
# compute_pwcca uses, epsilon passed through, compute_dirns=False) and pwcca.compute_pwcca,
# with the upstream PR #9 fix (the else branch indexes acts2, not acts1). Activations are
# (neurons, datapoints) as the original takes them. Same NumPy calls in the same order, so its
# SVD signs are the original's. One further fix, which cca_scale makes too and documents:
# ``fix_means`` adds back the means of the KEPT neurons only (the original broadcasts the means of
# all neurons against the kept ones and raises a ValueError as soon as a neuron is dropped).
# This is a test oracle only, never imported by the library.
def _original_sqrtm(array):
    w, v = np.linalg.eigh(array)
    wsqrt = np.sqrt(w)  # NaN (and a RuntimeWarning) for a negative eigenvalue, as the original
    return np.dot(v, np.dot(np.diag(wsqrt), np.conj(v).T))


def original_get_cca(acts1, acts2, epsilon):
    numx = acts1.shape[0]
    covariance = np.cov(acts1, acts2)
    sigmaxx = covariance[:numx, :numx]
    sigmaxy = covariance[:numx, numx:]
    sigmayy = covariance[numx:, numx:]
    xmax = np.max(np.abs(sigmaxx))
    ymax = np.max(np.abs(sigmayy))
    sigmaxx /= xmax
    sigmayy /= ymax
    sigmaxy /= np.sqrt(xmax * ymax)
    x_idxs = np.abs(np.diagonal(sigmaxx)) >= epsilon
    y_idxs = np.abs(np.diagonal(sigmayy)) >= epsilon
    sigmaxx = sigmaxx[x_idxs][:, x_idxs]
    sigmaxy = sigmaxy[x_idxs][:, y_idxs]
    sigmayy = sigmayy[y_idxs][:, y_idxs]
    sigmaxx += epsilon * np.eye(sigmaxx.shape[0])
    sigmayy += epsilon * np.eye(sigmayy.shape[0])
    invsqrt_xx = _original_sqrtm(np.linalg.pinv(sigmaxx))
    invsqrt_yy = _original_sqrtm(np.linalg.pinv(sigmayy))
    arr = np.dot(invsqrt_xx, np.dot(sigmaxy, invsqrt_yy))
    u, s, v = np.linalg.svd(arr)  # LinAlgError ("SVD did not converge") on NaN
    return {"coef_x": u.T, "coef_y": v, "cca_coef1": np.abs(s), "cca_coef2": np.abs(s),
            "x_idxs": x_idxs, "y_idxs": y_idxs,
            "neuron_means1": np.mean(acts1, axis=1, keepdims=True),
            "neuron_means2": np.mean(acts2, axis=1, keepdims=True)}


def original_compute_pwcca(acts1, acts2, epsilon=EPS, fix_means=True):
    """The original's similarity ``sum(weights * coefs)``, and its correlations."""
    r = original_get_cca(acts1, acts2, epsilon)
    m1, m2 = r["neuron_means1"], r["neuron_means2"]
    if fix_means:
        m1, m2 = m1[r["x_idxs"]], m2[r["y_idxs"]]
    if np.sum(r["x_idxs"]) <= np.sum(r["y_idxs"]):
        dirns = np.dot(r["coef_x"], acts1[r["x_idxs"]] - m1) + m1
        coefs, acts, idxs = r["cca_coef1"], acts1, r["x_idxs"]
    else:
        dirns = np.dot(r["coef_y"], acts2[r["y_idxs"]] - m2) + m2  # PR #9: acts2
        coefs, acts, idxs = r["cca_coef2"], acts2, r["y_idxs"]
    p, _ = np.linalg.qr(dirns.T)
    weights = np.sum(np.abs(np.dot(p.T, acts[idxs].T)), axis=1)
    weights = weights / np.sum(weights)
    return np.sum(weights * coefs), coefs


def original_distance(x, y, epsilon=EPS):
    """``1 - similarity`` of the original on (datapoints, neurons) layers, or None where it is
    undefined (NaN or LinAlgError). Also returns whether its correlations stay in [0, 1]."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            sim, rho = original_compute_pwcca(np.asarray(x, np.float64).T,
                                              np.asarray(y, np.float64).T, epsilon)
        except np.linalg.LinAlgError:
            return None, False
    if not np.isfinite(sim) or not np.all(np.isfinite(rho)):
        return None, False
    return float(1.0 - sim), bool(np.max(rho) <= 1.0)


# -- degenerate layers ------------------------------------------------------------------------
CLASSES = ("dup1", "dup2", "collinear", "dead", "lowrank", "n_above_d", "float32", "scaled")
#: Layer widths per class: the first two share a width (cosine and Euclidean compare those).
WIDTHS = {"n_above_d": (3, 3, 12, 2)}
DEFAULT_WIDTHS = (9, 9, 6, 12)


def degenerate_layer(rng, z, d, kind, k=0):
    """Layer ``k`` of width ``d`` driven by the shared latents ``z``, degenerate by ``kind``."""
    n = z.shape[0]
    if kind == "lowrank":
        # Exact rank 3 plus 1e-6 noise. Latents 3:6 and 6:9: partly shared with the plain layers
        # (0:5, plus their own noise), never with the other low-rank layer, so no two layers
        # share an exact direction (that would tie correlations at 1; see the ill-posed tests).
        start = 3 + 3 * (k // 2)
        x = z[:, start:start + 3] @ rng.normal(size=(3, d)) + 1e-6 * rng.normal(size=(n, d))
        return x + rng.uniform(-2, 4, size=d)
    x = z[:, :5] @ rng.normal(size=(5, d)) + 0.5 * rng.normal(size=(n, d))
    x += rng.uniform(-2, 4, size=d)
    if kind in ("dup1", "float32"):
        x[:, -1] = x[:, 0]
    elif kind == "dup2":
        x[:, -2:] = x[:, :2]
    elif kind == "collinear":
        x[:, -1] = 0.7 * x[:, 0] - 1.3 * x[:, 1] + 2.0
    elif kind == "dead":
        x[:, 1] = 0.0
        x[:, -1] = 3.25
    elif kind == "scaled":  # units over 4 decades and a dead one: the refined Gram path
        x *= np.geomspace(1.0, 1e-4, d)[rng.permutation(d)]
        x[:, 2] = 0.0
    if kind == "float32":
        x[:, 1] = 0.0
    if kind.startswith("float32"):  # ReLU layers stored in float32
        x = np.maximum(x, 0).astype(np.float32)
    return x


def degenerate_layers(kind, seed):
    """Four layers of one class; every second one is degenerate (``lowrank``: the first and
    third), the others plain, so that degenerate layers meet both kinds."""
    rng = np.random.default_rng(seed)
    widths = WIDTHS.get(kind, DEFAULT_WIDTHS)
    n = max(widths) + 4 if kind == "n_above_d" else int(rng.integers(300, 700))
    z = rng.normal(size=(n, 9))
    plain = "float32plain" if kind == "float32" else "plain"
    return [degenerate_layer(rng, z, d, kind if k % 2 == 0 else plain, k)
            for k, d in enumerate(widths)]


def one_pair(metric, variant, x, y, **kw):
    fn = {"pwcca": lambda a, b: cca_scale.pwcca_distance(a, b, variant=variant, **kw),
          "mean_cca": cca_scale.mean_cca_distance,
          "svcca": lambda a, b: cca_scale.svcca_distance(a, b, keep=0.99),
          "cka": cca_scale.cka_distance, "cosine": cca_scale.cosine_distance,
          "euclidean": cca_scale.euclidean_distance}[metric]
    return fn(x, y)


def engine_matrix(path, layers, *, metric, variant="paper", keep=0.99, dtype="float64"):
    """All ordered pairs through the engine's own tile task, in process (no Dask): bases streamed
    by ``prepare_task``, one tile, cross products accumulated chunk by chunk, written to and read
    back from a comparison output."""
    path.mkdir(parents=True, exist_ok=True)
    n = layers[0].shape[0]
    store = ActivationStore.create(path / "acts.zarr", n_datapoints=n)
    names = [f"m{k}" for k in range(len(layers))]
    for name, x in zip(names, layers):
        store.add(name, "h", x, chunk_rows=max(2, n // 3))
    readers = [store.reader(name, "h") for name in names]
    bases = [prepare_task(r, dtype=dtype, backend="numpy") for r in readers]
    records = [{"label": name, "write_id": r.write_id} for name, r in zip(names, readers)]
    out, _, tile = ComparisonOutput.open_for_run(
        path / "out.zarr", params={"metric": metric}, rows=records, cols=records, square=True,
        tile=len(layers), default_tile=len(layers), overwrite=False, extra_meta={})
    (only_tile,) = iter_tiles(len(layers), len(layers), tile, square=True)
    spec = TileSpec(out_path=out.path, tile=only_tile, row_readers=tuple(readers),
                    col_readers=tuple(readers), metric=metric, variant=variant, keep=keep,
                    epsilon=EPS, dtype=dtype, backend="numpy", chunk_rows=max(2, n // 4))
    tile_task(spec, bases, bases)
    out.release()
    return load_distances(path / "out.zarr")


def svcca_variant_sign_tie(a, b) -> bool:
    """The stable svcca-variant value moves when the datapoints are reordered (which changes only
    rounding): one of its SVD signs sits on a rounding tie, as on about 1 plain pair in 200-400
    (README). Two routes may then legitimately differ; such a pair is checked for range only."""
    perm = np.random.default_rng(0).permutation(len(a))
    values = [compare(prepare(p), prepare(q), metric="pwcca", variant="svcca").forward
              for p, q in ((a, b), (a[perm], b[perm]))]
    return abs(values[0] - values[1]) > 1e-9


METRIC_CASES = [("pwcca", "paper"), ("pwcca", "svcca"), ("mean_cca", "paper"),
                ("svcca", "paper"), ("cka", "paper"), ("cosine", "paper"),
                ("euclidean", "paper")]
SYMMETRIC = ("mean_cca", "svcca", "cka", "cosine", "euclidean")


@pytest.mark.parametrize("kind", CLASSES)
@pytest.mark.parametrize("metric,variant", METRIC_CASES)
def test_every_metric_is_finite_in_range_and_engine_equals_one_pair(tmp_path, kind, metric,
                                                                     variant):
    layers = degenerate_layers(kind, seed=CLASSES.index(kind))
    idx = range(len(layers)) if metric not in ("cosine", "euclidean") else range(2)
    layers = [layers[i] for i in idx]
    d = engine_matrix(tmp_path, layers, metric=metric, variant=variant)
    assert d.complete and np.all(np.isfinite(d.values))
    assert d.n_ill_posed == 0  # every class here is well-posed (ill-posed: tested below)
    for i in range(len(layers)):
        for j in range(len(layers)):
            if i == j:
                assert d.values[i, j] == 0.0
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                got = one_pair(metric, variant, layers[i], layers[j])
            assert np.isfinite(got)
            if metric == "euclidean":
                assert got >= 0.0
            elif metric == "cosine":
                # 1 - cos lies in [0, 2]; these layers are non-negative (cos >= 0) only for float32
                assert -1e-12 <= got <= (1.0 if kind == "float32" else 2.0) + 1e-12
            else:
                assert -1e-12 <= got <= 1.0 + 1e-12
            if (metric, variant) == ("pwcca", "svcca") and svcca_variant_sign_tie(layers[i],
                                                                                 layers[j]):
                continue
            rounding_dependent = any(issubclass(w.category, RuntimeWarning) for w in caught)
            if (metric, variant) == ("pwcca", "svcca") and rounding_dependent:
                # The original is defined here but its value depends on rounding (arbitrary SVD
                # signs); the one-pair function returns it and says so; the engine returns the
                # stable value, which equals the core's basis route.
                a, b = prepare(layers[i]), prepare(layers[j])
                want = compare(a, b, metric="pwcca", variant="svcca", epsilon=EPS).forward
                assert d.values[i, j] == pytest.approx(want, abs=TIGHT)
                continue
            tol = 1e-9 if (metric, variant) == ("pwcca", "svcca") else TIGHT
            scale = max(1.0, abs(got)) if metric == "euclidean" else 1.0
            assert d.values[i, j] == pytest.approx(got, abs=tol * scale), (i, j)
            if metric in SYMMETRIC:
                assert one_pair(metric, variant, layers[j], layers[i]) == pytest.approx(
                    got, abs=TIGHT * scale)


@pytest.mark.parametrize("kind", CLASSES)
@pytest.mark.parametrize("seed", range(3))
def test_svcca_variant_matches_the_original_where_it_is_defined(kind, seed):
    layers = degenerate_layers(kind, seed=100 + 10 * CLASSES.index(kind) + seed)
    x, y = layers[0], layers[1]
    for a, b in ((x, y), (y, x)):
        want, in_range = original_distance(a, b)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            got = cca_scale.pwcca_distance(a, b, variant="svcca")
        assert np.isfinite(got) and 0.0 <= got <= 1.0 + 1e-12
        if want is not None and in_range:
            assert got == pytest.approx(want, abs=ORIGINAL_TOL)
        else:  # undefined there (NaN, LinAlgError, or a correlation above 1): the stable value
            ba, bb = prepare(a), prepare(b)
            stable = compare(ba, bb, metric="pwcca", variant="svcca", epsilon=EPS).forward
            assert got == pytest.approx(stable, abs=TIGHT)


def test_issue_example_is_in_range_and_engine_agrees(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 8))
    x[:, 6:] = x[:, :2]
    y = x @ rng.normal(size=(8, 4)) + rng.normal(size=(2000, 4))
    assert cca_scale.pwcca_distance(x, y) == pytest.approx(0.2546, abs=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        got = [cca_scale.pwcca_distance(a, b, variant="svcca") for a, b in ((x, y), (y, x))]
    assert all(0.0 <= g <= 1.0 for g in got)
    res = compare(prepare(x), prepare(y), metric="pwcca", variant="svcca")
    d = engine_matrix(tmp_path, [x, y], metric="pwcca", variant="svcca")
    assert d.values[0, 1] == pytest.approx(res.forward, abs=TIGHT)
    assert d.values[1, 0] == pytest.approx(res.backward, abs=TIGHT)
    assert 0.0 <= res.rho_min <= res.rho_max <= 1.0
    for k, (a, b) in enumerate(((x, y), (y, x))):
        if original_distance(a, b)[0] is None:  # the original fails: one-pair == engine
            assert got[k] == pytest.approx(d.values[k, 1 - k], abs=TIGHT)


def test_stable_svcca_variant_follows_the_original_near_a_duplicate():
    # x's last two units are copies of its first two plus 0.1 noise: well-conditioned, and the
    # stable route (the engine's) equals the original; exact copies: the original fails and the
    # value is the stable one, in [0, 1].
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 8))
    x[:, 6:] = x[:, :2]
    y = x @ rng.normal(size=(8, 4)) + rng.normal(size=(2000, 4))
    near = x.copy()
    near[:, 6:] += 0.1 * np.random.default_rng(5).normal(size=(2000, 2))
    for a, b in ((near, y), (y, near)):
        stable = compare(prepare(a), prepare(b), metric="pwcca", variant="svcca").forward
        assert stable == pytest.approx(original_distance(a, b)[0], abs=1e-9)


@pytest.mark.parametrize("kind", ["dup1", "dup2", "collinear", "lowrank"])
def test_svcca_variant_on_degenerate_layers_does_not_depend_on_rounding(kind):
    # Reordering the datapoints changes every rounding error and nothing else. The original's
    # value can move (its SVD signs are decided by rounding on such layers); the stable value,
    # which the engine returns, does not.
    layers = degenerate_layers(kind, seed=7)
    perm = np.random.default_rng(1).permutation(layers[0].shape[0])
    # Exact degeneracy is cut exactly; 1e-6 noise directions are kept, and a float64 value built
    # on directions 1e6 times weaker than the signal carries rounding of ~1e-16 * 1e6.
    tol = 1e-9 if kind == "lowrank" else TIGHT
    for a, b in ((layers[0], layers[2]), (layers[2], layers[0]), (layers[0], layers[1]),
                 (layers[1], layers[0])):
        want = compare(prepare(a), prepare(b), metric="pwcca", variant="svcca").forward
        got = compare(prepare(a[perm]), prepare(b[perm]), metric="pwcca", variant="svcca").forward
        assert got == pytest.approx(want, abs=tol)
        assert 0.0 <= want <= 1.0


# -- CKA with fewer datapoints than neurons ---------------------------------------------------
def test_cka_and_baselines_need_no_opt_in_when_n_le_d(rng):
    x = rng.normal(size=(12, 30)) + 1.0
    y = x[:, :20] @ rng.normal(size=(20, 25)) + 0.3 * rng.normal(size=(12, 25))
    xc, yc = x - x.mean(0), y - y.mean(0)
    kx, ky = xc @ xc.T, yc @ yc.T  # n x n: the kernel form of linear CKA
    want = 1 - np.sum(kx * ky) / (np.linalg.norm(kx) * np.linalg.norm(ky))
    assert cca_scale.cka_distance(x, y) == pytest.approx(want, abs=1e-12)
    assert cca_scale.cka_distance(x, y, allow_underdetermined=True) == cca_scale.cka_distance(x, y)
    z = rng.normal(size=(12, 30))
    assert cca_scale.cosine_distance(x, z) == pytest.approx(
        1 - np.sum(x * z) / (np.linalg.norm(x) * np.linalg.norm(z)), abs=1e-12)
    assert cca_scale.euclidean_distance(x, z) == pytest.approx(
        np.sqrt(np.sum((x - z) ** 2) / 12), rel=1e-12)
    for fn in (cca_scale.pwcca_distance, cca_scale.mean_cca_distance, cca_scale.svcca_distance,
               lambda a, b: cca_scale.pwcca_distance(a, b, variant="svcca")):
        with pytest.raises(cca_scale.ActivationError, match="12 datapoints for 30 neurons"):
            fn(x, y)


# -- ill-posed pairs --------------------------------------------------------------------------
def _ill_posed_pair(rng, n=70, d=64):
    z = rng.normal(size=(n, 10))
    return [z @ rng.normal(size=(10, d)) + 0.5 * rng.normal(size=(n, d)) for _ in range(2)]


@pytest.mark.parametrize("fn", [
    lambda x, y: cca_scale.pwcca_distance(x, y),
    lambda x, y: cca_scale.pwcca_distance(x, y, variant="svcca"),
    lambda x, y: cca_scale.mean_cca_distance(x, y),
    lambda x, y: cca_scale.svcca_distance(x, y, keep=64),
    lambda x, y: cca_scale.cca(x, y),
], ids=["pwcca", "pwcca-svcca", "mean_cca", "svcca", "cca"])
def test_ill_posed_cca_warns_with_ranks_and_n(rng, fn):
    x, y = _ill_posed_pair(rng)
    with pytest.warns(cca_scale.IllPosedWarning,
                      match=r"64 \+ 64 = 128 > n_datapoints - 1 = 69, so at least 59 canonical"
                            r".*more datapoints") as caught:
        fn(x, y)
    assert caught[0].filename == __file__  # attributed to the caller


def test_well_posed_and_baseline_metrics_do_not_warn(rng):
    x, y = _ill_posed_pair(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error", cca_scale.IllPosedWarning)
        cca_scale.cka_distance(x, y)
        cca_scale.cosine_distance(x, y)
        cca_scale.svcca_distance(x, y, keep=30)  # 30 + 30 <= 69
        cca_scale.pwcca_distance(x[:, :34], y[:, :35])  # 34 + 35 = 69: the boundary, well-posed


def test_engine_flags_ill_posed_pairs_and_matrix_counts_them(tmp_path, rng):
    x, y = _ill_posed_pair(rng)
    small = x[:, :5]  # 64 + 5 <= 69: well-posed against either
    layers = [x, y, small]
    for metric in ("pwcca", "mean_cca", "cka"):
        d = engine_matrix(tmp_path / metric, layers, metric=metric)
        flags = d.diagnostics["ill_posed"]
        want = np.zeros((3, 3), np.uint8)
        if metric != "cka":
            want[0, 1] = want[1, 0] = 1  # the diagonal is d = 0 by definition: not flagged
        np.testing.assert_array_equal(flags, want)
        assert d.n_ill_posed == int(want.sum())
        assert np.all((d.values >= -1e-12) & (d.values <= 1 + 1e-12))
        if metric != "pwcca":  # correlations, hence mean CCA and CKA, are basis-independent
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", cca_scale.IllPosedWarning)
                fn = cca_scale.mean_cca_distance if metric == "mean_cca" else cca_scale.cka_distance
                assert d.values[0, 1] == pytest.approx(fn(x, y), abs=TIGHT)


def test_ill_posed_line_counts_flagged_pairs():
    flags = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], np.uint8)
    d = cca_scale.DistanceMatrix(np.zeros((3, 3)), ["a", "b", "c"], ["a", "b", "c"],
                                 diagnostics={"ill_posed": flags})
    assert d.n_ill_posed == 2
    assert d.ill_posed_line().startswith("2 of 9 pairs are ill-posed CCA")
    assert cca_scale.DistanceMatrix(np.zeros((1, 1)), ["a"], ["a"]).n_ill_posed == 0


# -- one real comparison on Dask --------------------------------------------------------------
def test_compare_svcca_variant_over_a_store_with_a_degenerate_network(tmp_path, caplog):
    rng = np.random.default_rng(0)
    n = 40
    z = rng.normal(size=(n, 5))
    dup = z @ rng.normal(size=(5, 8)) + 0.5 * rng.normal(size=(n, 8)) + 1.0
    dup[:, 6:] = dup[:, :2]  # two duplicated units: the original's inverse square root fails
    plain = z @ rng.normal(size=(5, 4)) + 0.5 * rng.normal(size=(n, 4)) - 2.0
    other = z @ rng.normal(size=(5, 6)) + 0.5 * rng.normal(size=(n, 6))
    wide = rng.normal(size=(n, 34))  # ranks 34 + 6 > 39: ill-posed against dup and other
    layers = {"dup": dup, "plain": plain, "other": other, "wide": wide}
    store = ActivationStore.create(tmp_path / "acts.zarr", n_datapoints=n)
    for name, x in layers.items():
        store.add(name, "h", x)
    with caplog.at_level(logging.WARNING, logger="cca_scale.engine.compare"):
        d = cca_scale.compare(tmp_path / "acts.zarr", layer="h", n_workers=1, metric="pwcca",
                              variant="svcca", tile=2)
    assert d.complete and np.all((d.values >= 0.0) & (d.values <= 1.0))
    flags = d.diagnostics["ill_posed"]
    assert d.n_ill_posed == int(flags.sum()) == 4  # wide against dup and other, both ways
    assert "4 of 16 pairs are ill-posed CCA" in caplog.text
    names = list(layers)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i == j or flags[i, j] or svcca_variant_sign_tie(layers[a], layers[b]):
                continue
            stable = compare(prepare(layers[a]), prepare(layers[b]), metric="pwcca",
                             variant="svcca").forward
            assert d.values[i, j] == pytest.approx(stable, abs=TIGHT), (a, b)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                one = cca_scale.pwcca_distance(layers[a], layers[b], variant="svcca")
            if original_distance(layers[a], layers[b])[0] is None:
                assert one == pytest.approx(d.values[i, j], abs=TIGHT), (a, b)
            elif not caught:  # the original is defined and stable here: the usual 1e-9 bound
                assert one == pytest.approx(d.values[i, j], abs=1e-9), (a, b)
