#!/usr/bin/env bash
# The kit's checks on a CUDA machine, in one go (about 5 minutes on one H200):
#   1. tests/test_gpu.py: attacks, a run, a sweep's worker processes, resuming and structured pruning on the GPU
#      (the rest of the suite pins the kit to the CPU; TESTS=... runs other tests here);
#   2. the paper preset's cost, with the training step timed on this GPU (bench/estimate_paper_cost.py);
#   3. the MNIST quick Figure 1, 3 seeds, scope `all` and scope `reference`, on the GPU.
# Everything it writes goes under $OUT (default: a new gpu-check/DATE-TIME/): log.txt, tests.log and the two
# Figure 1 folders.
# SCOPES="all" runs step 3 for one scope, SCOPES="" leaves it out.
#
#     PWOA_DATA_ROOT=/path/to/data bash bench/gpu_check.sh            # with the kit installed (make install)
#     PYTHON=python3 PYTHONPATH=$PWD bash bench/gpu_check.sh           # or from the source tree
#
# Each step has its own time limit (seconds: T_TESTS, T_COST, T_FIG1), so one slow step cannot eat the others.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check/$(date +%Y%m%d-%H%M%S)}  # a new folder each time: an earlier check is never overwritten
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
export PWOA_CACHE_DIR=${PWOA_CACHE_DIR:-$(mktemp -d)} PYTHONUNBUFFERED=1
step() { echo "== $1 $(date +%T)" | tee -a "$LOG"; }

step "machine"
{ nvidia-smi -L; "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-')"; } 2>&1 | tee -a "$LOG"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "no CUDA device: nothing to check here" | tee -a "$LOG"; exit 1; }

step "tests on the GPU"
# the whole pytest output goes to tests.log
timeout "${T_TESTS:-170}" "$PY" -m pytest -q -rfEs --tb=short -p no:cacheprovider ${TESTS:-tests/test_gpu.py} \
    > "$OUT/tests.log" 2>&1
echo "tests exit status $?" | tee -a "$LOG"
tail -n 50 "$OUT/tests.log" | tee -a "$LOG"

step "paper preset cost (training step timed on this GPU)"
timeout "${T_COST:-60}" "$PY" bench/estimate_paper_cost.py 2>&1 | tail -n 30 | tee -a "$LOG"

for scope in ${SCOPES-all reference}; do
    step "MNIST quick Figure 1, scope $scope, seeds 0,1,2"
    start=$(date +%s)
    timeout "${T_FIG1:-140}" "$PY" -c "from pwoa_lab.cli import main; main()" figure1 --dataset mnist \
        --preset quick --scope "$scope" --seeds 0,1,2 --workers "${FIG1_WORKERS:-4}" --device cuda \
        --out "$OUT/mnist_$scope" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -n 40 | tee -a "$LOG"
    echo "figure1 $scope exit status ${PIPESTATUS[0]}, $(( $(date +%s) - start )) s wall" | tee -a "$LOG"
done
step "done"
