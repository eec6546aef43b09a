#!/usr/bin/env bash
# `make build-libtorch2`: builds wavg against LibTorch 2.x with CUDA, from a pinned PyPI `torch` in a
# venv, so that the 2.x API and the CUDA paths (WAVG_WITH_CUDA: src/wavg/torch/device_offload.cpp)
# are compiled and linked for real on a machine with the CUDA toolkit but no GPU. Outside `make test`.
#
# The pin: torch 2.11.0 is the first PyPI release whose default Linux wheel is built with CUDA 13.0
# (cuda-runtime 13.0.96, nvrtc 13.0.88), the toolkit installed here (nvcc 13.0.88); the wheels
# before it carry CUDA 12.x, and LibTorch's CMake config refuses a compiler whose version differs
# from the toolkit it finds, so the wheel and the toolkit must agree. Its C++ ABI
# (torch._C._GLIBCXX_USE_CXX11_ABI) is checked against this compiler's default, which Debian's
# GoogleTest and the other libraries were built with.
#
# Then: the CPU test programs run against LibTorch 2.x (core_test, io_test, torch_test, and a short
# `wavg train`), and device = "cuda" must be refused with "no CUDA device" (built with CUDA, no GPU
# here) or, where there is a GPU, train for a few steps.
# Skips (one line, exit 0) without PyPI, without nvcc or without the disk space (about 8 GB).
# Environment: VENV (default ~/.cache/wavg/venv-libtorch2, outside the tree), BUILD (default build-libtorch2), JOBS.
set -euo pipefail
cd "$(dirname "$0")/.."
pin=2.11.0
venv=${VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/wavg/venv-libtorch2}  # outside the source tree
build=${BUILD:-build-libtorch2}
jobs=${JOBS:-$(nproc)}
skip() { echo "build-libtorch2: skipped: $*"; exit 0; }

command -v nvcc >/dev/null || skip "no nvcc on PATH (the CUDA toolkit is needed to compile the CUDA paths)"
installed() { [[ -x $venv/bin/python ]] && "$venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$pin')" 2>/dev/null; }
if ! installed; then
  free_kb=$(df -Pk . | awk 'NR == 2 {print $4}')
  ((free_kb > 8 * 1024 * 1024)) || skip "$((free_kb / 1024)) MiB free here, torch $pin with its CUDA libraries needs about 8 GiB"
  [[ -x $venv/bin/python ]] || /usr/bin/python3 -m venv "$venv" || skip "cannot create a venv (python3-venv missing?)"
  timeout 120 "$venv/bin/pip" index versions torch >/dev/null 2>&1 || skip "the Python package index is unreachable"
  echo "build-libtorch2: installing torch==$pin into $venv (several GB, once)"
  "$venv/bin/pip" install --quiet "torch==$pin"
fi

read -r version cuda abi prefix root < <("$venv/bin/python" -c "import os, torch
print(torch.__version__, torch.version.cuda, int(torch._C._GLIBCXX_USE_CXX11_ABI),
      torch.utils.cmake_prefix_path, os.path.dirname(torch.__file__))" 2>/dev/null)
ours=$(echo '#include <string>' | ${CXX:-c++} -x c++ -E -dM - | awk '/define _GLIBCXX_USE_CXX11_ABI/ {print $3}')
[[ $abi == "${ours:-1}" ]] || { echo "build-libtorch2: torch $version has C++11 ABI $abi, this compiler's libraries $ours: cannot link them together" >&2; exit 1; }
nvcc_version=$(nvcc --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
echo "build-libtorch2: torch $version (CUDA $cuda, C++11 ABI $abi), nvcc $nvcc_version, into $build"

# Tests stay on: they build against LibTorch 2.x too, and the CPU ones run below. The torch folder
# itself is a prefix too: TorchConfig.cmake finds libtorch.so and libc10.so with find_library, which
# would otherwise take Debian's LibTorch 1.13 from the system folders first.
rm -f "$build/CMakeCache.txt"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$root;$prefix" \
  -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" -DCMAKE_CXX_COMPILER_LAUNCHER="$(command -v ccache || true)" \
  > "$build.cmake.log" 2>&1 || { tail -30 "$build.cmake.log"; echo "build-libtorch2: cmake failed (log: $build.cmake.log)" >&2; exit 1; }
grep -q "^TORCH_LIBRARY:FILEPATH=$root/lib/libtorch.so$" "$build/CMakeCache.txt" \
  || { echo "build-libtorch2: CMake found another libtorch.so than torch $version's (see $build/CMakeCache.txt)" >&2; exit 1; }
grep -q "CUDA paths: ON" "$build.cmake.log" || { echo "build-libtorch2: LibTorch $version was found without c10_cuda (log: $build.cmake.log)" >&2; exit 1; }
cmake --build "$build" -j "$jobs" > "$build.build.log" 2>&1 || { grep -E "error|Error" "$build.build.log" | head -30; echo "build-libtorch2: build failed (log: $build.build.log)" >&2; exit 1; }

# Run-time checks on this CPU machine: LibTorch 2.x's behaviour under the CPU tests, and the device
# key refused with the reason that holds here.
(cd "$build" && ctest --output-on-failure -R '^(torch_test|core_test|io_test)$' > ../"$build.ctest.log" 2>&1) \
  || { tail -30 "$build.ctest.log"; echo "build-libtorch2: tests failed against torch $version (log: $build.ctest.log)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf 'workload = "synth_ctr"\nsteps = 20\neval_every = 10\nthreads = 2\nout = "%s/run"\n[[lawa]]\nwindow = 4\n[[ema]]\nbeta = 0.9\n' \
  "$out" > "$out/c.toml"
"$build/wavg" train --config "$out/c.toml" --quiet > /dev/null \
  || { echo "build-libtorch2: a short CPU run with LibTorch $version failed" >&2; exit 1; }
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  "$build/wavg" train --config "$out/c.toml" --set device=cuda --set "out=$out/gpu" --quiet > /dev/null \
    || { echo "build-libtorch2: a short GPU run (device = \"cuda\") failed" >&2; exit 1; }
  note="a short GPU run passed"
else
  refusal=$("$build/wavg" train --config "$out/c.toml" --set device=cuda --set "out=$out/gpu" 2>&1 || true)
  [[ $refusal == *"no CUDA device"* ]] || { echo "build-libtorch2: device = \"cuda\" without a GPU: unexpected answer: $refusal" >&2; exit 1; }
  note="device = \"cuda\" refused here (no GPU) as expected"
fi
echo "build-libtorch2: ok: wavg built against LibTorch $version with CUDA $cuda (CUDA paths compiled and linked), CPU tests passed, $note"
