"""``cca-scale bench``: the report's keys, the GEMM floor formula and the statistics.

Never asserts a timing: engine runs, the matmul rate and the clock are replaced by fixed
numbers where a value is checked, and the one real run (marked slow) checks keys only.
"""

import importlib.util
import math

import numpy as np
import pytest

from cca_scale import bench
from cca_scale import errors as bench_errors
from cca_scale.cli.bench import _lines, _shown


def test_gemm_floor_is_a_syrk_of_the_stacked_coordinates():
    # m * (N*d)^2: half of a GEMM's 2 * m * n^2 for n = N*d columns
    flops = bench.gemm_floor_flops(n_networks=32, n_datapoints=10_000, n_neurons=128)
    assert flops == 10_000 * (32 * 128) ** 2
    seconds = bench.gemm_floor_seconds(n_networks=32, n_datapoints=10_000, n_neurons=128,
                                       gflops=100.0)
    assert seconds == pytest.approx(flops / 100e9)
    # doubling the networks quadruples the floor; doubling the datapoints doubles it
    kw = dict(n_datapoints=1000, n_neurons=16, gflops=1.0)
    assert bench.gemm_floor_seconds(n_networks=8, **kw) == \
        pytest.approx(4 * bench.gemm_floor_seconds(n_networks=4, **kw))


@pytest.mark.parametrize("values, expected", [
    ([3.0, 1.0, 2.0], (1.0, 2.0, 3.0)),
    ([4.0, 1.0, 2.0, 10.0], (1.0, 3.0, 10.0)),  # even count: mean of the middle two
    ([5], (5.0, 5.0, 5.0)),
])
def test_summarize(values, expected):
    out = bench.summarize(values)
    assert list(out) == ["min", "median", "max"]
    assert (out["min"], out["median"], out["max"]) == expected


def test_summarize_refuses_no_values():
    with pytest.raises(ValueError, match="at least one value"):
        bench.summarize([])


def test_phase_shares_sum_to_one_in_phase_order():
    shares = bench.phase_shares({"write": 1.0, "gemm": 4.0, "io": 2.0, "pairs": 1.0,
                                 "project": 2.0, "prepare": 0.0, "other": 0.0})
    assert list(shares) == ["prepare", "io", "project", "gemm", "pairs", "write", "other"]
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["gemm"] == pytest.approx(0.4)
    assert bench.phase_shares({"io": 0.0, "gemm": 0.0}) == {"io": 0.0, "gemm": 0.0}
    assert bench.phase_shares({}) == {}


def test_passes_over_data():
    dims = dict(n_networks=4, n_datapoints=100, n_neurons=8)
    assert bench.passes_over_data(4 * 100 * 8 * 4, **dims) == 1.0
    assert bench.passes_over_data(3 * 4 * 100 * 8 * 4, **dims) == 3.0
    assert bench.passes_over_data(4 * 100 * 8 * 8, itemsize=8, **dims) == 1.0


def test_original_method_is_timed_on_at_least_min_pairs():
    out = bench.time_original_pwcca(n_networks=3, n_datapoints=200, n_neurons=6, min_pairs=4,
                                    min_seconds=0.0, threads=1)
    assert out["pairs_timed"] == 4  # 6 distinct directed pairs among 3 networks; 4 asked
    assert "original_pwcca_similarity" in out["method"]
    assert out["seconds_per_directed_pair"] == pytest.approx(out["seconds_timed"] / 4)
    capped = bench.time_original_pwcca(n_networks=2, n_datapoints=100, n_neurons=4,
                                       min_pairs=1, min_seconds=1e9, max_pairs=3, threads=1)
    assert capped["pairs_timed"] == 3  # max_pairs bounds it, cycling over the 2 pairs


def _fake_runs(monkeypatch, seconds):
    """Engine runs that take ``seconds[mode]`` and record fixed timings; a 100 GFLOP/s rate."""
    calls = []

    def fake_compare(store_path, out_path, *, client, **kw):
        mode = "warm_client" if client is not None else "whole_process"
        calls.append(mode)
        return {"seconds": seconds[mode], "tile": 2, "bytes_read": 2 * 3 * 50 * 4 * 4,
                "timings": {"wall_seconds": 1.0, "pair_phase_seconds": 0.5,
                            "task_seconds": {"io": 1.0, "project": 1.0, "gemm": 2.0,
                                             "pairs": 0.0, "write": 0.0}}}

    class FakeClient:
        def close(self):
            pass

    monkeypatch.setattr(bench, "_timed_compare", fake_compare)
    monkeypatch.setattr(bench, "_bench_client", lambda w, g, whole: None if whole else
                        FakeClient())
    monkeypatch.setattr(bench, "_floor_gflops", lambda *a: 100.0)
    return calls


def test_engine_report_keys_ratios_and_speedups(monkeypatch, tmp_path):
    calls = _fake_runs(monkeypatch, {"whole_process": 2.0, "warm_client": 1.0})
    dims = dict(n_networks=3, n_datapoints=50, n_neurons=4)
    report = bench.bench_engine(**dims, workers=1, rounds=3, naive_pairs=1, naive_seconds=0.0,
                                workdir=str(tmp_path))
    assert calls == ["whole_process", "warm_client", "warm_client", "whole_process",
                     "whole_process", "warm_client"]  # alternated between rounds
    assert list(report) == ["workload", "floor", "whole_process", "warm_client", "naive"]
    floor = bench.gemm_floor_seconds(gflops=100.0, **dims)
    assert report["floor"]["seconds"]["median"] == pytest.approx(floor)
    assert report["floor"]["flops"] == 50 * 12**2
    for mode, t in (("whole_process", 2.0), ("warm_client", 1.0)):
        part = report[mode]
        assert set(part) == {"seconds", "ratio_to_floor", "engine_wall_seconds",
                             "pair_phase_seconds", "task_seconds_total", "phase_shares",
                             "bytes_read", "passes_over_data"}
        assert part["ratio_to_floor"]["median"] == pytest.approx(t / floor)
        assert list(part["phase_shares"]) == ["io", "project", "gemm", "pairs", "write"]
        assert part["phase_shares"]["gemm"]["median"] == pytest.approx(0.5)
        assert part["passes_over_data"]["max"] == pytest.approx(2.0)
    naive = report["naive"]
    assert naive["directed_pairs"] == 6
    assert naive["all_pairs_seconds_estimated"] == \
        pytest.approx(6 * naive["seconds_per_directed_pair"])
    assert naive["speedup_whole_process"] == \
        pytest.approx(naive["all_pairs_seconds_estimated"] / 2.0)
    assert naive["speedup_warm_client"] == \
        pytest.approx(naive["all_pairs_seconds_estimated"] / 1.0)


def test_other_dtypes_and_variants_are_timed_beside_the_baseline(monkeypatch, tmp_path):
    calls = _fake_runs(monkeypatch, {"whole_process": 2.0, "warm_client": 1.0})
    configs = []
    fake = bench._timed_compare

    def timed(store_path, out_path, *, dtype, variant, **kw):
        configs.append((dtype, variant))
        out = fake(store_path, out_path, dtype=dtype, variant=variant, **kw)
        return dict(out, seconds=out["seconds"] * (1.5 if variant == "svcca" else 1.0))

    monkeypatch.setattr(bench, "_timed_compare", timed)
    report = bench.bench_engine(n_networks=2, n_datapoints=40, n_neurons=3, workers=1,
                                rounds=2, variant="svcca", naive_pairs=1, naive_seconds=0.0,
                                workdir=str(tmp_path))
    run, base = ("float64", "svcca"), bench.BASELINE
    assert configs == [run, base, run, base, base, run, base, run]  # alternated in each round
    assert calls == ["whole_process"] * 2 + ["warm_client"] * 4 + ["whole_process"] * 2
    assert report["baseline"]["whole_process"]["seconds"]["median"] == pytest.approx(2.0)
    assert report["baseline"]["warm_client"]["seconds"]["median"] == pytest.approx(1.0)
    for mode in ("whole_process", "warm_client"):
        assert report[mode]["ratio_to_baseline"]["min"] == pytest.approx(1.5)
        assert report[mode]["ratio_to_baseline"]["max"] == pytest.approx(1.5)
    configs.clear()
    alone = bench.bench_engine(n_networks=2, n_datapoints=40, n_neurons=3, workers=1, rounds=1,
                               dtype="float32", baseline=False, naive_pairs=1,
                               naive_seconds=0.0, workdir=str(tmp_path))
    assert configs == [("float32", "paper")] * 2 and "baseline" not in alone
    assert "ratio_to_baseline" not in alone["whole_process"]


def test_trained_like_layers_have_dead_units_and_need_the_second_pass():
    from cca_scale.core.basis import GRAM_MAX_CONDITION, REFINE_MAX_CONDITION, GramAccumulator

    plain = list(bench.synthetic_activations(4, 3000, 40, seed=3))
    trained = list(bench.synthetic_activations(4, 3000, 40, seed=3, trained_like=True))
    dead = bench.trained_like_dead_units(40)
    for k, ((name, a), (same, b)) in enumerate(zip(plain, trained)):
        assert name == same
        gone = np.flatnonzero(np.all(b == 0, axis=0))
        assert gone.size == dead and not np.all(a[:, gone] == 0, axis=0).any()
        kept = np.setdiff1d(np.arange(40), gone)
        if k % 2 == 0:  # the plain network, its dead units aside
            np.testing.assert_array_equal(b[:, kept], a[:, kept])
        gram = GramAccumulator()
        gram.update(b.astype(np.float64))
        spec = gram.spectrum()
        condition = float(spec.lam[-1] / spec.lam[0])
        assert spec.lam.shape == (40 - dead,)
        assert (condition > GRAM_MAX_CONDITION) == bool(k % 2)  # scaled: beyond the Gram path
        assert condition < REFINE_MAX_CONDITION


def test_trained_like_floor_counts_the_ranks(monkeypatch, tmp_path):
    _fake_runs(monkeypatch, {"whole_process": 2.0, "warm_client": 1.0})
    report = bench.bench_engine(n_networks=2, n_datapoints=60, n_neurons=40, workers=1,
                                rounds=1, naive_pairs=1, naive_seconds=0.0,
                                workdir=str(tmp_path), trained_like=True)
    assert report["workload"]["trained_like"] and report["workload"]["rank"] == 38
    assert report["floor"]["flops"] == bench.gemm_floor_flops(n_networks=2, n_datapoints=60,
                                                              n_neurons=38)
    with pytest.raises(bench_errors.CcaScaleError, match="netrep.*dead units"):
        bench.bench_engine(n_networks=2, n_datapoints=60, n_neurons=40, workers=1, rounds=1,
                           against="netrep", trained_like=True, workdir=str(tmp_path))


def test_whole_process_option_times_only_the_process(monkeypatch, tmp_path):
    calls = _fake_runs(monkeypatch, {"whole_process": 2.0, "warm_client": 1.0})
    report = bench.bench_engine(n_networks=2, n_datapoints=40, n_neurons=3, workers=1,
                                rounds=2, whole_process=True, naive_pairs=1,
                                naive_seconds=0.0, workdir=str(tmp_path))
    assert calls == ["whole_process", "whole_process"]
    assert "warm_client" not in report and "speedup_warm_client" not in report["naive"]


def test_peer_speedup_uses_the_peer_median(monkeypatch, tmp_path):
    _fake_runs(monkeypatch, {"whole_process": 2.0, "warm_client": 1.0})
    monkeypatch.setattr(bench, "run_peer_netrep", lambda **kw: {
        "name": "netrep", "helper_seconds": bench.summarize([5.0, 6.0, 9.0]),
        "cached_loop_seconds": bench.summarize([1.0])})
    report = bench.bench_engine(n_networks=2, n_datapoints=40, n_neurons=3, workers=1,
                                rounds=1, naive_pairs=1, naive_seconds=0.0, against="netrep",
                                peer_python="python", workdir=str(tmp_path))
    peer = report["peer"]
    assert peer["speedup_whole_process_vs_helper"] == pytest.approx(3.0)
    assert peer["speedup_warm_client_vs_helper"] == pytest.approx(6.0)
    assert peer["speedup_whole_process_vs_cached_loop"] == pytest.approx(0.5)
    assert peer["speedup_warm_client_vs_cached_loop"] == pytest.approx(1.0)


def test_missing_peer_says_how_to_get_it(monkeypatch):
    from cca_scale.errors import CcaScaleError

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CcaScaleError, match="--make-venv .* --peer-python"):
        bench.find_peer_python("netrep", None)
    assert bench.find_peer_python("netrep", "/some/python") == "/some/python"
    with pytest.raises(CcaScaleError, match="must be 'netrep'"):
        bench.find_peer_python("anatome", None)


def test_table_shows_min_median_max():
    assert _shown({"min": 1.0, "median": 2.5, "max": 1234.5}) == "1 / 2.5 / 1,234"
    lines = list(_lines({"floor": {"seconds": {"min": 1.0, "median": 2.0, "max": 3.0}},
                         "naive": {"method": "x"}}))
    assert lines[0] == "  floor:" and lines[1].split() == ["seconds", "1", "/", "2", "/", "3"]


def test_help_teaches_the_floor_and_the_figures(capsys):
    from cca_scale.cli.main import main

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = capsys.readouterr().out
    for phrase in ("GEMM floor", "m * (N*d)^2", "passes over the", "original_pwcca_similarity",
                   "--against", "--json", "--rounds", "--whole-process"):
        assert phrase in text


@pytest.mark.parametrize("mode", [[], ["--core"], ["--compare-single"]])
def test_trained_like_reaches_every_bench_mode(monkeypatch, mode):
    from cca_scale.cli.main import main

    seen = {}
    for name in ("bench_engine", "bench_core", "bench_metrics"):
        monkeypatch.setattr(bench, name, lambda *a, _name=name, **kw: (
            seen.update({_name: kw.get("trained_like")}), {"shape": "stub"})[1])
    main(["bench", "--trained-like", "--networks", "2", "--datapoints", "10", "--neurons", "3",
          *mode])
    assert list(seen.values()) == [True]


def test_peer_script_cached_loop_equals_netreps_helper():
    pytest.importorskip("netrep")
    spec = importlib.util.spec_from_file_location("peer_netrep", bench.PEER_SCRIPT)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    data = peer.load_networks(4, 300, 6, seed=0, dtype=np.float64)
    np.testing.assert_allclose(peer.cached_loop_all_pairs(data), peer.helper_all_pairs(data),
                               atol=1e-12)


@pytest.mark.slow
def test_real_run_records_what_the_report_reads(tmp_path):
    """One tiny real run: the engine's recorded timings and run summary have the keys read."""
    report = bench.bench_engine(n_networks=3, n_datapoints=120, n_neurons=5, workers=1,
                                rounds=1, naive_pairs=1, naive_seconds=0.0,
                                workdir=str(tmp_path))
    for mode in ("whole_process", "warm_client"):
        part = report[mode]
        assert part["bytes_read"] is not None  # recorded in the output's timings by both
        assert part["passes_over_data"]["median"] == pytest.approx(1.0)  # each network once
        assert {"io", "gemm", "pairs"} <= set(part["phase_shares"])
        assert all(math.isfinite(v) for v in part["engine_wall_seconds"].values())
