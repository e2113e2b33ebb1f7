#!/usr/bin/env bash
# Issue 2 asks that the NEON kernels compile. Compiles every source with Highway target code
# (foreach_target.h) for aarch64 with the cross compiler, with the Highway targets CMake sets
# there (NEON; SVE is off because the kernels keep arrays of vectors, which SVE's sizeless
# types forbid), -Werror, objects discarded. Run by ctest as NeonKernelsCompile.
#   usage: scripts/check_neon.sh [CXX]   (default aarch64-linux-gnu-g++)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cxx=${1:-aarch64-linux-gnu-g++}
if ! command -v "$cxx" > /dev/null; then
  echo "check_neon: $cxx is not installed (scripts/setup.sh installs it)" >&2
  exit 1
fi
# Only the headers these sources need, so the cross compiler never sees x86 glibc headers.
headers=$(mktemp -d)
trap 'rm -rf "$headers"' EXIT
ln -s /usr/include/hwy "$headers/hwy"
for f in /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h /usr/include/x86_64-linux-gnu/openblas-pthread/openblas_config.h; do
  ln -s "$f" "$headers/$(basename "$f")"
done
for dep in fmt; do ln -s "/usr/include/$dep" "$headers/$dep"; done
failed=0
count=0
for source in $(grep -l 'hwy/foreach_target.h' -r src --include='*.cpp' | sort); do
  count=$((count + 1))
  if ! "$cxx" -std=c++20 -O2 -Wall -Wextra -Werror -Iinclude -Isrc -isystem "$headers" \
      '-DHWY_DISABLED_TARGETS=(HWY_SVE|HWY_SVE2|HWY_SVE_256|HWY_SVE2_128)' \
      -c "$source" -o /dev/null; then
    echo "check_neon: $source does not compile for aarch64" >&2
    failed=1
  fi
done
echo "check_neon: $count sources compiled for aarch64 NEON with $cxx"
exit $failed
