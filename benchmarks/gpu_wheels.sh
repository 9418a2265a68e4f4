#!/usr/bin/env bash
# Download, on a machine with network, the wheels benchmarks/gpu_check.sh installs offline on a
# bare GPU machine (CPython 3.12, manylinux x86_64, NumPy and CuPy already there), into
# benchmarks/.wheelhouse/ (git-ignored; name it in the device tool's `carry`).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: benchmarks/gpu_wheels.sh [--dest DIR] [--python-version X.Y] [-h|--help]

Downloads the wheels pinned in benchmarks/gpu_requirements.txt (no NumPy, no CuPy) for CPython
3.12 on manylinux x86_64, each with --no-deps (the list is the whole resolved set), into DIR
(default benchmarks/.wheelhouse, emptied first), and prints the total size. Fails if the total
exceeds 48 MiB (the device tool carries 64 MiB in all, the working tree included). SciPy is not
among them: with it the set is ~62 MiB, too much; the GPU machine's image has SciPy, and
gpu_check.sh deselects the few checks that need it where it is missing.

  --dest DIR           where the wheels go
  --python-version V   target CPython version (default 3.12), e.g. 3.11 to validate here
  PYTHON=...           the interpreter whose pip downloads (default python3)
EOF
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="$here/.wheelhouse"
pyver="3.12"
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --dest) dest="$2"; shift 2 ;;
        --python-version) pyver="$2"; shift 2 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
python="${PYTHON:-python3}"
limit_mib=48

rm -rf "$dest"
mkdir -p "$dest"
"$python" -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version "$pyver" --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_28_x86_64 --platform manylinux1_x86_64 \
    --platform manylinux2010_x86_64 --platform manylinux_2_12_x86_64 \
    -d "$dest" -r "$here/gpu_requirements.txt"

count=$(find "$dest" -maxdepth 1 -name '*.whl' | wc -l)
bytes=$(find "$dest" -maxdepth 1 -name '*.whl' -printf '%s\n' | awk '{s += $1} END {print s}')
mib=$(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}')
if compgen -G "$dest/numpy-*" >/dev/null || compgen -G "$dest/cupy*" >/dev/null; then
    echo "error: NumPy or CuPy in $dest: the GPU machine's own must be used" >&2
    exit 1
fi
echo "$count wheels, $mib MiB in $dest"
if awk -v m="$mib" -v l="$limit_mib" 'BEGIN {exit !(m > l)}'; then
    echo "error: $mib MiB is over the $limit_mib MiB this check allows itself" >&2
    exit 1
fi
