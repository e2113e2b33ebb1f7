#!/usr/bin/env bash
# Runs on a GPU machine with at least 2 GPUs, from the repository root, after pack.sh put
# test_cuda_multi_gpu, test_cuda_train, bench_cuda_train and ruvdllm in $PACK/bin: the
# multi-GPU tests, the single-GPU training tests (regression), training tokens/s of the
# default model's shape on 1 and 2 GPUs (same global batch), and `ruvdllm train --devices 0,1`
# end to end: a straight run against an interrupted-and-resumed one (identical losses
# expected) and against one GPU. DATA holds tokenizer.json and a token shard folder `shard`
# (e.g. data/tokens/prose/heldout). Logs go to $OUT.
#   usage: tools/device/run_multi_gpu.sh PACK DATA
# NVLink multicast (NVLS) stays off: the lent machines must not use it.
set -uo pipefail
pack=$(cd "$1" && pwd)
data=$(cd "$2" && pwd)
out=${OUT:-/tmp}
export NCCL_NVLS_ENABLE=0
nccl=$(find /usr/local/cuda*/ -name 'libnccl.so*' 2>/dev/null | head -1)
[ -n "$nccl" ] || nccl=$(find / -name 'libnccl.so*' -not -path '/proc/*' 2>/dev/null | head -1)
cublas=$(find /usr/local/cuda*/ /usr/lib /opt -name 'libcublas.so.13*' 2>/dev/null | head -1)
export LD_LIBRARY_PATH="$pack/lib:$(dirname "${nccl:-/x/x}"):$(dirname "${cublas:-/x/x}"):${LD_LIBRARY_PATH:-}"
nvidia-smi -L
echo "NCCL: ${nccl:-not found}; cuBLAS: ${cublas:-not found}"
status=0
for t in test_cuda_multi_gpu:60 test_cuda_train:80; do
  limit=${t#*:}
  t=${t%:*}
  timeout "$limit" "$pack/bin/$t" >"$out/$t.txt" 2>&1
  rc=$?
  status=$((status | rc))
  echo "== $t: exit $rc"
  grep -E '^\[  (PASSED|FAILED|SKIPPED) |^  [a-z0-9].*(GPU|loss)|Failure|error' "$out/$t.txt" | head -20
done

# Google Benchmark 1.7 (the packed library) takes --benchmark_min_time in plain seconds.
# NCCL_DEBUG=INFO names the transport NCCL chose between the GPUs (P2P/NVLink, SHM, ...).
NCCL_DEBUG=INFO timeout 60 "$pack/bin/bench_cuda_train" \
  --benchmark_filter='DataParallelStep|AllReduceGradients' \
  --benchmark_min_time=0.5 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
  --benchmark_out="$out/bench_multi_gpu.json" --benchmark_out_format=json >"$out/bench_multi_gpu.txt" 2>&1
echo "== bench_cuda_train DataParallelStep|AllReduceGradients: exit $?"
grep -E 'median|device' "$out/bench_multi_gpu.txt"
grep -m3 -E 'via (P2P|SHM|NET)|NCCL version' "$out/bench_multi_gpu.txt"

# `ruvdllm train`: constant learning rate, so a run cut at step 8 and resumed to 16 must take
# exactly the steps of a straight run of 16.
cfg=/tmp/multi_gpu.toml
cat >"$cfg" <<TOML
[model]
arch = "llada"
tokenizer = "$data/tokenizer.json"
n_embd = 384
n_layer = 6
n_head = 6
n_head_kv = 6
n_ff = 1024
context_length = 512
[data]
seq_len = 512
train = [{ name = "prose", path = "$data/shard" }]
[train]
steps = 16
batch_size = 16
lr = 1e-3
min_lr = 1e-3
warmup_steps = 0
[output]
dir = "/tmp/unused"
TOML
train() { timeout 25 "$pack/bin/ruvdllm" train "$cfg" "$@" >>"$out/ruvdllm_train.txt" 2>&1; echo "== ruvdllm train $*: exit $?"; }
rm -rf /tmp/r2 /tmp/r2b /tmp/r1
train --devices 0,1 --out /tmp/r2
train --devices 0,1 --out /tmp/r2b --steps 8
train --devices 0,1 --out /tmp/r2b --resume
train --device cuda:0 --out /tmp/r1
head -1 "$out/ruvdllm_train.txt"
for bad in "--devices 0,7" "--devices 0,0" "--device cpu --devices 0,1"; do
  timeout 10 "$pack/bin/ruvdllm" train "$cfg" $bad --out /tmp/bad 2>&1 | tail -1
  echo "   (exit ${PIPESTATUS[0]} for $bad)"
done
python3 - <<'PY'
import json
def log(d): return [json.loads(l) for l in open(d + "/log.jsonl")]
a, b, c = log("/tmp/r2"), log("/tmp/r2b"), log("/tmp/r1")
same = [x["loss"] == y["loss"] for x, y in zip(a, b)]
print(f"resume on 2 GPUs: {len(b)} steps, losses identical to the straight run at {sum(same)}/{len(a)} steps")
worst = max(abs(x["loss"] - y["loss"]) / abs(y["loss"]) for x, y in zip(a, c))
print(f"2 GPUs vs 1 GPU (bf16): largest relative loss difference over {len(a)} steps {worst:.2e}")
# tokens_per_s is a running average over the steps alone; step 1 carries the one-time costs
# (allocations, cuBLAS and NCCL set-up), so the steady rate is taken from step 2 on.
def steady(rows):
    spent = lambda r: r["tokens"] / r["tokens_per_s"]
    return (rows[-1]["tokens"] - rows[0]["tokens"]) / (spent(rows[-1]) - spent(rows[0]))
s1, s2 = steady(c), steady(a)
print(f"ruvdllm train tokens/s from step 2 on: 1 GPU {s1:,.0f}, 2 GPUs {s2:,.0f} ({s2 / (2 * s1):.0%} scaling efficiency)")
PY
python3 - "$out/bench_multi_gpu.json" <<'PY'
import json, sys
rows = {b["run_name"]: b for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("aggregate_name") == "median"}
one = rows.get("BM_DataParallelStep/gpus:1/real_time"); two = rows.get("BM_DataParallelStep/gpus:2/real_time")
print("| GPUs | step (median) | passes | optimiser step (all-reduce + AdamW) | tokens/s | scaling efficiency |")
print("|---|---|---|---|---|---|")
for n, r in ((1, one), (2, two)):
    if r: print(f"| {n} | {r['real_time']:.2f} ms | {r['passes_ms']:.2f} ms | {r['optimizer_ms']:.2f} ms | {r['tokens/s']:,.0f} | {r['tokens/s'] / (n * one['tokens/s']):.0%} |")
ar = rows.get("BM_AllReduceGradients/16913280/real_time")
if ar: print(f"NCCL all-reduce of 16.9M floats alone: {ar['real_time']:.0f} us, {ar['bus_GB/s']:.0f} GB/s bus bandwidth")
PY
exit $status
