#!/usr/bin/env bash
# GPU step time with and without a bank of averagers at ν = 1 on a 124M-parameter GPT
# (bench/bench_gpu_offload.cpp; issue 14 §4), for a machine with a GPU, a Python torch 2.x with CUDA,
# nvcc and CMake, and no network: builds the core, io and torch layers and the benchmark there
# against that torch's LibTorch (-DWAVG_GPU_BENCH_ONLY=ON), then runs it. About 3 minutes of build
# on 16 cores and 1-2 minutes of run; stops itself at 8 minutes.
#
# The one header-only dependency of those layers, nlohmann-json, is taken from the system when it
# has one, else from third_party/nlohmann_json (gitignored), which
#   bench/gpu_offload.sh --prepare
# fills from Debian's nlohmann-json3-dev on a machine that has it (about 1 MB, with its licence), to
# be carried to the GPU machine with the working tree. zlib (crc32 only, for safetensors checksums)
# is taken from the system, else a table CRC-32 compiled here stands in for it.
# Without a GPU, a CUDA torch or nvcc: one line and exit 1. Environment: PYTHON (default python3),
# BUILD (default build-gpu), BENCH_ARGS (passed to bench_gpu_offload, e.g. "--batch 16").
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "gpu_offload: $*"; exit 1; }

if [[ ${1:-} == --prepare ]]; then
  [[ -f /usr/include/nlohmann/json.hpp && -d /usr/share/cmake/nlohmann_json ]] \
    || fail "--prepare needs Debian's nlohmann-json3-dev (/usr/include/nlohmann)"
  dst=third_party/nlohmann_json
  rm -rf "$dst" && mkdir -p "$dst/include" "$dst/share/cmake"
  cp -r /usr/include/nlohmann "$dst/include/"
  cp -r /usr/share/cmake/nlohmann_json "$dst/share/cmake/"
  cp /usr/share/doc/nlohmann-json3-dev/copyright "$dst/COPYRIGHT"
  echo "gpu_offload: copied nlohmann-json into $dst ($(du -sh "$dst" | cut -f1)); carry third_party/ to the GPU machine"
  exit 0
fi

deadline=$((SECONDS + 480))
python=${PYTHON:-python3}
build=${BUILD:-build-gpu}
command -v nvidia-smi >/dev/null && gpu=$(nvidia-smi -L 2>/dev/null | head -1) && [[ -n $gpu ]] \
  || fail "no GPU visible (nvidia-smi lists none): nothing measured"
command -v nvcc >/dev/null || fail "no nvcc on PATH: LibTorch's CMake config needs the CUDA toolkit"
command -v cmake >/dev/null || fail "no cmake on PATH"
info=$("$python" -c "import os, torch
assert torch.version.cuda and torch.cuda.is_available(), 'no CUDA in this torch'
print(torch.__version__, torch.version.cuda, int(torch._C._GLIBCXX_USE_CXX11_ABI),
      torch.utils.cmake_prefix_path, os.path.dirname(torch.__file__))" 2>/dev/null) \
  || fail "$python has no torch with CUDA and a visible GPU (set PYTHON)"
read -r version cuda abi prefix root <<< "$info"

prefixes="$root;$prefix"  # torch's folder first: its libtorch.so before any system LibTorch
if [[ ! -f /usr/include/nlohmann/json.hpp && ! -f /usr/local/include/nlohmann/json.hpp ]]; then
  [[ -d third_party/nlohmann_json ]] || fail "nlohmann-json is missing: run 'bench/gpu_offload.sh --prepare' where Debian's nlohmann-json3-dev is installed, and carry third_party/ here"
  prefixes="$prefixes;$PWD/third_party/nlohmann_json"
fi
mkdir -p "$build"
zlib_args=()
if [[ ! -f /usr/include/zlib.h && ! -f /usr/local/include/zlib.h ]]; then
  # A stand-in for the one zlib function wavg uses: crc32 (CRC-32/ISO-HDLC, zlib's), by table.
  mkdir -p "$build/zlib/include" "$build/zlib/lib"
  cat > "$build/zlib/include/zlib.h" <<'EOF'
#pragma once
#define ZLIB_VERSION "1.2.13-crc32-only"
#define Z_NULL 0
typedef unsigned char Bytef;
typedef unsigned int uInt;
typedef unsigned long uLong;
#ifdef __cplusplus
extern "C"
#endif
uLong crc32(uLong crc, const Bytef* buf, uInt len);
EOF
  cat > "$build/zlib/crc32.c" <<'EOF'
#include "zlib.h"
uLong crc32(uLong crc, const Bytef* buf, uInt len) {
  static unsigned long table[256];
  if (!table[1])
    for (unsigned n = 0; n < 256; ++n) {
      unsigned long c = n;
      for (int k = 0; k < 8; ++k) c = c & 1 ? 0xedb88320UL ^ (c >> 1) : c >> 1;
      table[n] = c;
    }
  if (!buf) return 0;
  crc = ~crc & 0xffffffffUL;
  while (len--) crc = table[(crc ^ *buf++) & 0xff] ^ (crc >> 8);
  return ~crc & 0xffffffffUL;
}
EOF
  cc -O2 -c -I "$build/zlib/include" "$build/zlib/crc32.c" -o "$build/zlib/crc32.o" \
    && ar rcs "$build/zlib/lib/libz.a" "$build/zlib/crc32.o" || fail "cannot compile the crc32 stand-in"
  zlib_args=(-DZLIB_INCLUDE_DIR="$PWD/$build/zlib/include" -DZLIB_LIBRARY="$PWD/$build/zlib/lib/libz.a")
fi

echo "gpu_offload: $gpu; torch $version (CUDA $cuda, C++11 ABI $abi); building in $build"
rm -f "$build/CMakeCache.txt"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DWAVG_GPU_BENCH_ONLY=ON -DWAVG_BUILD_TESTS=OFF \
  -DCMAKE_PREFIX_PATH="$prefixes" -DCMAKE_CXX_FLAGS="-D_GLIBCXX_USE_CXX11_ABI=$abi" \
  -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" "${zlib_args[@]}" > "$build.cmake.log" 2>&1 \
  || { tail -20 "$build.cmake.log"; fail "cmake failed (log: $build.cmake.log)"; }
grep -q "CUDA paths: ON" "$build.cmake.log" || fail "torch $version's LibTorch was found without c10_cuda (log: $build.cmake.log)"
timeout $((deadline - SECONDS)) cmake --build "$build" -j "$(nproc)" --target bench_gpu_offload > "$build.build.log" 2>&1 \
  || { grep -E "error" "$build.build.log" | head -20; fail "build failed or ran out of time (log: $build.build.log)"; }
echo "gpu_offload: built in ${SECONDS} s; measuring (ratios: step time over the step without averaging)"
# shellcheck disable=SC2086
timeout $((deadline - SECONDS)) "$build/bench/bench_gpu_offload" ${BENCH_ARGS:-} \
  || fail "bench_gpu_offload failed or ran past 8 minutes"
echo "gpu_offload: done in ${SECONDS} s"
