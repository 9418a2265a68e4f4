"""The CuPy path, proven and measured in one run: GPU against CPU results, then the engine's speed.

Run by ``benchmarks/gpu_check.sh`` on a GPU machine (after its offline install). Three parts:

1. **core**: every metric of ``cca_scale.core.registry.METRICS`` (and PWCCA's svcca variant where
   SciPy is installed) on one pair, ``prepare`` + ``compare``, on device arrays against NumPy
   arrays, in float64 and float32.
2. **engine**: a whole ``cca_scale.compare`` of every metric on a small synthetic store
   (``cca_scale.bench.write_synthetic_store``), ``backend='cupy'`` against ``backend='numpy'``,
   both on one in-process ``LocalCluster(processes=False, n_workers=1, threads_per_worker=1,
   resources={'GPU': 1})``, in float64 and float32.
   Parts 1 and 2 pass when max |GPU - CPU| <= 1e-10 (float64) and <= 1e-5 (float32), ranks and
   ill-posed flags equal; any failure makes the exit code 1.
3. **bench**: N x m x d (default 64 x 50,000 x 512) networks written to a store (the data made on
   the device, float32, so that writing costs only the store's own work), then one PWCCA
   comparison per dtype on the GPU: unordered pairs per second (whole comparison and pair phase),
   the GEMM rate achieved on the unavoidable GEMM work (``gemm_gflop`` over
   ``pair_phase_seconds`` from the output's timings; ``2 m d^2`` flops per unordered pair at full
   rank) against the GPU's measured GEMM rate (``matmul_gflops(xp=cupy, size=8192)``), and the
   per-phase shares of the tile tasks' seconds.

It prints one summary block (paste it into a note) and writes it as JSON to ``--out``.

Modes for machines without a GPU: ``--cpu`` (the "GPU" side is NumPy: the script's logic end to
end) and ``--standin`` (the "GPU" side is ``tests/cupy_standin.py``, a CuPy stand-in over NumPy:
the CuPy code path, dry). Both at small sizes, e.g.
``python benchmarks/gpu_check.py --cpu --networks 6 --datapoints 2000 --neurons 32``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: max |GPU - CPU| allowed, by working dtype
TOL = {"float64": 1e-10, "float32": 1e-5}
LAYER = "hidden"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--cpu", action="store_true",
                      help="no GPU: the 'GPU' side is NumPy (checks the script's logic)")
    mode.add_argument("--standin", action="store_true",
                      help="no GPU: the 'GPU' side is tests/cupy_standin.py (CuPy code path, dry)")
    p.add_argument("--networks", type=int, default=64, help="bench: N networks")
    p.add_argument("--datapoints", type=int, default=50_000, help="bench: m datapoints")
    p.add_argument("--neurons", type=int, default=512, help="bench: d neurons")
    p.add_argument("--tile", type=int, default=None, help="bench: networks per tile side "
                   "(default: the engine's choice)")
    p.add_argument("--check-networks", type=int, default=6, help="engine check: networks")
    p.add_argument("--check-datapoints", type=int, default=3000, help="engine check: datapoints")
    p.add_argument("--check-neurons", type=int, default=40, help="engine check: neurons")
    p.add_argument("--dtypes", default="float64,float32", help="working dtypes, comma-separated")
    p.add_argument("--peak-size", type=int, default=None,
                   help="matmul size for the GEMM rate (default 8192 on a GPU, 1024 with --cpu "
                        "or --standin)")
    p.add_argument("--skip-check", action="store_true", help="skip parts 1 and 2")
    p.add_argument("--skip-bench", action="store_true", help="skip part 3")
    p.add_argument("--budget", type=float, default=420.0,
                   help="seconds: a bench dtype whose predicted end passes this (from the "
                        "script's start) is skipped, and said so")
    p.add_argument("--workdir", default=None, help="where the stores go (default: a temp dir)")
    p.add_argument("--out", default=None, help="write the summary as JSON here")
    args = p.parse_args(argv)
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    for d in args.dtypes:
        if d not in TOL:
            p.error(f"--dtypes: {d!r} is not one of {list(TOL)}")
    if args.peak_size is None:
        args.peak_size = 1024 if (args.cpu or args.standin) else 8192
    return args


# -- the device ----------------------------------------------------------------------------------

@contextlib.contextmanager
def device(args):
    """Yield ``(mode, xp, backend)``: the array module and engine backend of the 'GPU' side."""
    if args.cpu:
        yield "cpu (NumPy as the GPU side)", np, "numpy"
    elif args.standin:
        sys.path.insert(0, str(ROOT / "tests"))
        import cupy_standin

        with cupy_standin.installed() as cp:
            yield "standin (tests/cupy_standin.py as CuPy)", cp, "cupy"
    else:
        import cupy

        if not cupy.cuda.is_available():
            raise SystemExit("CuPy finds no CUDA device (use --cpu or --standin without a GPU)")
        yield "gpu", cupy, "cupy"


def to_numpy(a):
    from cca_scale.core.backend import to_host

    return to_host(a)


def device_name(xp) -> str:
    if xp is np:
        return f"CPU ({platform.processor() or platform.machine()})"
    props = xp.cuda.runtime.getDeviceProperties(0)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def have_scipy() -> bool:
    import importlib.util

    return importlib.util.find_spec("scipy") is not None


def cases(scipy_ok: bool):
    """(label, metric, options) for every metric of the registry, PWCCA in both variants."""
    from cca_scale.core.registry import METRICS

    out = []
    for name, info in METRICS.items():
        variants = ("paper", "svcca") if info.takes_variant else (None,)
        for v in variants:
            if v == "svcca" and not scipy_ok:
                continue
            label = name if v in (None, "paper") else f"{name}[{v}]"
            out.append((label, name, {"variant": v} if v else {}))
    return out


# -- 1. core, one pair ---------------------------------------------------------------------------

def _pair(seed: int, n: int, dx: int, dy: int):
    """Two ReLU layers sharing latent factors, with offsets and one dead unit in ``x``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 5))
    x = np.maximum(z @ rng.normal(size=(5, dx)) + 0.6 * rng.normal(size=(n, dx))
                   + rng.uniform(-0.5, 1.0, size=dx), 0.0)
    y = np.maximum(z @ rng.normal(size=(5, dy)) + 0.6 * rng.normal(size=(n, dy))
                   + rng.uniform(-0.5, 1.0, size=dy), 0.0)
    x[:, 2] = 0.0
    return x, y


def _fields(r) -> tuple[np.ndarray, tuple]:
    """(the float fields, the exact fields) of a PairResult."""
    floats = np.array([r.forward, r.backward, r.rho_max, r.rho_min], dtype=np.float64)
    return floats, (int(r.rank_a), int(r.rank_b), bool(r.ill_posed))


def check_core(xp, dtypes, scipy_ok: bool) -> list[dict]:
    from cca_scale.core import compare, prepare

    rows = []
    for dtype in dtypes:
        for label, metric, opts in cases(scipy_ok):
            aligned = metric in ("cosine", "euclidean")
            x, y = _pair(11, 2000, 40, 40 if aligned else 30)
            want = compare(prepare(x, dtype=dtype), prepare(y, dtype=dtype), metric=metric,
                           **opts)
            got = compare(prepare(xp.asarray(x), dtype=dtype),
                          prepare(xp.asarray(y), dtype=dtype), metric=metric, **opts)
            (wf, we), (gf, ge) = _fields(want), _fields(got)
            diff = float(np.nanmax(np.abs(gf - wf))) if np.isfinite(wf).any() else 0.0
            nan_same = bool(np.array_equal(np.isnan(gf), np.isnan(wf)))
            ok = diff <= TOL[dtype] and we == ge and nan_same
            rows.append({"part": "core", "case": label, "dtype": dtype, "max_abs_diff": diff,
                         "exact_fields_equal": we == ge and nan_same, "ok": ok})
    return rows


# -- 2. a whole engine comparison ----------------------------------------------------------------

@contextlib.contextmanager
def gpu_client():
    from distributed import Client, LocalCluster

    with LocalCluster(processes=False, n_workers=1, threads_per_worker=1,
                      resources={"GPU": 1}, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        yield client


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return math.inf
    both = ~np.isnan(a)
    return float(np.max(np.abs(a[both] - b[both]))) if both.any() else 0.0


def check_engine(client, backend: str, store, workdir: Path, dtypes, scipy_ok: bool,
                 n_networks: int) -> list[dict]:
    import cca_scale
    from cca_scale.core.registry import METRICS

    tile = max(2, (n_networks + 1) // 2)  # diagonal and off-diagonal tiles
    runs = [("all metrics", list(METRICS), {})]
    if scipy_ok:
        runs.append(("pwcca[svcca]", ["pwcca"], {"variant": "svcca"}))
    rows = []
    for dtype in dtypes:
        for k, (what, metrics, opts) in enumerate(runs):
            results = {}
            for side, be in (("cpu", "numpy"), ("gpu", backend)):
                out = workdir / f"check_{dtype}_{k}_{side}.zarr"
                res = cca_scale.compare(str(store), layer=LAYER, out=str(out), metric=metrics,
                                        client=client, backend=be, dtype=dtype, tile=tile,
                                        overwrite=True, **opts)
                results[side] = res if isinstance(res, dict) else {metrics[0]: res}
            want, got = results["cpu"], results["gpu"]
            for metric in metrics:
                w, g = want[metric], got[metric]
                diff = _max_diff(np.asarray(g.values), np.asarray(w.values))
                for name in ("rho_max", "rho_min"):
                    diff = max(diff, _max_diff(np.asarray(g.diagnostics[name]),
                                               np.asarray(w.diagnostics[name])))
                exact = all(np.array_equal(np.asarray(g.diagnostics[n]),
                                           np.asarray(w.diagnostics[n]))
                            for n in ("rank_row", "rank_col", "ill_posed"))
                label = metric if not opts else f"{metric}[{opts['variant']}]"
                rows.append({"part": "engine", "case": label, "dtype": dtype,
                             "max_abs_diff": diff, "exact_fields_equal": exact,
                             "ok": diff <= TOL[dtype] and exact})
    return rows


# -- 3. the benchmark ----------------------------------------------------------------------------

def write_bench_store(xp, path: Path, n: int, m: int, d: int, seed: int = 0) -> float:
    """N networks sharing a latent signal plus their own noise, ReLU (the recipe of
    ``cca_scale.bench.synthetic_activations``), made in float32 on the device and stored through
    the public store API. Returns the seconds it took."""
    from cca_scale.store import ActivationStore

    t = time.perf_counter()
    store = ActivationStore.create(str(path), n_datapoints=m, overwrite=True)
    shared = max(1, d // 4)
    if xp is np:
        rng = np.random.default_rng(seed)
        normal = lambda shape: rng.standard_normal(shape, dtype=np.float32)  # noqa: E731
    else:
        xp.random.seed(seed)
        normal = lambda shape: xp.random.standard_normal(shape, dtype=xp.float32)  # noqa: E731
    latent = normal((m, shared))
    for k in range(n):
        acts = xp.maximum(latent @ normal((shared, d)) + 0.5 * normal((m, d)), 0.0)
        store.add(f"net{k:04d}", LAYER, to_numpy(acts), attrs={"seed": k})
    return time.perf_counter() - t


def bench_one(client, backend: str, store: Path, out: Path, dtype: str, tile, n: int, m: int,
              d: int, peak: float) -> dict:
    import cca_scale

    t = time.perf_counter()
    mat = cca_scale.compare(str(store), layer=LAYER, out=str(out), metric="pwcca",
                            client=client, backend=backend, dtype=dtype, tile=tile,
                            overwrite=True)
    seconds = time.perf_counter() - t
    tm = mat.metadata["timings"]
    pair_phase, gflop = tm["pair_phase_seconds"], tm["gemm_gflop"]
    unordered = n * (n - 1) // 2
    task = tm["task_seconds"]
    total = sum(task.values()) or math.nan
    rate = gflop / pair_phase if pair_phase else math.nan
    summary = mat.metadata.get("run_summary", {})
    return {
        "dtype": dtype,
        "tile": mat.metadata.get("tile"),
        "compare_seconds": seconds,
        "pair_phase_seconds": pair_phase,
        "unordered_pairs": unordered,
        "unordered_pairs_per_second": unordered / seconds,
        "unordered_pairs_per_second_pair_phase": unordered / pair_phase if pair_phase else None,
        "gemm_gflop": gflop,
        "gemm_gflop_full_rank": unordered * 2.0 * m * d * d / 1e9,
        "achieved_gemm_gflops": rate,
        "peak_gemm_gflops": peak,
        "fraction_of_peak": rate / peak,
        "gemm_floor_seconds": gflop / peak,
        "compare_over_floor": seconds / (gflop / peak) if gflop else None,
        "phase_shares": {k: v / total for k, v in task.items()},
        "task_seconds": task,
        "bytes_read": summary.get("bytes_read"),
        "max_abs_asymmetry": float(np.nanmax(np.abs(mat.values - mat.values.T))),
    }


def run_bench(args, xp, backend: str, client, workdir: Path, started: float,
              res: dict, save) -> None:
    """Fill ``res`` (calling ``save()`` after each step, so that a run cut short still
    leaves its figures)."""
    from cca_scale.bench import matmul_gflops

    n, m, d = args.networks, args.datapoints, args.neurons
    store = workdir / "bench.zarr"
    # the stand-in has no random module: its data are made on the host
    write_seconds = write_bench_store(np if args.standin else xp, store, n, m, d)
    res.update({"shape": f"N={n} x m={m} x d={d}", "store_write_seconds": write_seconds,
                "store_write_seconds_per_network": write_seconds / n, "runs": [], "skipped": []})
    save()
    values = {}
    last = None
    for dtype in args.dtypes:
        elapsed = time.perf_counter() - started
        if last is not None and elapsed + 1.2 * last > args.budget:
            res["skipped"].append(f"{dtype}: predicted end {elapsed + 1.2 * last:.0f} s passes "
                                  f"the {args.budget:.0f} s budget")
            continue
        t = time.perf_counter()
        peak = matmul_gflops(dtype=dtype, size=args.peak_size, xp=xp)
        run = bench_one(client, backend, store, workdir / f"bench_{dtype}.zarr", dtype,
                        args.tile, n, m, d, peak)
        res["runs"].append(run)
        values[dtype] = np.asarray(cca_scale_load(workdir / f"bench_{dtype}.zarr").values)
        last = time.perf_counter() - t
        save()
    if "float64" in values and "float32" in values:
        res["float32_vs_float64_max_abs_diff"] = _max_diff(values["float32"], values["float64"])


def cca_scale_load(path: Path):
    from cca_scale.engine.results import load_distances

    return load_distances(str(path))


# -- the summary ---------------------------------------------------------------------------------

def versions() -> dict:
    from cca_scale._env import package_versions

    names = ("numpy", "scipy", "pandas", "dask", "distributed", "zarr", "numcodecs",
             "array-api-compat", "cupy")
    return {"python": platform.python_version(), **package_versions(names)}


def summary_text(s: dict) -> str:
    lines = [f"GPU check ({s['mode']}) on {s['device']}: {'PASS' if s['ok'] else 'FAIL'}"
             f" in {s['seconds']:.0f} s"]
    v = s["versions"]
    lines.append("  " + ", ".join(f"{k} {v[k] or '-'}" for k in v))
    checks = s.get("checks", [])
    if checks:
        lines.append("  GPU vs CPU, max |difference| (tolerance 1e-10 float64, 1e-5 float32):")
        for part in ("core", "engine"):
            for dtype in TOL:
                rows = [r for r in checks if r["part"] == part and r["dtype"] == dtype]
                if not rows:
                    continue
                worst = max(r["max_abs_diff"] for r in rows)
                bad = [r["case"] for r in rows if not r["ok"]]
                lines.append(f"    {part:<6} {dtype}: {len(rows)} cases, worst {worst:.2e}"
                             + (f", FAILED: {', '.join(bad)}" if bad else ", all ok"))
    for note in s.get("notes", []):
        lines.append(f"  note: {note}")
    b = s.get("bench")
    if b and "shape" in b:
        lines.append(f"  bench {b['shape']}: store written in {b['store_write_seconds']:.1f} s "
                     f"({b['store_write_seconds_per_network']:.2f} s/network)")
        for r in b["runs"]:
            shares = ", ".join(f"{k} {v:.0%}" for k, v in r["phase_shares"].items())
            lines.append(
                f"    {r['dtype']}: tile {r['tile']}, compare {r['compare_seconds']:.1f} s, "
                f"{r['unordered_pairs_per_second']:.1f} unordered pairs/s "
                f"({r['unordered_pairs_per_second_pair_phase'] or float('nan'):.1f} in the pair "
                f"phase of {r['pair_phase_seconds']:.1f} s)")
            lines.append(
                f"      GEMM {r['gemm_gflop']:.4g} GFLOP at {r['achieved_gemm_gflops']:.4g} "
                f"GFLOP/s = "
                f"{r['fraction_of_peak']:.1%} of the measured {r['peak_gemm_gflops']:.4g} GFLOP/s;"
                f" compare / GEMM floor {r['compare_over_floor'] or float('nan'):.1f}x")
            lines.append(f"      task-seconds shares: {shares}")
        if "float32_vs_float64_max_abs_diff" in b:
            lines.append(f"    float32 vs float64 max |difference|: "
                         f"{b['float32_vs_float64_max_abs_diff']:.2e}")
        for why in b["skipped"]:
            lines.append(f"    skipped {why}")
    if s.get("error"):
        lines.append(f"  ERROR: {s['error']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    s: dict = {"argv": sys.argv[1:] if argv is None else list(argv), "ok": False, "notes": []}
    tmp = None

    def save() -> None:
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(s, indent=2, default=str) + "\n")

    if args.workdir:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="cca_gpu_check_")
        workdir = Path(tmp)
    try:
        with device(args) as (mode, xp, backend):
            s.update(mode=mode, device=device_name(xp), versions=versions())
            scipy_ok = True  # the svcca variant's kernel needs only NumPy (no SciPy LAPACK)
            if not have_scipy():
                s["notes"].append("SciPy is missing (not needed by the checks)")
            checks = []
            if not args.skip_check:
                checks += check_core(xp, args.dtypes, scipy_ok)
            with gpu_client() as client:
                if not args.skip_check:
                    from cca_scale.bench import write_synthetic_store

                    store = workdir / "check.zarr"
                    write_synthetic_store(store, n_networks=args.check_networks,
                                          n_datapoints=args.check_datapoints,
                                          n_neurons=args.check_neurons)
                    checks += check_engine(client, backend, store, workdir, args.dtypes,
                                           scipy_ok, args.check_networks)
                s["checks"] = checks
                s["checks_seconds"] = time.perf_counter() - started
                save()
                if not args.skip_bench:
                    s["bench"] = {}
                    run_bench(args, xp, backend, client, workdir, started, s["bench"], save)
            s["ok"] = all(r["ok"] for r in checks)
    except BaseException as exc:  # report what ran, then fail
        s["error"] = f"{type(exc).__name__}: {exc}"
        s.setdefault("mode", "?")
        s.setdefault("device", "?")
        s.setdefault("versions", {})
        traceback.print_exc()
    finally:
        s["seconds"] = time.perf_counter() - started
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    text = summary_text(s)
    s["summary"] = text
    print("\n" + "=" * 100 + "\n" + text + "\n" + "=" * 100, flush=True)
    save()
    return 0 if s["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
