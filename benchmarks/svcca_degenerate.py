"""How ``pwcca_distance(..., variant='svcca')`` and the engine compare with the original
implementation (google/svcca ``compute_pwcca``) on degenerate layers.

    .venv/bin/python benchmarks/svcca_degenerate.py [--seeds 100]

For each class of layers (see ``tests/test_core_degenerate.py``: duplicated, collinear and dead
units, exact low rank plus 1e-6 noise, n just above d, float32 ReLU layers, ill-posed pairs, and
plain layers as a control) and each seed, four ordered pairs (degenerate against plain and
against degenerate, both ways; ``ill_posed``: two 64-unit layers over 70 datapoints, both ways)
are compared four ways:

* ``original``: the test oracle, a transcription of the original (commit 1f3fbf1 with its PR #9
  fix, kept-neuron means) that lives in ``tests/test_core_degenerate.py``; never imported by the
  library. "Defined" means no NaN, no LinAlgError, and correlations in [0, 1].
* ``one-pair``: ``cca_scale.pwcca_distance(x, y, variant='svcca')``.
* ``engine``: the engine's per-pair route, in process: bases streamed with ``BasisAccumulator``
  (as ``prepare_task``), the cross product accumulated chunk by chunk from projected datapoints
  (as ``tile_task``), then ``pair_distances`` with per-layer ``SvccaSide``.
* ``original, rows permuted``: the original on the same layers with the datapoints reordered,
  which changes rounding and nothing else.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import cca_scale  # noqa: E402
from cca_scale.core import BasisAccumulator  # noqa: E402
from cca_scale.core.pairs import SvccaSide, pair_distances  # noqa: E402
from test_core_degenerate import (  # noqa: E402  (the test oracle and the layer classes)
    EPS,
    degenerate_layers,
    original_distance,
)

CLASSES = ("plain", "dup1", "dup2", "collinear", "dead", "lowrank", "n_above_d", "float32",
           "ill_posed")
CHUNK = 97  # datapoints per streamed chunk (not a divisor of n: a short last chunk)


def engine_route(x, y):
    """``d(x, y)`` as the engine's tile task computes it, without the store."""
    bases = []
    for arr in (x, y):
        acc = BasisAccumulator(dtype="float64")
        for start in range(0, len(arr), CHUNK):
            acc.update(np.asarray(arr[start:start + CHUNK], np.float64))
        bases.append(acc.finalize())
    a, b = bases
    cross = np.zeros((a.rank, b.rank))
    for start in range(0, len(x), CHUNK):
        qa = a.project(np.asarray(x[start:start + CHUNK], np.float64))
        qb = b.project(np.asarray(y[start:start + CHUNK], np.float64))
        cross += qa.T @ qb
    sides = (SvccaSide.of(a, EPS), SvccaSide.of(b, EPS))
    return pair_distances(cross, a, b, metric="pwcca", variant="svcca", epsilon=EPS, sides=sides,
                          both=False).forward


def pairs_of(kind, seed):
    if kind == "ill_posed":
        rng = np.random.default_rng(seed)
        z = rng.normal(size=(70, 10))
        x, y = (z @ rng.normal(size=(10, 64)) + 0.5 * rng.normal(size=(70, 64)) for _ in "xy")
        return [(x, y), (y, x)]
    layers = degenerate_layers(kind, seed)
    return [(layers[0], layers[1]), (layers[1], layers[0]), (layers[0], layers[2]),
            (layers[2], layers[0])]


def measure(kind, seeds):
    s = dict(cases=0, defined=0, out_of_range=0, undefined=0, diff_original=0.0,
             undefined_min=np.inf, undefined_max=-np.inf, undefined_engine=0.0,
             engine_original=0.0, engine_departs=0, warned=0, engine_one_quiet=0.0,
             engine_one_warned=0.0, original_perm=0.0, perm_moves=0)
    for seed in range(seeds):
        for x, y in pairs_of(kind, 1000 + seed):
            s["cases"] += 1
            want, in_range = original_distance(x, y)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                one = cca_scale.pwcca_distance(x, y, variant="svcca")
            warned = any(issubclass(w.category, RuntimeWarning) for w in caught)
            s["warned"] += warned
            eng = engine_route(x, y)
            key = "engine_one_warned" if warned else "engine_one_quiet"
            s[key] = max(s[key], abs(eng - one))
            if want is not None and in_range:
                s["defined"] += 1
                s["diff_original"] = max(s["diff_original"], abs(one - want))
                s["engine_original"] = max(s["engine_original"], abs(eng - want))
                s["engine_departs"] += abs(eng - want) > 1e-9
                perm = np.random.default_rng(seed).permutation(len(x))
                moved, ok = original_distance(x[perm], y[perm])
                if moved is not None and ok:
                    s["original_perm"] = max(s["original_perm"], abs(moved - want))
                    s["perm_moves"] += abs(moved - want) > 1e-9
            else:
                s["undefined"] += 1
                s["out_of_range"] += want is not None
                s["undefined_min"] = min(s["undefined_min"], one)
                s["undefined_max"] = max(s["undefined_max"], one)
                s["undefined_engine"] = max(s["undefined_engine"], abs(eng - one))
    return s


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--classes", nargs="*", default=list(CLASSES))
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    print(f"seeds per class: {args.seeds}; figures are max |difference| over the cases counted")
    print("| class | pairs | original defined: max diff one-pair vs original | engine vs "
          "original: max diff (pairs > 1e-9) | original with rows permuted: max move (pairs > "
          "1e-9) | original undefined (of which rho > 1): cca_scale value range, max diff "
          "engine vs one-pair | RuntimeWarning | engine vs one-pair, no warning |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in args.classes:
        s = measure(kind, args.seeds)
        rng_txt = (f"[{s['undefined_min']:.3f}, {s['undefined_max']:.3f}], "
                   f"{s['undefined_engine']:.1e}" if s["undefined"] else "-")
        print(f"| {kind} | {s['cases']} | {s['defined']}: {s['diff_original']:.1e} | "
              f"{s['engine_original']:.1e} ({s['engine_departs']}) | "
              f"{s['original_perm']:.1e} ({s['perm_moves']}) | "
              f"{s['undefined']} ({s['out_of_range']}): {rng_txt} | {s['warned']} | "
              f"{s['engine_one_quiet']:.1e} |", flush=True)
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
