#!/usr/bin/env bash
# Runs on the GPU machine, from the repository root, after pack.sh put the CUDA training
# programs in $PACK (default build-cuda/device): both test programs, then the throughput
# benchmark, then the PyTorch baseline of the same model. Full logs go to $OUT.
#   usage: tools/device/run_cuda_train.sh [benchmark filter] [torch modes...]
# e.g. run_cuda_train.sh 'TrainStep|ForwardLoss' tf32 bf16 compile compile+adamw
set -uo pipefail
pack=${PACK:-build-cuda/device}
out=${OUT:-/tmp}
filter=${1:-.}
shift || true
cublas=$(find /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda*/targets /opt /usr/lib -name 'libcublas.so.13*' 2>/dev/null | head -1)
export LD_LIBRARY_PATH="$(cd "$pack/lib" && pwd):$(dirname "${cublas:-/usr/local/cuda/lib64/x}"):${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader
echo "cuBLAS: ${cublas:-not found}"
status=0
for t in test_cuda_ops test_cuda_train; do
  "$pack/bin/$t" >"$out/$t.txt" 2>&1
  rc=$?
  status=$((status | rc))
  echo "== $t: exit $rc"
  grep -E '^\[  (PASSED|FAILED|SKIPPED) |^  [a-z].* loss |Failure|error' "$out/$t.txt" | head -40
done
# The CPU reference's results can depend on the host CPU (OpenBLAS and Highway pick kernels at
# run time): rerun the GPU-vs-CPU comparison with OpenBLAS held to its AVX2 kernels.
echo "host CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) avx512f: $(grep -c -m1 avx512f /proc/cpuinfo)"
OPENBLAS_CORETYPE=Haswell "$pack/bin/test_cuda_train" --gtest_filter='Configs/*' >"$out/test_cuda_train_haswell_blas.txt" 2>&1
echo "== test_cuda_train with OPENBLAS_CORETYPE=Haswell: exit $?"
grep -E '^\[  (PASSED|FAILED) |^  [a-z].* loss ' "$out/test_cuda_train_haswell_blas.txt" | head -12
"$pack/bin/bench_cuda_train" --benchmark_filter="$filter" --benchmark_min_time=${MIN_TIME:-0.5} \
  --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
  --benchmark_out="$out/bench_cuda_train.json" --benchmark_out_format=json 2>&1 |
  tee "$out/bench_cuda_train.txt" | grep -E 'median|device|Run on|^---|^Benchmark'
if [ $# -gt 0 ]; then
  PYTHONUNBUFFERED=1 python3 tools/torch_train_bench.py "$@" 2>&1 | tee "$out/torch_train_bench.txt"
fi
exit $status
