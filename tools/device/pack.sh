#!/usr/bin/env bash
# Packs programs built here for the GPU machine, which runs Ubuntu 24.04 with CUDA 13 but none
# of our Debian -dev packages: stripped copies of the programs go to OUT/bin, and every shared
# library they load that is not part of glibc, libstdc++ or CUDA (OpenBLAS, fmt, Highway,
# Google Benchmark, ...) to OUT/lib. Run there with LD_LIBRARY_PATH=OUT/lib (see
# run_cuda_train.sh). OUT must be an ignored path (e.g. build-cuda/device) named in the
# device call's carry list.
#   usage: tools/device/pack.sh BUILD_DIR OUT_DIR PROGRAM...
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 BUILD_DIR OUT_DIR PROGRAM..." >&2
  exit 2
fi
build=$1
out=$2
shift 2
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
for program in "$@"; do
  strip --strip-unneeded -o "$out/bin/$program" "$build/$program"
  ldd "$build/$program" | awk '/=> \// { print $3 }' | while read -r lib; do
    name=$(basename "$lib")
    case "$name" in
      # Present on the GPU machine (newer versions, backward compatible), or CUDA's own.
      libc.so* | libm.so* | libdl.so* | librt.so* | libpthread.so* | libgcc_s.so* | libstdc++.so* | ld-linux*) ;;
      libcuda.so* | libcudart* | libcublas* | libnvidia* | libnccl*) ;;
      *)
        if [ ! -e "$out/lib/$name" ]; then
          strip --strip-unneeded -o "$out/lib/$name" "$(readlink -f "$lib")"
        fi
        ;;
    esac
  done
done
du -sh "$out/bin" "$out/lib"
