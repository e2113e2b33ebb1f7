#!/usr/bin/env bash
# README's main command: installs dependencies, builds, and generates text with the embedded
# default model (models/default.gguf, a 17M-parameter LLaDA-architecture model trained by
# ruvdllm itself; see models/README.md), once for an English prompt and once for code.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${RUVDLLM_BUILD_DIR:-$ROOT/build}"
bash "$ROOT/scripts/setup.sh"
bash "$ROOT/scripts/build.sh"
RUVDLLM="$BUILD/ruvdllm"
"$RUVDLLM" info "$ROOT/models/default.gguf" | grep -v '^blk\.'
echo
echo "== ruvdllm generate -p 'The history of the city' (64 tokens, 32 denoising steps)"
"$RUVDLLM" generate -p "The history of the city" --gen-len 64 --steps 32 --temp 0.8 --top-p 0.9 --seed 1
echo
echo "== ruvdllm generate -p 'def read_config(path):' (64 tokens, 32 denoising steps)"
"$RUVDLLM" generate -p "def read_config(path):" --gen-len 64 --steps 32 --temp 0.8 --top-p 0.9 --seed 1
