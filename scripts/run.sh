#!/usr/bin/env bash
# README's main command: installs dependencies, builds, and runs the main job.
# Text generation with the embedded default model is not built yet (see README, "What works
# today"); until then the main job shows the runtime: it makes a 160M-parameter LLaDA-shaped
# model with random weights, describes it, and times one denoising step's forward pass.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${RUVDLLM_BUILD_DIR:-$ROOT/build}"
bash "$ROOT/scripts/setup.sh"
bash "$ROOT/scripts/build.sh"
RUVDLLM="$BUILD/ruvdllm"
MODEL="$BUILD/models/llada-160m-q8_0.gguf"
mkdir -p "$BUILD/models"
[[ -f "$MODEL" ]] || "$RUVDLLM" init --arch llada --shape 160m --type q8_0 --seed 1 "$MODEL"
"$RUVDLLM" info "$MODEL" | grep -v '^blk\.'
TOKENS=$(seq -s, 1 256)
"$RUVDLLM" logits "$MODEL" --tokens "$TOKENS" -o "$BUILD/models/logits.npy"
"$RUVDLLM" bench forward "$MODEL" --positions 256 --repetitions 5
