"""The engine at speed, without losing exactness: layers factored from their Gram matrix (with a
rank-revealing fallback), each network read and projected once (held coordinates), batched pair
kernels, and float32 cross products with float64 kernels. Properties only, never timings.
"""

import mmap
import os
import pickle

import numpy as np
import pytest

import cca_scale
from cca_scale import ActivationStore
from cca_scale.core import BasisAccumulator, compare, prepare
from cca_scale.core.backend import BULK_MIN_BYTES, bulk_empty
from cca_scale.core.basis import (FLOORED_LIVE_CLEARANCE, GRAM_MAX_CONDITION, NULL_NOISE_MARGIN,
                                  REFINE_MAX_CONDITION, GramAccumulator, factor_chunks)
from cca_scale.core.batched import Layers, gather_results
from cca_scale.core.registry import METRICS, get_metric
from cca_scale.engine import compare as engine_compare
from cca_scale.engine.compare import hold_coordinates
from cca_scale.engine.output import ComparisonOutput
from cca_scale.engine.results import load_distances
from cca_scale.engine.tasks import TileSpec, coords_task, prepare_task, tile_task
from cca_scale.engine.tiles import iter_tiles
from conftest import counting_tsqr

N = 600


def _relu_layers(rng, widths, n=N):
    z = rng.normal(size=(n, 4))
    return [np.maximum(z @ rng.normal(size=(4, d)) + 0.7 * rng.normal(size=(n, d)), 0)
            for d in widths]


def _chunks(x, rows=128):
    return lambda: (x[s:s + rows] for s in range(0, len(x), rows))


# -- prepare at GEMM speed --------------------------------------------------------------------

def test_gram_path_gives_the_tsqr_basis_on_well_conditioned_layers(rng):
    x = _relu_layers(rng, [24])[0]
    gram = factor_chunks(_chunks(x))
    acc = BasisAccumulator(dtype="float64")
    for c in _chunks(x)():
        acc.update(c)
    tsqr = acc.finalize()
    np.testing.assert_allclose(gram.s, tsqr.s, rtol=1e-12)
    np.testing.assert_allclose(gram.mean, x.mean(axis=0), atol=1e-14)
    q = (x - gram.mean) @ gram.whitener
    np.testing.assert_allclose(q.T @ q, np.eye(24), atol=1e-12)
    # the same span: projecting q_tsqr onto q_gram loses nothing
    q_t = (x - tsqr.mean) @ tsqr.whitener
    np.testing.assert_allclose(np.linalg.svd(q.T @ q_t, compute_uv=False), 1.0, atol=1e-12)


def _tsqr(x, rtol=None):
    """The TSQR's basis of ``x`` over chunks of 500 datapoints."""
    acc = BasisAccumulator(dtype="float64", rtol=rtol)
    for c in _chunks(x, 500)():
        acc.update(c)
    return acc.finalize()


def _six_units(rng, n):
    """A centred layer of 6 units with singular values 1, 0.9, 0.8, 0.7, 0.6 and ``smallest``,
    as a function of ``smallest`` (the same singular vectors for every value)."""
    x = rng.normal(size=(n, 6))
    x -= x.mean(axis=0)
    u, _, vt = np.linalg.svd(x, full_matrices=False)
    return lambda smallest: u @ np.diag([1.0, 0.9, 0.8, 0.7, 0.6, smallest]) @ vt


def _assert_refined_only_above(layer, bound, monkeypatch, *, rtol):
    """``layer(smallest)`` (:func:`_six_units`) with its smallest singular value at 0.5x and 2x
    ``bound``: the TSQR below, the refined pass above, six directions and ``s[-1]`` to ``rtol``."""
    seen = counting_tsqr(monkeypatch)
    for factor, refined in ((0.5, False), (2.0, True)):
        ratio = factor * bound
        y = layer(ratio)
        seen.clear()
        basis = factor_chunks(lambda: [y])
        assert bool(seen) != refined
        assert basis.rank == 6
        np.testing.assert_allclose(basis.s[-1], ratio, rtol=rtol)


def _damaged(x, damage):
    """``x`` with null directions: collinear or duplicated units (and a dead one), softmax rows
    (summing to 1), or every unit a combination of 6 of them."""
    x = x.copy()
    if "scaled" in damage:
        x *= np.geomspace(1.0, 1e-4, x.shape[1])
    if "dead" in damage:  # setting the dead unit aside leaves a duplicate
        x[:, 3] = 0.0
    if damage == "collinear":
        x[:, 5] = 2 * x[:, 1] - x[:, 2]
    elif damage == "rank 6":
        x = x[:, :6] @ np.random.default_rng(0).normal(size=(6, x.shape[1]))
    elif damage == "softmax":
        e = np.exp(x - x.max(axis=1, keepdims=True))
        x = e / e.sum(axis=1, keepdims=True)
    else:
        x[:, 7] = x[:, 0]
    return x


@pytest.mark.parametrize("damage", ["collinear", "duplicate", "dead and duplicate"])
def test_small_layers_with_null_directions_take_the_tsqr(rng, damage):
    """At 600 datapoints the rank tolerance (600 eps) is too fine to certify null directions
    from the refined pass (``NULL_NOISE_MARGIN``): the TSQR, bit for bit."""
    x = _damaged(_relu_layers(rng, [16])[0], damage)
    gram = GramAccumulator()
    for c in _chunks(x)():
        gram.update(c)
    assert gram.finalize() is None
    acc = BasisAccumulator(dtype="float64")
    for c in _chunks(x)():
        acc.update(c)
    want, got = acc.finalize(), factor_chunks(_chunks(x))
    assert got.rank == want.rank == 16 - (2 if damage == "dead and duplicate" else 1)
    np.testing.assert_array_equal(got.s, want.s)
    np.testing.assert_array_equal(got.vt, want.vt)


@pytest.mark.parametrize("damage", ["collinear", "duplicate", "dead and duplicate", "softmax",
                                    "scaled and duplicate", "rank 6"])
def test_null_directions_are_certified_and_dropped_without_the_tsqr(rng, monkeypatch, damage):
    """Collinear or duplicated units (softmax rows, which sum to 1; a layer of rank 6 in 16
    units) at a realistic datapoint count: the refined pass resolves every other direction and
    finds the null ones null, so the layer gets the TSQR's basis to its own accuracy without the
    TSQR."""
    x = _damaged(_relu_layers(rng, [16], n=4000)[0], damage)
    want = _tsqr(x)
    seen = counting_tsqr(monkeypatch)
    got = factor_chunks(_chunks(x, 500))
    assert not seen
    assert got.rank == want.rank == (6 if damage == "rank 6" else
                                     16 - (2 if "dead" in damage else 1))
    np.testing.assert_allclose(got.s, want.s, rtol=1e-12)
    if "dead" in damage:
        assert np.all(got.vt[:, 3] == 0.0)
    q = (x - got.mean) @ got.whitener
    q_t = (x - want.mean) @ want.whitener
    tsqr_error = np.abs(q_t.T @ q_t - np.eye(got.rank)).max()
    assert np.abs(q.T @ q - np.eye(got.rank)).max() <= max(4 * tsqr_error, 1e-13)
    np.testing.assert_allclose(np.linalg.svd(q.T @ q_t, compute_uv=False), 1.0, atol=1e-12)


def test_a_live_direction_beyond_condition_1e6_is_resolved_as_the_tsqr_resolves_it(rng,
                                                                                     monkeypatch):
    """A unit 1e-8 smaller (condition ~1e8, as float32 rounding of an exact dependency leaves it)
    is floored like a null direction and comes out live, clear of the pass' noise: kept from the
    refined pass, with the singular values of the layer and coordinates orthonormal to what the
    condition number allows, as the TSQR's."""
    x = _relu_layers(rng, [16], n=4000)[0]
    x[:, 4] *= 1e-8
    want = _tsqr(x)
    seen = counting_tsqr(monkeypatch)
    got = factor_chunks(_chunks(x, 500))
    assert not seen
    assert got.rank == want.rank == 16
    s_true = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    np.testing.assert_allclose(got.s, s_true, rtol=1e-6)
    kappa = got.s[0] / got.s[-1]
    assert kappa > 1e7
    for basis in (got, want):
        q = (x - basis.mean) @ basis.whitener
        assert np.abs(q.T @ q - np.eye(16)).max() <= 100 * np.finfo(np.float64).eps * kappa


def test_a_live_direction_near_the_pass_noise_takes_the_tsqr(rng, monkeypatch):
    """A unit 3e-11 smaller (condition ~1e11, still above the rank cut) is live within
    ``FLOORED_LIVE_CLEARANCE`` of the refined pass' noise: the TSQR, bit for bit."""
    x = _relu_layers(rng, [16], n=4000)[0]
    x[:, 4] *= 3e-11
    want = _tsqr(x)
    seen = counting_tsqr(monkeypatch)
    got = factor_chunks(_chunks(x, 500))
    assert seen and got.rank == want.rank == 16
    np.testing.assert_array_equal(got.s, want.s)
    np.testing.assert_array_equal(got.vt, want.vt)


def test_floored_live_clearance_is_the_documented_one(rng, monkeypatch):
    layer = _six_units(rng, 2000)
    noise = np.sqrt(6 * np.finfo(np.float64).eps / REFINE_MAX_CONDITION)  # s_max = 1
    _assert_refined_only_above(layer, FLOORED_LIVE_CLEARANCE * noise, monkeypatch, rtol=1e-2)


def test_a_coarse_rank_tolerance_cuts_live_directions_off_the_refined_pass(rng, monkeypatch):
    """A rank tolerance of 1e-3 cuts live directions as well as the null one: still certified
    (no floored direction is live), the TSQR's basis at that tolerance, without the TSQR."""
    x = _damaged(_relu_layers(rng, [16], n=4000)[0], "scaled and duplicate")
    want = _tsqr(x, rtol=1e-3)
    seen = counting_tsqr(monkeypatch)
    got = factor_chunks(_chunks(x, 500), rtol=1e-3)
    assert not seen
    assert got.rank == want.rank < 15
    np.testing.assert_allclose(got.s, want.s, rtol=1e-12)


def test_null_certification_threshold_is_the_documented_margin(rng, monkeypatch):
    x = _damaged(_relu_layers(rng, [16], n=4000)[0], "duplicate")
    needed = NULL_NOISE_MARGIN * np.sqrt(16 * np.finfo(np.float64).eps / REFINE_MAX_CONDITION)
    seen = counting_tsqr(monkeypatch)
    for factor, certified in ((0.5, False), (2.0, True)):
        seen.clear()
        basis = factor_chunks(_chunks(x, 500), rtol=factor * needed)
        assert bool(seen) != certified
        assert basis.rank == 15


def _layer_with_spectrum(rng, singular_values, n=2000, mean=3.0):
    u = np.linalg.qr(rng.normal(size=(n, len(singular_values))))[0]
    v = np.linalg.qr(rng.normal(size=(len(singular_values),) * 2))[0]
    return (u * singular_values) @ v.T + mean


@pytest.mark.parametrize("damage", ["one unit 1e-4 smaller", "condition 1e5", "condition 3e5",
                                    "condition 1e5, dead units"])
def test_ill_conditioned_layers_are_refined_as_accurately_as_the_tsqr(rng, monkeypatch, damage):
    """Beyond the Gram path's condition (but not singular), a second pass refines it
    (CholeskyQR2): the TSQR's basis to its own accuracy, without the TSQR."""
    if damage == "one unit 1e-4 smaller":  # condition^2 ~ 1e8 > GRAM_MAX_CONDITION
        x = _relu_layers(rng, [16])[0]
        x[:, 9] *= 1e-4
    else:
        kappa = float(damage.split()[1].rstrip(","))
        x = _layer_with_spectrum(rng, np.geomspace(10.0, 10.0 / kappa, 24))
    dead = [2, 11] if "dead" in damage else []
    x[:, dead] = 0.0
    gram = GramAccumulator()
    for c in _chunks(x)():
        gram.update(c)
    assert gram.finalize() is None  # the Gram path alone would lose the small directions
    acc = BasisAccumulator(dtype="float64")
    for c in _chunks(x)():
        acc.update(c)
    want = acc.finalize()
    seen = counting_tsqr(monkeypatch)
    got = factor_chunks(_chunks(x))
    assert not seen
    assert got.rank == want.rank == x.shape[1] - len(dead)
    s_true = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)[:got.rank]
    np.testing.assert_allclose(want.s, s_true, rtol=1e-9)
    np.testing.assert_allclose(got.s, s_true, rtol=1e-9)
    assert np.all(got.vt[:, dead] == 0.0)
    q = (x - got.mean) @ got.whitener
    q_t = (x - want.mean) @ want.whitener
    tsqr_error = np.abs(q_t.T @ q_t - np.eye(got.rank)).max()
    assert np.abs(q.T @ q - np.eye(got.rank)).max() <= max(4 * tsqr_error, 1e-13)
    np.testing.assert_allclose(np.linalg.svd(q.T @ q_t, compute_uv=False), 1.0, atol=1e-9)


@pytest.mark.parametrize("values", [[0.0], [0.25], [0.0, 0.1, 0.0]])
def test_gram_path_sets_constant_units_aside(rng, values):
    """Dead units (constant over the datapoints, exactly or to rounding) are null directions of
    the layer, not ill-conditioning: the Gram path factors the others, giving the TSQR's basis
    with exact zeros for the constant units."""
    x = _relu_layers(rng, [16])[0]
    dead = [3, 8, 12][:len(values)]
    x[:, dead] = values
    gram = GramAccumulator()
    for c in _chunks(x)():
        gram.update(c)
    got = gram.finalize()
    assert got is not None
    acc = BasisAccumulator(dtype="float64")
    for c in _chunks(x)():
        acc.update(c)
    want = acc.finalize()
    assert got.rank == want.rank == 16 - len(dead)
    np.testing.assert_allclose(got.s, want.s, rtol=1e-12)
    assert np.all(got.vt[:, dead] == 0.0)
    np.testing.assert_array_equal(got.kept_neurons, ~np.isin(np.arange(16), dead))
    q = (x - got.mean) @ got.whitener
    np.testing.assert_allclose(q.T @ q, np.eye(got.rank), atol=1e-12)
    q_t = (x - want.mean) @ want.whitener
    np.testing.assert_allclose(np.linalg.svd(q.T @ q_t, compute_uv=False), 1.0, atol=1e-12)
    same = factor_chunks(_chunks(x))  # the route factor_chunks takes
    np.testing.assert_array_equal(same.s, got.s)
    np.testing.assert_array_equal(same.vt, got.vt)


def test_a_coarse_rank_tolerance_sets_no_live_unit_aside(rng):
    """Only units constant to rounding are set aside: a unit 1e-4 as large as the others, under
    a rank tolerance of 1e-3, is live, and the layer's basis is the one-pair SVD's at that
    tolerance (the directions cut by their singular values, not the unit dropped)."""
    x = _relu_layers(rng, [12], n=3000)[0]
    x[:, 5] *= 1e-4
    got = factor_chunks(_chunks(x, 500), rtol=1e-3)
    want = prepare(x, rtol=1e-3)
    assert got.rank == want.rank
    assert np.any(got.vt[:, 5] != 0.0)
    np.testing.assert_allclose(got.s, want.s, rtol=1e-12)
    np.testing.assert_allclose(np.abs(got.vt @ want.vt.T), np.eye(got.rank), atol=1e-9)


def test_a_layer_of_constant_units_is_still_refused_by_name(rng):
    x = np.full((50, 4), 0.5)
    gram = GramAccumulator(who="x (network 'n7', layer 'fc1')")
    for c in _chunks(x, rows=16)():
        gram.update(c)
    assert gram.finalize() is None
    with pytest.raises(cca_scale.errors.ActivationError, match="n7.*fc1"):
        factor_chunks(_chunks(x, rows=16), who="x (network 'n7', layer 'fc1')")


def test_gram_threshold_is_the_documented_condition(rng):
    layer = _six_units(rng, 400)
    for ratio, fast in ((0.5 / np.sqrt(GRAM_MAX_CONDITION), False),
                        (2.0 / np.sqrt(GRAM_MAX_CONDITION), True)):
        y = layer(ratio)
        gram = GramAccumulator()
        gram.update(y)
        assert (gram.finalize() is not None) == fast


def test_refinement_threshold_is_the_documented_condition(rng, monkeypatch):
    # 400 datapoints: too few to resolve floored directions (NULL_NOISE_MARGIN), so beyond the
    # bound the TSQR
    layer = _six_units(rng, 400)
    _assert_refined_only_above(layer, 1 / np.sqrt(REFINE_MAX_CONDITION), monkeypatch, rtol=1e-6)


# -- batched kernels ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(METRICS))
def test_a_batch_equals_its_pairs_one_by_one(rng, name):
    info = get_metric(name)
    widths = [9, 9, 9, 9] if info.aligned else [9, 7, 9, 11]
    bases = [prepare(x) for x in _relu_layers(rng, widths)]
    for variant in (("paper", "svcca") if info.takes_variant else ("paper",)):
        options = info.kernel_options(variant=variant, keep=0.9)
        prep = [info.prepare(b, options) for b in bases]
        pairs = [(0, 2), (1, 3), (2, 0), (0, 0)]
        alone = [info.pair(prep[i].q.T @ prep[j].q, prep[i], prep[j], options)
                 for i, j in pairs]
        for i, j in pairs:  # a batch of pairs with the same shapes
            same = [(a, b) for a, b in pairs if prep[a].q.shape == prep[i].q.shape
                    and prep[b].q.shape == prep[j].q.shape]
            cross = np.stack([prep[a].q.T @ prep[b].q for a, b in same])
            sides = [info.side_of(prep[a], options) for a, _ in same] if info.needs_sides \
                else None
            la = Layers.of([prep[a] for a, _ in same], np,
                           sides if info.needs_sides and sides[0] is not None else None)
            sides_b = [info.side_of(prep[b], options) for _, b in same]
            lb = Layers.of([prep[b] for _, b in same], np,
                           sides_b if info.needs_sides and sides_b[0] is not None else None)
            got = gather_results([info.batch(cross, la, lb, options)])
            for p, (a, b) in enumerate(same):
                want = alone[pairs.index((a, b))]
                assert got["forward"][p] == pytest.approx(want.forward, abs=1e-13)
                assert got["backward"][p] == pytest.approx(want.backward, abs=1e-13)
                assert got["rank_a"][p] == want.rank_a and got["rank_b"][p] == want.rank_b
                assert bool(got["ill_posed"][p]) == want.ill_posed


# -- each network read and projected once ------------------------------------------------------

@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    rng = np.random.default_rng(11)
    path = tmp_path_factory.mktemp("once") / "acts.zarr"
    store = ActivationStore.create(path, n_datapoints=N)
    layers = _relu_layers(rng, [8, 8, 6, 10, 8, 7])
    layers[2][:, 1] = layers[2][:, 0]  # collinear units: the fallback route, inside a tile
    for k, x in enumerate(layers):
        store.add(f"n{k}", "h", x, chunk_rows=100)
    return path


def _one_tile(tmp_path, store_path, inputs, *, metric="pwcca", dtype="float64", name="out"):
    store = ActivationStore.open(store_path)
    readers = [store.reader(f"n{k}", "h") for k in range(6)]
    records = [{"label": f"n{k}", "write_id": r.write_id} for k, r in enumerate(readers)]
    out, _, tile = ComparisonOutput.open_for_run(
        tmp_path / f"{name}.zarr", params={"metric": metric}, rows=records, cols=records,
        square=True, tile=6, default_tile=6, overwrite=False, extra_meta={})
    (only,) = iter_tiles(6, 6, tile, square=True)
    spec = TileSpec(out_path=out.path, tile=only, row_readers=tuple(readers),
                    col_readers=tuple(readers), metric=metric, variant="paper", keep=0.99,
                    epsilon=1e-10, dtype=dtype, backend="numpy", chunk_rows=200)
    items = inputs(readers)
    summary = tile_task(spec, items, items)
    out.release()
    return load_distances(tmp_path / f"{name}.zarr"), summary


@pytest.mark.parametrize("metric", ["pwcca", "cka", "svcca"])
def test_held_coordinates_give_the_streamed_numbers_bit_for_bit(tmp_path, small_store, metric):
    streamed, s_sum = _one_tile(
        tmp_path, small_store, lambda rs: [prepare_task(r) for r in rs], metric=metric,
        name="streamed")
    held, h_sum = _one_tile(
        tmp_path, small_store,
        lambda rs: coords_task(rs, dtype="float64", backend="numpy", block_rows=200),
        metric=metric, name="held")
    np.testing.assert_array_equal(held.values, streamed.values)
    assert set(held.diagnostics) == set(streamed.diagnostics)
    for key, value in held.diagnostics.items():
        np.testing.assert_array_equal(value, streamed.diagnostics[key], err_msg=key)
    # the store holds float64: 8 bytes a value
    assert h_sum.bytes_read == 0 and s_sum.bytes_read == N * sum([8, 8, 6, 10, 8, 7]) * 8


def test_coordinates_are_orthonormal_stacked_and_read_each_layer_once(small_store):
    store = ActivationStore.open(small_store)
    readers = [store.reader(f"n{k}", "h") for k in (3, 2, 5)]  # n2 has collinear units
    c = coords_task(readers, dtype="float64", backend="numpy", block_rows=128)
    ranks = [b.rank for b in c.bases]
    assert ranks[0] == 10 and ranks[1] < 6
    np.testing.assert_array_equal(c.offsets, np.cumsum([0] + ranks))
    assert [b.shape for b in c.blocks] == [(sum(ranks), 128)] * 4 + [(sum(ranks), N - 512)]
    assert all(b.flags.c_contiguous for b in c.blocks)
    assert c.bytes_read == N * (10 + 6 + 7) * 8
    q = np.concatenate(c.blocks, axis=1)
    for k in range(3):
        qk = q[c.offsets[k]:c.offsets[k + 1]]
        np.testing.assert_allclose(qk @ qk.T, np.eye(ranks[k]), atol=1e-12)
    c32 = coords_task(readers, dtype="float32", backend="numpy", block_rows=128)
    assert c32.blocks[0].dtype == np.float32 and c32.bases[0].s.dtype == np.float64
    np.testing.assert_allclose(np.concatenate(c32.blocks, axis=1), q, atol=1e-6)


def _vm_flags(address: int) -> list[str]:
    """The kernel's flags of this process's mapping that holds ``address`` (Linux smaps)."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(v, 16) for v in head.split("-"))
                inside = lo <= address < hi
            elif inside and head == "VmFlags:":
                return line.split()[1:]
    raise AssertionError("no mapping holds the address")


def test_bulk_buffers_are_plain_arrays_mapped_without_huge_pages():
    big = bulk_empty(np, (BULK_MIN_BYTES // 8 // 256, 256), np.float64)
    small = bulk_empty(np, (4, 3), np.float32)
    for a, shape, dtype in ((big, (BULK_MIN_BYTES // 2048, 256), np.float64),
                            (small, (4, 3), np.float32)):
        assert a.shape == shape and a.dtype == dtype
        assert a.flags.c_contiguous and a.flags.writeable and a.flags.aligned
    big[...] = 1.5
    assert float(big.sum()) == 1.5 * big.size
    assert np.array_equal(pickle.loads(pickle.dumps(big)), big)  # as task results travel
    with pytest.raises(MemoryError, match="Unable to allocate"):  # as np.empty fails
        bulk_empty(np, (1 << 40, 1 << 10), np.float64)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        assert big.ctypes.data % mmap.PAGESIZE == 0
    if os.path.isdir("/sys/kernel/mm/transparent_hugepage"):  # Linux with huge pages
        flags = _vm_flags(big.ctypes.data)
        assert "nh" in flags and "sh" not in flags  # MADV_NOHUGEPAGE, private (as malloc's)
        assert "nh" not in _vm_flags(np.ones(BULK_MIN_BYTES // 8).ctypes.data)


def test_hold_decision_follows_the_memory_share():
    class R:
        shape = (1000, 50)

    readers = [R()] * 4  # 4 * 1000 * 50 * 8 bytes = 1.6 MB in float64
    assert hold_coordinates(readers, dtype="float64", memory=8_000_000)
    assert not hold_coordinates(readers, dtype="float64", memory=6_000_000)
    assert hold_coordinates(readers, dtype="float32", memory=6_000_000)
    assert not hold_coordinates([], dtype="float64", memory=8_000_000)


@pytest.fixture(scope="module")
def threads_client():
    """One in-process worker with two threads: the embedded cluster's shape."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


def test_square_comparison_reads_the_data_once_and_equals_one_pair(threads_client, client,
                                                                    small_store, tmp_path):
    one_pass = N * sum([8, 8, 6, 10, 8, 7]) * 8  # float64 activations
    # several worker processes: each network read to factor it, then by each of its 3 tiles;
    # n2, whose duplicated unit takes the TSQR at 600 datapoints, read once more to factor it
    streamed = engine_compare(small_store, layer="h", out=tmp_path / "s.zarr", client=client,
                              tile=2).metadata["run_summary"]
    assert streamed["bytes_read"] == 4 * one_pass + N * 6 * 8
    matrix = engine_compare(small_store, layer="h", out=tmp_path / "o.zarr",
                            client=threads_client, tile=2)
    summary = matrix.metadata["run_summary"]
    assert summary["bytes_read"] == summary["data_bytes"] == one_pass
    assert summary["passes"] == 1.0
    np.testing.assert_array_equal(matrix.values, load_distances(tmp_path / "s.zarr").values)
    store = ActivationStore.open(small_store)
    acts = [store.read(f"n{k}", "h").astype(np.float64) for k in range(6)]
    for i in range(6):
        for j in range(6):
            if i != j:
                want = cca_scale.pwcca_distance(acts[i], acts[j])
                assert matrix.values[i, j] == pytest.approx(want, abs=1e-10)


def test_float32_cross_products_agree_with_float64(client, small_store, tmp_path):
    d64 = engine_compare(small_store, layer="h", out=tmp_path / "a.zarr", client=client,
                         metric=["pwcca", "cka"], tile=3)
    d32 = engine_compare(small_store, layer="h", out=tmp_path / "b.zarr", client=client,
                         metric=["pwcca", "cka"], tile=3, dtype="float32")
    for m in ("pwcca", "cka"):
        np.testing.assert_allclose(d32[m].values, d64[m].values, atol=1e-5)
        np.testing.assert_array_equal(d32[m].diagnostics["rank_row"],
                                      d64[m].diagnostics["rank_row"])


def test_prepare_task_says_how_many_passes_it_read(tmp_path, rng, monkeypatch):
    x = _relu_layers(rng, [12])[0]
    store = ActivationStore.create(tmp_path / "acts.zarr", n_datapoints=N)
    scaled = x * np.geomspace(1.0, 1e-4, 12)  # the second pass of the refined Gram path
    duplicated = x.copy()
    duplicated[:, 5] = duplicated[:, 0]  # the TSQR (600 datapoints)
    for name, layer in (("plain", x), ("scaled", scaled), ("duplicated", duplicated)):
        store.add(name, "h", layer, chunk_rows=100)
    calls = []
    reader_type = type(store.reader("plain", "h"))
    iter_chunks = reader_type.iter_chunks
    monkeypatch.setattr(reader_type, "iter_chunks",
                        lambda self: (calls.append(self.network), iter_chunks(self))[1])
    reads = {}
    for name in ("plain", "scaled", "duplicated"):
        basis = prepare_task(store.reader(name, "h"), dtype="float64", backend="numpy")
        reads[name] = (basis.passes, calls.count(name))
    assert reads == {"plain": (1, 1), "scaled": (2, 2), "duplicated": (2, 2)}


def test_one_pair_functions_use_the_batched_kernels(rng):
    a, b = (prepare(x) for x in _relu_layers(rng, [6, 5]))
    res = compare(a, b, metric="pwcca")
    assert isinstance(res.forward, float) and 0 <= res.forward <= 1


def test_a_tile_gives_the_same_bits_whatever_the_layout_its_inputs_arrive_in(tmp_path,
                                                                            small_store):
    """A result received from another worker comes in the layout its serialiser chose; BLAS sums
    in a layout-dependent order, so the tile must not depend on it (found by a SIGKILL test)."""
    import dataclasses

    def relaid(basis):
        return dataclasses.replace(basis, vt=np.asfortranarray(basis.vt),
                                   s=np.array(basis.s[::-1][::-1]))

    here, _ = _one_tile(tmp_path, small_store, lambda rs: [prepare_task(r) for r in rs],
                        name="here")
    moved, _ = _one_tile(tmp_path, small_store, lambda rs: [relaid(prepare_task(r)) for r in rs],
                         name="moved")
    np.testing.assert_array_equal(here.values, moved.values)
    basis = prepare_task(ActivationStore.open(small_store).reader("n0", "h"))
    assert basis.vt.flags.c_contiguous


# -- fixed costs: resolving a comparison -------------------------------------------------------

def test_resolving_reads_each_networks_documents_in_few_round_trips(tmp_path, monkeypatch, rng):
    """A snapshot with prefetching: the per-network round trips to the store do not pile up
    (each used to cost ~7 sequential reads, then 2 to open its array), and the selection is the
    same as without it."""
    from cca_scale.engine.request import ComparisonRequest
    from cca_scale.engine.selection import resolve_request
    from cca_scale.store import zarr_io

    store = ActivationStore.create(tmp_path / "acts.zarr", n_datapoints=50)
    for k, x in enumerate(_relu_layers(rng, [4] * 12, n=50)):
        store.add(f"n{k}", "h", x)
    calls = []
    real = zarr_io.sync  # every round trip of ours (zarr_io.run and the one-key helpers)
    monkeypatch.setattr(zarr_io, "sync", lambda coro: calls.append(1) or real(coro))
    req = ComparisonRequest.build(layer="h")
    res = resolve_request(ActivationStore.open(tmp_path / "acts.zarr"), req)
    assert [i.network for i in res.rows] == [f"n{k}" for k in range(12)]
    assert len(calls) <= 6, len(calls)  # a few in all, however many networks


@pytest.mark.parametrize("hostile", ["../n0", "n0/../../x", "", "a" * 300])
def test_prefetching_refuses_a_hostile_name_before_reading(tmp_path, rng, hostile):
    """The prefetches build store paths from names: a name that is not one is refused as
    everywhere else in the store, before anything is read."""
    from cca_scale.errors import InvalidNameError

    store = ActivationStore.create(tmp_path / "acts.zarr", n_datapoints=20)
    store.add("n0", "h", rng.standard_normal((20, 3)).astype(np.float32))
    with store.snapshot():
        with pytest.raises(InvalidNameError):
            store.prefetch([hostile])
        with pytest.raises(InvalidNameError):
            store.prefetch(["n0"], [hostile])
        with pytest.raises(InvalidNameError):
            store.prefetch_arrays([("n0", hostile, None)])
        with pytest.raises(InvalidNameError):
            store.prefetch_arrays([(hostile, "h", None)])


def test_attribute_records_are_the_rows_of_attributes(tmp_path, rng):
    store = ActivationStore.create(tmp_path / "acts.zarr", n_datapoints=20)
    for k, attrs in enumerate([{"lr": 0.1, "seed": 0}, {"seed": 1}, {"lr": 0.01, "seed": 2}]):
        store.add(f"n{k}", "h", rng.standard_normal((20, 3)).astype(np.float32), attrs=attrs)
    records = store.attribute_records()
    assert records == {"n0": {"lr": 0.1, "seed": 0}, "n1": {"seed": 1},
                       "n2": {"lr": 0.01, "seed": 2}}
    assert list(store.attribute_records("seed >= 1")) == ["n1", "n2"]
    frame = store.attributes()
    assert list(frame.index) == list(records)
    assert frame.loc["n2", "lr"] == 0.01 and frame.loc["n1", "seed"] == 1
