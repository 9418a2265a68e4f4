#!/usr/bin/env bash
# The CuPy path, proven and measured on a bare GPU machine in one call (about 3-6 minutes on one
# H200): offline install of the carried wheels, `pytest -m gpu`, then benchmarks/gpu_check.py
# (GPU vs CPU for every metric, pairs/s and the fraction of the GEMM rate at 64 x 50,000 x 512).
#
# Before the call, here (with network), from the repository root:
#     benchmarks/gpu_wheels.sh        # -> benchmarks/.wheelhouse/, ~28 MiB, git-ignored
# The device tool call (from the repository root; its files come back under $OUT):
#     run(command='bash benchmarks/gpu_check.sh --out "$OUT"',
#         carry=["benchmarks/.wheelhouse"], timeout_s=540)
# Then read $OUT/gpu_check.json ("summary" holds the block printed at the end) and
# $OUT/gpu_check.log.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bash benchmarks/gpu_check.sh [--out DIR] [--wheels DIR] [--site DIR] [--skip-tests]
                                    [-h|--help] [GPU_CHECK_ARGS...]

On a GPU machine with Python 3.12, NumPy and CuPy but no network:
  1. installs the wheels of DIR (default benchmarks/.wheelhouse, made by gpu_wheels.sh) and
     cca_scale itself (--no-deps, from this tree) with pip --target into --site
     (default /tmp/cca_gpu_site), put on PYTHONPATH. Not a venv: the machine's python3 is
     itself a venv, and a venv made from it with --system-site-packages would not see its
     NumPy, CuPy and torch.
  2. python3 -m pytest -m gpu on the test files that hold gpu-marked tests (the dask-cuda ones
     skip; PWCCA's svcca-variant cases are deselected where SciPy is missing);
  3. python3 benchmarks/gpu_check.py --out DIR/gpu_check.json GPU_CHECK_ARGS (see its --help;
     e.g. --networks 32 to shorten the benchmark, --cpu or --standin without a GPU).
Writes DIR/gpu_check.log (everything printed) and DIR/gpu_check.json (default DIR:
./gpu_check_out). Exit code 1 if the tests or the checks fail.
  PYTHON=...   the interpreter (default python3)
EOF
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="./gpu_check_out"
wheels="$root/benchmarks/.wheelhouse"
site="/tmp/cca_gpu_site"
skip_tests=0
check_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --out) out="$2"; shift 2 ;;
        --wheels) wheels="$2"; shift 2 ;;
        --site) site="$2"; shift 2 ;;
        --skip-tests) skip_tests=1; shift ;;
        *) check_args+=("$1"); shift ;;
    esac
done
python="${PYTHON:-python3}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$root"
exec > >(tee "$out/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1

echo "== install ($(date -u +%FT%TZ)): $(compgen -G "$wheels/*.whl" | wc -l) wheels from $wheels"
if ! compgen -G "$wheels/*.whl" >/dev/null; then
    echo "error: no wheels in $wheels: run benchmarks/gpu_wheels.sh first, and carry that folder"
    exit 1
fi
"$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --disable-pip-version-check --target "$site" "$wheels"/*.whl
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
if ! "$python" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
        --no-cache-dir --upgrade --disable-pip-version-check --target "$site" "$root"; then
    echo "warning: cca_scale did not install (setuptools?); using it from $root on PYTHONPATH"
    export PYTHONPATH="$root:$PYTHONPATH"
fi
"$python" - <<'EOF'
import importlib.util
import cca_scale, cca_scale.engine, cca_scale.store.activation_store  # noqa: F401
from cca_scale._env import versions_text
print(versions_text())
print("scipy:", "yes" if importlib.util.find_spec("scipy") else "MISSING")
EOF
echo "== install done at ${SECONDS} s"

tests_rc=0
if [[ $skip_tests == 0 ]]; then
    mapfile -t files < <(grep -l "pytest.mark.gpu" tests/test_*.py)
    select=()
    if ! "$python" -c "import scipy.linalg" 2>/dev/null; then
        echo "SciPy is missing: deselecting the svcca-variant cases"
        select=(-k "not svcca")
    fi
    echo "== pytest -m gpu ${files[*]}"
    "$python" -m pytest -m gpu -q -rs -p no:cacheprovider "${select[@]}" "${files[@]}" \
        || tests_rc=$?
    echo "== pytest done at ${SECONDS} s (exit code $tests_rc)"
fi

echo "== gpu_check.py ${check_args[*]}"
check_rc=0
"$python" benchmarks/gpu_check.py --out "$out/gpu_check.json" "${check_args[@]}" || check_rc=$?
echo "== all done at ${SECONDS} s: pytest exit code $tests_rc, gpu_check.py exit code $check_rc"
[[ $tests_rc == 0 && $check_rc == 0 ]]
