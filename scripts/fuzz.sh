#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for SECONDS (default 20) on a copy of
# its seed corpus. Exits non-zero if any fuzzer finds a crash; the reproducer is kept and named.
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail

seconds="${1:-20}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: $0 [SECONDS]  (a positive number of seconds per fuzzer)" >&2
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-fuzz"
fuzzers=(fuzz_gguf fuzz_safetensors)

CC=clang CXX=clang++ cmake -S "$root" -B "$build" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DRUVDLLM_BUILD_FUZZ=ON -DRUVDLLM_BUILD_TESTS=OFF -DRUVDLLM_BUILD_BENCH=OFF -DRUVDLLM_CUDA=OFF \
  -DRUVDLLM_SOURCE_FILTER='src/(core|io)/' >/dev/null
work="$(mktemp -d "${TMPDIR:-/tmp}/ruvdllm-fuzz-XXXXXX")"
if ! nice cmake --build "$build" -j2 --target "${fuzzers[@]}" >"$work/build.log" 2>&1; then
  cat "$work/build.log" >&2
  echo "fuzzer build failed" >&2
  exit 1
fi

# Undefined behaviour must stop the run like a crash does, not just print a warning.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
status=0
for fuzzer in "${fuzzers[@]}"; do
  corpus="$work/${fuzzer#fuzz_}-corpus"
  artifacts="$work/${fuzzer#fuzz_}-artifacts"
  mkdir -p "$corpus" "$artifacts"
  cp "$root/fuzz/corpus/${fuzzer#fuzz_}/"* "$corpus/"
  log="$work/$fuzzer.log"
  # Report leaks and out-of-memory as failures too; a parser must never allocate from an
  # unchecked count.
  if "$build/$fuzzer" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -malloc_limit_mb=512 \
      -artifact_prefix="$artifacts/" -print_final_stats=1 "$corpus" >"$log" 2>&1; then
    result="ok"
  else
    result="FAILED (crash input in $artifacts, log $log)"
    status=1
  fi
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  echo "$fuzzer: ${runs:-?} runs in ${seconds}s, corpus $(ls "$corpus" | wc -l) inputs: $result"
done

if [ "$status" -eq 0 ]; then
  rm -rf "$work"
else
  echo "see $work" >&2
fi
exit "$status"
