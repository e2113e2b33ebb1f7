#!/usr/bin/env bash
# Runs on the GPU machine, from the repository root, after pack.sh put the inference programs
# (the CLI and the CUDA inference tests and benchmarks) in $PACK: tests first, then kernel
# benchmarks, then whole steps of the default model and of random 8B LLaDA models against the
# device's measured floor. Full logs go to $OUT; a short summary to stdout.
#   usage: tools/device/run_gpu_infer.sh [tests|kernels|default|8b]...  (default: all four)
set -uo pipefail
pack=$(cd "${PACK:-build-gpu/device}" && pwd)
out=${OUT:-/tmp}
parts=${*:-tests kernels default 8b}
cublas=$(find /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda*/targets /opt /usr/lib -name 'libcublas.so.13*' 2>/dev/null | head -1)
export LD_LIBRARY_PATH="$pack/lib:$(dirname "${cublas:-/usr/local/cuda/lib64/x}"):${LD_LIBRARY_PATH:-}"
# The test programs look for the sources (models/default.gguf) and the CLI at the paths they
# were built with (SRC_DIR, BUILD_DIR below); make those exist on this machine.
src_dir=${SRC_DIR:-/work/main}
build_dir=${BUILD_DIR:-build-gpu}
if [ ! -e "$src_dir" ]; then mkdir -p "$(dirname "$src_dir")" && ln -s "$PWD" "$src_dir"; fi
mkdir -p "$src_dir/$build_dir" && cp "$pack/bin/ruvdllm" "$src_dir/$build_dir/ruvdllm"
cli="$pack/bin/ruvdllm"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
status=0
for part in $parts; do
  case $part in
    tests)
      for t in test_infer_kernels test_flash_attention test_cuda_sampling test_cuda_infer test_cuda_ops test_cuda_train; do
        [ -x "$pack/bin/$t" ] || continue
        "$pack/bin/$t" >"$out/$t.txt" 2>&1
        rc=$?
        status=$((status | rc))
        echo "== $t: exit $rc"
        grep -E '^\[  (PASSED|FAILED|SKIPPED) |Failure|error|ties within|Expected|Which is|actual' "$out/$t.txt" | head -30
      done ;;
    kernels)
      for b in bench_cuda_infer_kernels bench_cuda_attention bench_cuda_sampling; do
        [ -x "$pack/bin/$b" ] || continue
        echo "== $b"
        "$pack/bin/$b" --benchmark_min_time=0.2 >"$out/$b.txt" 2>&1
        grep -vE '^-+$|^Run on|^CPU Caches|^  L[123]|^Load Average|^\*\*\*' "$out/$b.txt" | head -40
      done ;;
    default)
      echo "== default model, one step"
      "$cli" bench gpu-step models/default.gguf --positions 128,256,512 --profile 2>&1 | tee "$out/step_default.txt"
      "$cli" bench gpu-step models/default.gguf --positions 256,512 --no-graph 2>&1 | tail -3
      echo "== default model, generation (CPU then GPU)"
      "$cli" bench generate -m models/default.gguf -n 256 -s 64 -b 32 --prompt-len 32 2>&1 | tail -3
      "$cli" bench generate -m models/default.gguf -n 256 -s 64 -b 32 --prompt-len 32 --device cuda 2>&1 | tail -3
      "$cli" generate -p 'The history of the city' --gen-len 64 --steps 32 --device cuda -m models/default.gguf ;;
    8b)
      for type in bf16 q4_K; do
        model=/tmp/llada-8b-$type.gguf
        start=$(date +%s)
        "$cli" init --arch llada --shape 8b --type $type --seed 1 "$model" >/dev/null 2>&1 || { echo "init $type failed"; status=1; continue; }
        echo "== 8B $type (init $(( $(date +%s) - start )) s)"
        modes=quantized
        [ $type = q4_K ] && modes="quantized bf16"
        for mode in $modes; do
          "$cli" bench gpu-step "$model" --positions 256,512 --gpu-weights $mode --profile 2>&1 | tee -a "$out/step_8b.txt"
        done
        "$cli" bench generate -m "$model" -n 256 -s 64 -b 32 --prompt-len 32 --device cuda 2>&1 | tail -3 | tee -a "$out/gen_8b.txt"
        rm -f "$model"
      done ;;
  esac
done
exit $status
