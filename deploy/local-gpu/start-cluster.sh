#!/bin/bash
# A long-lived Dask cluster on one multi-GPU machine, for several `cca-scale compare --scheduler`
# runs (for a single run, `cca-scale compare ... --cluster local-gpu` starts and stops its own).
#
#   deploy/local-gpu/start-cluster.sh            # runs until Ctrl-C / SIGTERM
#   cca-scale compare acts.zarr --layer fc1 --out fc1.zarr --gpu \
#       --scheduler "$(python -c 'import json; print(json.load(open("'"$HOME"'/.cca-scale/local-gpu/scheduler.json"))["address"])')"
#
# Scheduler, workers and dashboard listen on 127.0.0.1 only: nothing is reachable from other
# machines (on a machine shared with other users, loopback is shared too: add TLS as in
# deploy/README.md). One `dask cuda worker` starts one single-threaded worker per GPU, each
# pinned to its GPU, declaring the resource GPU=1, with an RMM pool that CuPy allocates from.
#
# Settings (environment variables):
#   CCA_RUN_DIR=~/.cca-scale/local-gpu   scheduler file and logs
#   CCA_PORT=8786                        scheduler port (0: any free port)
#   CCA_RMM_POOL_SIZE=0.8                RMM pool per GPU (fraction of device memory, or 40GB)
#   CCA_DEVICES                          GPUs to use, e.g. 0,1 (default: all visible)
#   CCA_WORKERS=gpu|cpu                  cpu: one single-threaded worker per core, no GPU
set -euo pipefail

RUN_DIR=${CCA_RUN_DIR:-$HOME/.cca-scale/local-gpu}
PORT=${CCA_PORT:-8786}
CCA_WORKERS=${CCA_WORKERS:-gpu}
SCHEDULER_FILE=$RUN_DIR/scheduler.json

umask 077
mkdir -p "$RUN_DIR"
rm -f "$SCHEDULER_FILE"

SCHEDULER_PID=
WORKERS_PID=
cleanup() {
    [[ -n "$WORKERS_PID" ]] && kill -TERM "$WORKERS_PID" 2>/dev/null || true
    [[ -n "$WORKERS_PID" ]] && wait "$WORKERS_PID" 2>/dev/null || true
    [[ -n "$SCHEDULER_PID" ]] && kill -TERM "$SCHEDULER_PID" 2>/dev/null || true
    [[ -n "$SCHEDULER_PID" ]] && wait "$SCHEDULER_PID" 2>/dev/null || true
    rm -f "$SCHEDULER_FILE"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

dask scheduler --host 127.0.0.1 --port "$PORT" --scheduler-file "$SCHEDULER_FILE" \
    --dashboard-address 127.0.0.1:8787 >"$RUN_DIR/scheduler.log" 2>&1 &
SCHEDULER_PID=$!
for _ in $(seq 120); do
    [[ -s "$SCHEDULER_FILE" ]] && break
    kill -0 "$SCHEDULER_PID" 2>/dev/null || break
    sleep 0.5
done
if [[ ! -s "$SCHEDULER_FILE" ]]; then
    echo "the scheduler did not start; see $RUN_DIR/scheduler.log" >&2
    exit 1
fi

if [[ "$CCA_WORKERS" == gpu ]]; then
    if [[ -n "${CCA_DEVICES:-}" ]]; then export CUDA_VISIBLE_DEVICES=$CCA_DEVICES; fi
    dask cuda worker --scheduler-file "$SCHEDULER_FILE" --host 127.0.0.1 --nthreads 1 \
        --resources GPU=1 --rmm-pool-size "${CCA_RMM_POOL_SIZE:-0.8}" \
        --set-rmm-allocator-for-libs cupy --no-dashboard --local-directory "${TMPDIR:-/tmp}" \
        --preload cca_scale.engine.tasks \
        >"$RUN_DIR/workers.log" 2>&1 &
else
    dask worker --scheduler-file "$SCHEDULER_FILE" --host 127.0.0.1 --nthreads 1 \
        --nworkers "$(nproc)" --no-dashboard --local-directory "${TMPDIR:-/tmp}" \
        --preload cca_scale.engine.tasks \
        >"$RUN_DIR/workers.log" 2>&1 &
fi
WORKERS_PID=$!

ADDRESS=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["address"])' \
    "$SCHEDULER_FILE")
echo "cluster at $ADDRESS (scheduler file $SCHEDULER_FILE, logs in $RUN_DIR); Ctrl-C stops it"
echo "dashboard on 127.0.0.1 (its port is in $RUN_DIR/scheduler.log)"
wait "$WORKERS_PID"
