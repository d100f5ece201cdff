#!/usr/bin/env bash
# The whole GPU verification as one command, for a machine with an NVIDIA GPU, nvcc and a python3
# that has torch, numpy, pytest, scikit-build-core, pybind11, cmake and ninja (no network needed):
#
#   bash bench/gpu_check.sh            # build with CUDA, tests/test_cuda.py (+ the CPU index tests), benchmark
#   QUICK=1 bash bench/gpu_check.sh    # benchmark on 1M codes instead of 10M
#
# Everything printed also goes to $OUT/gpu_check.log ($OUT if set, else build/), the benchmark rows
# to $OUT/compare_gpu.json. Each stage has a time limit so the script ends within ~8 minutes on a
# 16-core H100 machine; the exit status is non-zero if any stage failed.
set -uo pipefail
cd "$(dirname "$0")/.."
DEST=${OUT:-build}
mkdir -p "$DEST"
LOG="$DEST/gpu_check.log"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
SITE=${SPQ_SITE:-/tmp/spqindex-gpu-site}
stage() { echo; echo "== $(date -u +%FT%TZ) $*"; }
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

main() {
status=0

stage "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.memory --format=csv || true
nvcc --version | tail -2 || true
"$PY" -c "import sys, numpy, torch; print(sys.version.split()[0], 'numpy', numpy.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
nproc

stage "build (SPQINDEX_CUDA=ON, sm_80 + sm_90) into $SITE"
rm -rf "$SITE"
start=$(date +%s)
if ! SPQINDEX_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) timeout 300 "$PY" -m pip install -q \
    --no-build-isolation --no-deps --no-index --target "$SITE" -Cbuild-dir=build/gpu . ; then
  echo "BUILD FAILED"; return 1
fi
echo "build took $(( $(date +%s) - start )) s"
export PYTHONPATH="$SITE"
case "$("$PY" -c 'import spqindex; print(spqindex.__file__)')" in
  "$SITE"/*) ;;
  *) echo "WARNING: spqindex is not imported from $SITE (an editable install shadows it?)";;
esac
"$PY" -c "import spqindex, spqindex.gpu as g; print('spqindex from', spqindex.__file__); print('cuda_available', spqindex.cuda_available()); print(g.device_info(0))" || status=1

stage "tests: tests/test_cuda.py (all, slow included), tests/test_index.py"
timeout 150 "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py tests/test_index.py \
  || { echo "TESTS FAILED (or timed out)"; status=1; }

stage "benchmark: bench/compare_gpu.py"
N=10000000
[ -n "${QUICK:-}" ] && N=1000000
timeout 210 "$PY" bench/compare_gpu.py --n "$N" --json "$DEST/compare_gpu.json" \
  || { echo "BENCHMARK FAILED (or timed out)"; status=1; }

stage "done, status $status"
return $status
}

main 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
