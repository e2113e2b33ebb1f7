#!/usr/bin/env bash
# README's test command: installs dependencies, builds, fuzzes the file parsers briefly, and
# runs every unit and end-to-end test. Exits non-zero on any failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
bash "$ROOT/scripts/build.sh"
# Short fuzz runs first so that ctest's summary is the last thing printed.
bash "$ROOT/scripts/fuzz.sh" "${RUVDLLM_FUZZ_SECONDS:-20}"
cd "${RUVDLLM_BUILD_DIR:-$ROOT/build}"
ctest --output-on-failure -j"$(nproc)"
