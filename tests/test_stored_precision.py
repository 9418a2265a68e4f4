"""Activations stored in float32 give the rank and distances of the same activations in float64:
directions no larger than rounding to the stored precision could make out of null ones are
dropped by the default tolerance (``stored_noise``), in every factoring route, the one-pair
functions and the engine alike. Properties only."""

import json

import numpy as np
import pytest

import cca_scale
from cca_scale import ActivationStore, StoreConflictError
from cca_scale.core.basis import (
    BasisAccumulator,
    factor_chunks,
    prepare,
    stored_noise,
    stored_roundoff,
)
from cca_scale.engine.tasks import prepare_task
from conftest import counting_tsqr

U32 = np.finfo(np.float32).eps / 2


@pytest.fixture(scope="module")
def softmax_layers():
    """Four float64 softmax layers over 10 classes (rank 9: rows sum to 1) of one input set."""
    rng = np.random.default_rng(11)
    n = 3000
    z = rng.standard_normal((n, 6))
    out = []
    for k in range(4):
        a = z @ rng.standard_normal((6, 10)) + 0.5 * rng.standard_normal((n, 10))
        e = np.exp(a - a.max(axis=1, keepdims=True))
        out.append(e / e.sum(axis=1, keepdims=True))
    return out


def test_stored_roundoff_is_half_the_machine_epsilon():
    assert stored_roundoff(np.float32) == U32
    assert stored_roundoff("float64") == np.finfo(np.float64).eps / 2
    assert stored_roundoff(np.float16) == np.finfo(np.float16).eps / 2
    assert stored_roundoff(np.int64) == 0.0  # integers are exact


def test_float32_softmax_rows_have_the_float64_rank_and_distances(softmax_layers):
    x64, y64 = softmax_layers[:2]
    x32, y32 = x64.astype(np.float32), y64.astype(np.float32)
    # float32 rounding leaves the sum-to-1 direction live at about 1e-8 of the largest, far above
    # float64's default tolerance: only the stored precision says it is null
    s = np.linalg.svd(x32.astype(np.float64) - x32.mean(axis=0, dtype=np.float64),
                      compute_uv=False)
    assert 1e-10 < s[-1] / s[0] < 1e-7
    assert prepare(x64).rank == prepare(x32).rank == 9
    assert prepare(x32).n_rounding == 1 and prepare(x64).n_rounding == 0
    for fn in (cca_scale.pwcca_distance, cca_scale.mean_cca_distance):
        assert abs(fn(x32, y32) - fn(x64, y64)) < 1e-6, fn.__name__
    # keeping the rounding direction moves these distances by far more than that
    kept = cca_scale.mean_cca_distance(x32.astype(np.float64), y32.astype(np.float64))
    assert abs(kept - cca_scale.mean_cca_distance(x64, y64)) > 1e-3


def _near_null_pair(rng, ratio, n=4000):
    """Float64 layer of 6 units whose unit 5 is unit 0 plus ``delta * z``: one direction of
    singular value ``ratio`` times what rounding the layer to float32 could make of a null one
    (``U32 * (||x_0|| + ||x_5||) / sqrt(2)``, its direction being ``(e_0 - e_5) / sqrt(2)``)."""
    x = rng.standard_normal((n, 6)) @ rng.standard_normal((6, 6)) + rng.uniform(1, 3, size=6)
    x[:, 5] = x[:, 0]
    z = rng.standard_normal(n)
    z -= z.mean()
    bound = U32 * 2 * np.linalg.norm(x[:, 0]) / np.sqrt(2)
    x[:, 5] = x[:, 0] + ratio * bound / (np.linalg.norm(z) / np.sqrt(2)) * z
    return x


@pytest.mark.parametrize("ratio,kept", [(0.5, False), (2.0, True)])
def test_the_rounding_floor_is_the_documented_bound_in_every_route(ratio, kept):
    x = _near_null_pair(np.random.default_rng(3), ratio)
    chunks = lambda: (x[s:s + 700] for s in range(0, len(x), 700))  # noqa: E731
    acc = BasisAccumulator(stored_dtype=np.float32)
    for c in chunks():
        acc.update(c)
    bases = {"svd": prepare(x, stored_dtype=np.float32),
             "streamed": factor_chunks(chunks, stored_dtype=np.float32), "tsqr": acc.finalize()}
    for route, basis in bases.items():
        assert basis.rank == (6 if kept else 5), route
        assert basis.n_rounding == (0 if kept else 1), route
    # float64 storage, or a tolerance given by the caller, keeps the direction in every route
    assert prepare(x).rank == 6 and factor_chunks(chunks).rank == 6
    assert prepare(x, stored_dtype=np.float32, rtol=1e-12).rank == 6


def test_the_noise_of_a_direction_is_that_of_the_neurons_it_is_made_of():
    vt = np.array([[1.0, 0.0, 0.0], [0.0, 0.6, -0.8]])
    norms2 = np.array([4.0, 9.0, 16.0])
    np.testing.assert_allclose(stored_noise(vt, norms2, 0.5), [0.5 * 2.0, 0.5 * (1.8 + 3.2)])


def test_a_unit_firing_once_far_below_the_others_is_not_rounding():
    """Its direction is ~1e-8 of the largest, below a floor taken over the whole layer
    (``U32 * ||X||_F``), but rounding it to float32 changes it by ``U32`` times itself only."""
    rng = np.random.default_rng(5)
    x = np.maximum(rng.standard_normal((2000, 8)) @ rng.standard_normal((8, 8)), 0)
    x[:, 7] = 0.0
    x[17, 7] = 3e-7
    x32 = x.astype(np.float32)
    whole = U32 * np.linalg.norm(x32.astype(np.float64))
    s = np.linalg.svd(x32 - x32.mean(axis=0), compute_uv=False)
    assert s[-1] < whole  # a floor over the whole layer would drop it
    assert prepare(x32).rank == 8 and prepare(x32).n_rounding == 0


def test_engine_equals_one_pair_on_float32_softmax_layers(client, softmax_layers, tmp_path):
    layers = [x.astype(np.float32) for x in softmax_layers]
    store = ActivationStore.create(tmp_path / "acts.zarr", n_datapoints=len(layers[0]))
    for k, x in enumerate(layers):
        store.add(f"n{k}", "softmax", x, chunk_rows=700)
    streamed = prepare_task(store.reader("n0", "softmax"))
    assert streamed.rank == 9 and streamed.n_rounding == 1
    d = cca_scale.compare(tmp_path / "acts.zarr", layer="softmax", out=tmp_path / "o.zarr",
                          client=client, metric=["pwcca", "mean_cca"])
    for metric, fn in (("pwcca", cca_scale.pwcca_distance),
                       ("mean_cca", cca_scale.mean_cca_distance)):
        got = d[metric]
        assert np.all(got.diagnostics["rank_row"][~np.eye(4, dtype=bool)] == 9)
        for i in range(4):
            for j in range(4):
                if i != j:
                    assert abs(got.values[i, j] - fn(layers[i], layers[j])) < 1e-9
                    assert abs(got.values[i, j] - fn(softmax_layers[i],
                                                     softmax_layers[j])) < 1e-6
    svcca = cca_scale.compare(tmp_path / "acts.zarr", layer="softmax", out=tmp_path / "v.zarr",
                              client=client, variant="svcca")
    one = cca_scale.pwcca_distance(layers[0], layers[1], variant="svcca")
    assert abs(svcca.values[0, 1] - one) < 1e-9


def _drop_rank_floor(out):
    doc = json.loads((out / "zarr.json").read_text())
    params = doc["attributes"]["cca_scale"]["params"]
    assert params.pop("rank_floor") == "stored precision"
    (out / "zarr.json").write_text(json.dumps(doc))


def test_an_output_from_before_the_floor_is_not_resumed_on_float32_inputs(client, softmax_layers,
                                                                          tmp_path):
    for dtype in (np.float32, np.float64):
        acts = tmp_path / f"{np.dtype(dtype).name}.zarr"
        store = ActivationStore.create(acts, n_datapoints=len(softmax_layers[0]))
        for k, x in enumerate(softmax_layers[:3]):
            store.add(f"n{k}", "softmax", x.astype(dtype))
        out = tmp_path / f"o{np.dtype(dtype).name}.zarr"
        cca_scale.compare(acts, layer="softmax", out=out, client=client)
        params = cca_scale.load_distances(out).metadata
        if dtype == np.float64:  # nothing to record: older outputs resume as before
            assert "rank_floor" not in json.dumps(params)
            cca_scale.compare(acts, layer="softmax", out=out, client=client)
            continue
        _drop_rank_floor(out)
        with pytest.raises(StoreConflictError, match="older cca_scale.*--overwrite"):
            cca_scale.compare(acts, layer="softmax", out=out, client=client)
        d = cca_scale.compare(acts, layer="softmax", out=out, client=client, overwrite=True)
        assert d.complete


def test_a_layer_varying_only_within_its_rounding_is_refused_with_what_to_do(tmp_path):
    """Values of 100 that differ by 3e-6 (float32's spacing there is 7.6e-6): what float32 keeps
    of their spread is rounding, in every direction."""
    rng = np.random.default_rng(9)
    exact = 100.0 + 3e-6 * rng.standard_normal((2000, 4))
    x = exact.astype(np.float32)
    assert len(np.unique(x[:, 0])) <= 5  # a few float32 steps around 100
    with pytest.raises(cca_scale.ActivationError, match="rounding of its stored precision.*"
                       "float64"):
        prepare(x)
    store = ActivationStore.create(tmp_path / "acts.zarr", n_datapoints=len(x))
    store.add("net7", "fc", x)
    with pytest.raises(cca_scale.ActivationError, match="net7.*fc.*rounding of its stored"):
        prepare_task(store.reader("net7", "fc"))
    # what the message advises: centred before it is stored in float32, the layer keeps its 4
    centred = prepare((exact - exact.mean(axis=0)).astype(np.float32))
    assert centred.rank == 4 and centred.n_rounding == 0


@pytest.mark.parametrize("damage", ["duplicate", "collinear"])
def test_small_float32_layers_with_null_directions_are_certified_without_the_tsqr(monkeypatch,
                                                                                  damage):
    """At 600 datapoints the rank tolerance alone is too fine to certify null directions from
    the refined pass (float64 storage takes the TSQR, ``test_read_once``); float32 storage
    bounds every direction's rounding from below by ``U32 * min_j ||x_j||``, which is enough:
    the TSQR's basis, without the TSQR."""
    rng = np.random.default_rng(21)
    x = np.maximum(rng.standard_normal((600, 4)) @ rng.standard_normal((4, 12))
                   + 0.5 * rng.standard_normal((600, 12)), 0.0)
    if damage == "duplicate":
        x[:, 7] = x[:, 2]
    else:
        x[:, 7] = 2 * x[:, 2] - x[:, 5]
    x = x.astype(np.float32).astype(np.float64)  # the values a float32 store holds
    chunks = lambda: (x[s:s + 200] for s in range(0, 600, 200))  # noqa: E731
    acc = BasisAccumulator(dtype="float64", stored_dtype=np.float32)
    for c in chunks():
        acc.update(c)
    want = acc.finalize()
    seen = counting_tsqr(monkeypatch)
    got = factor_chunks(chunks, stored_dtype=np.float32)
    assert not seen
    assert got.rank == want.rank == 11
    np.testing.assert_allclose(got.s, want.s, rtol=1e-12)
    q = (x - got.mean) @ got.whitener
    q_t = (x - want.mean) @ want.whitener
    np.testing.assert_allclose(np.linalg.svd(q.T @ q_t, compute_uv=False), 1.0, atol=1e-12)
    factor_chunks(chunks)  # stored as float64, the same layer takes the TSQR
    assert seen
