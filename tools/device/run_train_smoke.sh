#!/usr/bin/env bash
# Runs on the GPU machine from the repository root: the whole `ruvdllm train` loop of the
# default model's shape (tools/device/train_smoke.toml: 16 x 512 tokens per step, evaluation
# and a checkpoint every 150 steps) once per precision given, and prints the loss curve's ends
# and the median tokens/s of the steps (log.jsonl). Needs data/ and the ruvdllm program.
#   usage: tools/device/run_train_smoke.sh RUVDLLM [precision...]   (default: bf16 tf32)
set -uo pipefail
ruvdllm=$1
shift
out=${OUT:-/tmp}
precisions=("$@")
[ ${#precisions[@]} -eq 0 ] && precisions=(bf16 tf32)
for precision in "${precisions[@]}"; do
  dir=/tmp/train-smoke-$precision
  rm -rf "$dir"
  "$ruvdllm" train tools/device/train_smoke.toml --precision "$precision" --out "$dir" \
    >"$out/train_smoke_$precision.txt" 2>&1
  echo "== ruvdllm train --precision $precision: exit $?"
  head -1 "$out/train_smoke_$precision.txt"
  grep -E 'held-out|wrote' "$out/train_smoke_$precision.txt" | head -4
  python3 - "$dir/log.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
# tokens_per_s is the run's average so far over the steps alone (evaluation and checkpoints
# excluded), so the last line's is the whole run's.
tail = statistics.mean(r["loss"] for r in rows[-20:])
print(f"steps {rows[-1]['step']}: loss {rows[0]['loss']:.3f} -> {tail:.3f} (mean of the last 20), "
      f"{rows[-1]['tokens_per_s']:,.0f} tokens/s over the steps")
PY
done
