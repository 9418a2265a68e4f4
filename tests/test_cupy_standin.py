"""The CuPy path, proven without a GPU.

The core kernels, the tile task and a whole engine comparison run through a CuPy stand-in
(``tests/cupy_standin.py``: NumPy arrays that refuse implicit conversion and mixing with NumPy, and
count device-to-host transfers), give the NumPy path's numbers, and transfer O(1) per tile rather
than O(pairs).
"""

import os
import sys

import numpy as np
import pytest

import cca_scale
import cupy_standin
from cca_scale import ActivationStore
from cca_scale.core import compare, pair_distances, prepare
from cca_scale.core.backend import array_module, synchronize, to_host
from cca_scale.core.basis import factor_chunks
from cca_scale.core.registry import METRICS
from cca_scale.engine.output import ComparisonOutput
from cca_scale.engine.results import load_distances
from cca_scale.engine.tasks import TileSpec, prepare_task, tile_task
from cca_scale.engine.tiles import iter_tiles
from conftest import make_pair

TOL = 1e-12  # float64; the stand-in computes with NumPy, so only the routes can differ
LAYER = "h"
#: Every metric of the registry, PWCCA with both variants.
CASES = [(name, variant) for name in METRICS
         for variant in (("paper", "svcca") if METRICS[name].takes_variant else ("paper",))]
IDS = [f"{m}-{v}" if METRICS[m].takes_variant else m for m, v in CASES]


@pytest.fixture
def cp():
    """``import cupy`` gives the stand-in for one test; counts start at zero."""
    with cupy_standin.installed() as module:
        yield module


def _options(metric, variant):
    return {"variant": variant} if METRICS[metric].takes_variant else {}


# -- the stand-in itself -------------------------------------------------------------------------

def test_standin_is_what_cca_scale_and_array_api_compat_see(cp):
    from array_api_compat import array_namespace, is_cupy_array

    x = cp.asarray(np.arange(6.0).reshape(3, 2))
    assert array_module("cupy") is cp and sys.modules["cupy"] is cp
    assert is_cupy_array(x) and not is_cupy_array(np.ones(2))
    assert array_namespace(x).__name__ == "array_api_compat.cupy"
    synchronize(cp)
    assert cp.COUNTS["synchronize"] == 1
    host = to_host(x)
    assert type(host) is np.ndarray and np.array_equal(host, np.arange(6.0).reshape(3, 2))


def test_standin_is_removed_afterwards():
    with cupy_standin.installed():
        pass
    assert sys.modules.get("cupy") is not cupy_standin.modules()["cupy"]
    from array_api_compat import array_namespace

    assert array_namespace(np.ones(2)).__name__ == "array_api_compat.numpy"


@pytest.mark.parametrize("convert", [np.asarray, np.array, lambda x: x.__array__(),
                                     lambda x: np.zeros(3) + x.sum()],
                         ids=["asarray", "array", "__array__", "scalar-into-host"])
def test_implicit_conversion_to_numpy_is_refused(cp, convert):
    x = cp.asarray(np.ones(3))
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed|"
                                        "Unsupported type"):
        convert(x)


@pytest.mark.parametrize("mix", [
    lambda x, h: x + h, lambda x, h: h + x, lambda x, h: x @ h, lambda x, h: np.add(x, h),
    lambda x, h: np.concatenate([x, h]), lambda x, h: np.dot(h, x),
    lambda x, h: __import__("cupy").sum(h), lambda x, h: __import__("cupy").stack([x, h]),
    lambda x, h: __import__("cupy").asarray([x, h]),
    lambda x, h: __import__("cupy").matmul(x, x, out=h),
    lambda x, h: x.__setitem__(slice(None), h),
], ids=["add", "radd", "matmul", "ufunc", "concatenate", "np-function", "cupy-function",
        "cupy-list", "asarray-list", "out=", "setitem"])
def test_mixing_with_numpy_arrays_is_refused(cp, mix):
    x, h = cp.asarray(np.ones((3, 3))), np.ones((3, 3))
    with pytest.raises(TypeError, match="Unsupported type"):
        mix(x, h)


def test_numpy_functions_on_device_arrays_stay_on_the_device(cp):
    x = cp.asarray(np.arange(4.0))
    for result in (np.sum(x), np.sqrt(x), np.linalg.norm(x), x.mean(), 2.0 * x, x[1],
                   np.float64(2.0) * x):
        assert isinstance(result, cp.ndarray)
    assert cp.COUNTS["d2h"] == 0 and cp.COUNTS["h2d"] == 1


def test_transfers_are_counted_with_their_call_sites(cp):
    x = cp.asarray(np.arange(4.0))
    assert cp.asarray(x) is x  # already on the device: no transfer
    assert cp.asarray([x, x]).shape == (2, 4)  # stacked on the device: no transfer
    s = cp.sum(x)
    values = [x.get(), cp.asnumpy(x), float(s), int(s), bool(s), s.item(), x.tolist()]
    assert [type(v) for v in values] == [np.ndarray, np.ndarray, float, int, bool, float, list]
    kinds = ("get", "asnumpy", "float", "int", "bool", "item", "tolist")
    assert {k: cp.COUNTS[k] for k in kinds} == dict.fromkeys(kinds, 1)
    assert cp.COUNTS["d2h"] == 7 and cp.COUNTS["h2d"] == 1
    (site, count), = cp.D2H_SITES.items()
    assert count == 7 and site.startswith(os.path.abspath(__file__) + ":")
    host = x.get()
    host[0] = 99.0  # a copy, not a view of device memory
    assert float(x[0]) == 0.0


def test_views_and_out_write_device_memory(cp):
    buf = cp.zeros((4, 3))
    a = cp.asarray(np.arange(6.0).reshape(2, 3))
    cp.matmul(cp.asarray(np.eye(2)), a, out=buf[1:3])
    buf[3] += 1.0
    np.testing.assert_array_equal(buf.get(), [[0, 0, 0], [0, 1, 2], [3, 4, 5], [1, 1, 1]])


# -- the core one-pair path ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def pair():
    x, y = make_pair(np.random.default_rng(13), n=400, dx=9, dy=9)
    x[:, 2] = 0.0  # a dead unit: rank 8 < 9
    return x, y


@pytest.mark.parametrize("metric,variant", CASES, ids=IDS)
def test_core_pair_on_device_equals_numpy(cp, pair, metric, variant):
    x, y = pair
    a, b = prepare(x), prepare(y)
    da, db = prepare(cp.asarray(x)), prepare(cp.asarray(y))
    assert isinstance(da.q, cp.ndarray) and isinstance(da.s, cp.ndarray)
    assert (da.rank, db.rank) == (a.rank, b.rank) == (8, 9)
    kw = _options(metric, variant)
    want = compare(a, b, metric=metric, **kw)
    for got in (compare(da, db, metric=metric, **kw),
                pair_distances(da.q.T @ db.q, da, db, metric=metric, **kw)):
        assert isinstance(got.forward, float) and isinstance(got.backward, float)
        np.testing.assert_allclose([got.forward, got.backward], [want.forward, want.backward],
                                   rtol=0, atol=TOL)
        np.testing.assert_allclose([got.rho_max, got.rho_min], [want.rho_max, want.rho_min],
                                   rtol=0, atol=TOL)
        assert (got.rank_a, got.rank_b, got.ill_posed) == (want.rank_a, want.rank_b,
                                                           want.ill_posed)


@pytest.mark.parametrize("variant", ["paper", "svcca"])
def test_public_one_pair_functions_take_device_arrays(cp, pair, variant):
    x, y = pair
    got = cca_scale.pwcca_distance(cp.asarray(x), cp.asarray(y), variant=variant)
    assert abs(got - cca_scale.pwcca_distance(x, y, variant=variant)) <= TOL
    res = cca_scale.cca(cp.asarray(x), cp.asarray(y))
    assert isinstance(res.rho, cp.ndarray)
    np.testing.assert_allclose(res.rho.get(), cca_scale.cca(x, y).rho, rtol=0, atol=TOL)


@pytest.mark.parametrize("route", ["gram", "dead units", "refined", "certified null",
                                   "floored live", "tsqr", "float32 rounding"])
def test_factoring_on_device_equals_numpy_on_every_route(cp, rng, route):
    """:func:`factor_chunks` on device chunks, through each of its routes: the Gram path (with
    constant units set aside), the refined second pass (ill-conditioned, null directions
    certified, a live direction beyond condition 1e6 resolved), and the TSQR (a live direction
    near the pass' noise), and directions within rounding to a float32 store dropped."""
    x = np.maximum(rng.normal(size=(3000, 3)) @ rng.normal(size=(3, 12))
                   + 0.6 * rng.normal(size=(3000, 12)), 0.0)
    if route == "dead units":
        x[:, [2, 9]] = 0.0
    elif route == "refined":
        x[:, 4] *= 1e-4
    elif route == "certified null":
        x[:, 7] = x[:, 0]
    elif route == "floored live":
        x[:, 4] *= 1e-8
    elif route == "tsqr":
        x[:, 4] *= 3e-11
    stored = np.float64
    if route == "float32 rounding":  # a unit stored as the sum of two others, in float32
        x[:, 5] = x[:, 0] + x[:, 1]
        stored = np.float32
        x = x.astype(stored).astype(np.float64)
    want = factor_chunks(lambda: (x[s:s + 500] for s in range(0, 3000, 500)), stored_dtype=stored)
    got = factor_chunks(lambda: (cp.asarray(x[s:s + 500]) for s in range(0, 3000, 500)),
                        stored_dtype=stored)
    assert isinstance(got.vt, cp.ndarray)
    got = got.to(np)
    assert got.rank == want.rank
    assert got.n_rounding == want.n_rounding == (route == "float32 rounding")
    for name in ("s", "vt", "mean"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=0, atol=TOL)


# -- the tile task -------------------------------------------------------------------------------

N_NETWORKS, N_DATAPOINTS, WIDTH = 6, 240, 6


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Six networks of one layer (equal widths, so the aligned metrics apply too; one network
    with a dead unit), stored in chunks of 80 datapoints."""
    rng = np.random.default_rng(2026)
    path = tmp_path_factory.mktemp("standin") / "acts.zarr"
    z = rng.normal(size=(N_DATAPOINTS, 3))
    acts = ActivationStore.create(path, n_datapoints=N_DATAPOINTS)
    for k in range(N_NETWORKS):
        x = z @ rng.normal(size=(3, WIDTH)) + 0.6 * rng.normal(size=(N_DATAPOINTS, WIDTH))
        x = np.maximum(x + rng.uniform(-0.5, 1.0, size=WIDTH), 0.0)
        if k == 1:
            x[:, 0] = 0.0
        acts.add(f"n{k}", LAYER, x, chunk_rows=80)
    return path


def _tile_run(store_path, out_path, *, n, metric, variant, backend):
    """One diagonal tile of the first ``n`` networks through ``prepare_task`` and ``tile_task``
    (no Dask). Returns the output's distance matrix and the tile task's device-to-host
    transfers (counts by kind, and by call site) when the stand-in is installed."""
    acts = ActivationStore.open(store_path)
    readers = [acts.reader(f"n{k}", LAYER) for k in range(n)]
    bases = [prepare_task(r, dtype="float64", backend=backend) for r in readers]
    records = [{"label": f"n{k}", "write_id": r.write_id} for k, r in enumerate(readers)]
    out, _, tile = ComparisonOutput.open_for_run(
        out_path, params={"metric": metric}, rows=records, cols=records, square=True, tile=n,
        default_tile=n, overwrite=False, extra_meta={})
    (only,) = iter_tiles(n, n, tile, square=True)
    spec = TileSpec(out_path=out.path, tile=only, row_readers=tuple(readers),
                    col_readers=tuple(readers), metric=metric, variant=variant, keep=0.99,
                    epsilon=1e-10, dtype="float64", backend=backend, chunk_rows=100)
    standin = sys.modules.get("cupy")
    counting = getattr(standin, "COUNTS", None) is not None
    if counting:
        standin.reset_counts()
    summary = tile_task(spec, bases, bases)
    counts = (dict(standin.COUNTS), dict(standin.D2H_SITES)) if counting else None
    out.release()
    assert summary.pairs == n * (n - 1)
    return load_distances(out_path), counts


@pytest.mark.parametrize("metric,variant", CASES, ids=IDS)
def test_tile_task_on_device_equals_numpy(cp, store, tmp_path, metric, variant):
    kw = dict(n=N_NETWORKS, metric=metric, variant=variant)
    want, _ = _tile_run(store, tmp_path / "numpy.zarr", backend="numpy", **kw)
    got, (counts, _) = _tile_run(store, tmp_path / "cupy.zarr", backend="cupy", **kw)
    assert counts["h2d"] > 0  # the data did go through the device
    np.testing.assert_allclose(got.values, want.values, rtol=0, atol=TOL)
    for name in ("rank_row", "rank_col", "ill_posed"):
        np.testing.assert_array_equal(got.diagnostics[name], want.diagnostics[name])
    for name in ("rho_max", "rho_min"):
        np.testing.assert_allclose(got.diagnostics[name], want.diagnostics[name], rtol=0,
                                   atol=TOL, equal_nan=True)


def _short(site: str) -> str:
    return site.replace(os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep, "")


@pytest.mark.parametrize("metric,variant", CASES, ids=IDS)
def test_tile_task_transfers_are_o1_per_tile(cp, store, tmp_path, metric, variant):
    """A tile of 6 networks (30 ordered pairs) makes as many device-to-host transfers as a tile
    of 3 (6 pairs): none per pair (each one is a synchronisation on a real GPU)."""
    measured = {}
    for n in (3, 6):
        _, (counts, sites) = _tile_run(store, tmp_path / f"t{n}.zarr", n=n, metric=metric,
                                       variant=variant, backend="cupy")
        measured[n] = counts, sites
    (c3, s3), (c6, s6) = measured[3], measured[6]
    growing = {_short(site): (s3.get(site, 0), s6[site]) for site in sorted(s6)
               if s6[site] != s3.get(site, 0)}
    assert c6.get("d2h", 0) == c3.get("d2h", 0), (
        f"device-to-host transfers per tile grow with the pairs ({metric}, {variant}): "
        f"{c3.get('d2h', 0)} for 3 networks (6 pairs), {c6.get('d2h', 0)} for 6 networks "
        f"(30 pairs); by kind {c3} vs {c6}; growing sites (3 -> 6 networks): {growing}")


# -- a whole engine comparison -------------------------------------------------------------------

def test_engine_compare_on_device_equals_numpy(cp, store, tmp_path):
    from distributed import Client, LocalCluster

    with LocalCluster(processes=False, n_workers=1, threads_per_worker=1,
                      resources={"GPU": 1}, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        want = cca_scale.compare(store, layer=LAYER, out=tmp_path / "numpy.zarr", client=client,
                                 backend="numpy", tile=4)
        cp.reset_counts()
        got = cca_scale.compare(store, layer=LAYER, out=tmp_path / "cupy.zarr", client=client,
                                backend="cupy", tile=4)
    assert cp.COUNTS["h2d"] > 0  # the tasks did run on the stand-in
    assert got.labels == want.labels == tuple(f"n{k}" for k in range(N_NETWORKS))
    np.testing.assert_allclose(got.values, want.values, rtol=0, atol=TOL)
    np.testing.assert_array_equal(got.diagnostics["rank_row"], want.diagnostics["rank_row"])
