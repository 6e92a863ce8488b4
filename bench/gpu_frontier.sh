#!/usr/bin/env bash
# The MNIST frontier (issue: is the comparison fair?) on one CUDA GPU, both scopes, 3 seeds:
# rates 4, 8, 16; naive, kd and PwoA at learning-rate factors 0.1, 1/3, 1, 3 of the quick preset (epochs x1), the
# one-shot control and the teacher. Each scope is its own `pwoa-lab frontier` command with its own time limit
# (seconds: T_ALL, T_REFERENCE), so a slow first scope cannot eat the second.
#
#     PWOA_DATA_ROOT=/path/to/data bash bench/gpu_frontier.sh                  # with the kit installed
#     PYTHON=python3 PYTHONPATH=$PWD PWOA_DATA_ROOT=... bash bench/gpu_frontier.sh   # from the source tree
#
# Writes under $OUT (default: a new gpu-frontier/DATE-TIME/): log.txt and, per scope, the frontier's CSV and plot.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-frontier/$(date +%Y%m%d-%H%M%S)}
PY=${PYTHON:-.venv/bin/python}
WORKERS=${WORKERS:-12}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
export PWOA_CACHE_DIR=${PWOA_CACHE_DIR:-$(mktemp -d)} PYTHONUNBUFFERED=1
{ nvidia-smi -L; nproc; "$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"; } \
    2>&1 | tee -a "$LOG"
for scope in all reference; do
    limit_var="T_${scope^^}"
    echo "== MNIST frontier, scope $scope, $(date +%T)" | tee -a "$LOG"
    start=$(date +%s)
    timeout "${!limit_var:-300}" "$PY" -c "from pwoa_lab.cli import main; main()" frontier --dataset mnist \
        --preset quick --scope "$scope" --rates 4,8,16 --methods naive,kd,pwoa --budgets lr=0.1,1/3,1,3 epochs=1 \
        --seeds 0,1,2 --workers "$WORKERS" --device cuda --out "$OUT/$scope" 2>&1 \
        | tr '\r' '\n' | grep -v "it/s\]$\|s/it\]$" | tail -n 80 | tee -a "$LOG"
    echo "frontier $scope exit status ${PIPESTATUS[0]}, $(( $(date +%s) - start )) s wall" | tee -a "$LOG"
done
