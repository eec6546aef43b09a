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
# Then the Python package (python/wavg) is built against that torch and installed into its venv (the
# extension links the wheel's LibTorch and torch's own pybind11 release, never Debian's), and the
# pytest suite tests/python runs in that venv: the std::filesystem functions the wheel's libtorch.so
# exports must not serve the extension inside the Python process either (checked with LD_DEBUG).
# Environment: VENV (default ~/.cache/wavg/venv-libtorch2, outside the tree), BUILD (default
# build-libtorch2), JOBS, ONLY=python (the Python package and its suite only, not the C++ build).
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

# The Python package against this torch, and its pytest suite in this venv (pinned test tools).
python_suite() {
  local pb cuda_define=() so maps bad
  pb=$(sed -n 's/^#define PYBIND11_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\).*/\2/p' \
       "$root/include/pybind11/detail/common.h" | paste -sd.)
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps "pybind11==$pb" \
    scikit-build-core==0.10.7 pathspec==0.12.1 packaging==24.2 pytest==8.3.5 pluggy==1.5.0 iniconfig==2.0.0 \
    || { echo "build-libtorch2: could not install pybind11 $pb and pytest into $venv" >&2; exit 1; }
  # tests/python/test_lightning.py against the Lightning release for this torch (2.6.6 needs torch >= 2.1)
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps pytorch-lightning==2.6.6 \
    torchmetrics==1.8.2 lightning-utilities==0.15.2 tqdm==4.67.1 PyYAML==6.0.2 \
    || echo "build-libtorch2: pytorch-lightning 2.6.6 could not be installed: the Lightning tests will be skipped" >&2
  command -v nvcc >/dev/null && cuda_define=(--config-settings=cmake.define.CMAKE_CUDA_COMPILER="$(command -v nvcc)")
  CMAKE_BUILD_PARALLEL_LEVEL=$jobs CMAKE_CXX_COMPILER_LAUNCHER=$(command -v ccache || true) \
    "$venv/bin/pip" install -q --disable-pip-version-check --no-build-isolation --no-deps \
    --config-settings=build-dir="$PWD/$build/python-pkg" "${cuda_define[@]}" \
    --config-settings=cmake.define.pybind11_DIR="$("$venv/bin/python" -m pybind11 --cmakedir)" . \
    > "$build.python.log" 2>&1 || { tail -30 "$build.python.log"; echo "build-libtorch2: the Python package did not build against torch $version (log: $build.python.log)" >&2; exit 1; }
  so=$(cd /tmp && "$venv/bin/python" -c "import torch, wavg._wavg as m; print(m.__file__)") \
    || { echo "build-libtorch2: import wavg failed in $venv" >&2; exit 1; }
  # Every LibTorch library the extension needs, and every one the Python process maps, is the wheel's.
  bad=$(ldd "$so" | awk '/lib(torch|c10)[a-z_]*\.so/ {print $1, $3}' | while read -r lib path; do
          [[ $(readlink -f "$path") == "$(readlink -f "$root")"/lib/* ]] || echo "$lib => $path"; done)
  maps=$(cd /tmp && "$venv/bin/python" -c "import torch, wavg; print(open('/proc/self/maps').read())" \
         | grep -E '/lib(torch|c10)[a-z_]*\.so' | grep -v " $root/lib/" || true)
  [[ -z $bad && -z $maps ]] || { echo "build-libtorch2: the extension or the Python process uses another LibTorch than $root/lib: $bad $maps" >&2; exit 1; }
  bad=$(cd /tmp && LD_BIND_NOW=1 LD_DEBUG=bindings "$venv/bin/python" -c "import torch, wavg" 2>&1 \
        | grep -E "binding file [^ ]*_wavg[^ ]*so .* to [^ ]*: .*_ZN[K]?St10filesystem" | grep -v "libstdc++" || true)
  [[ -z $bad ]] || { echo "build-libtorch2: std::filesystem symbols of the extension bound outside libstdc++: $(echo "$bad" | head -3)" >&2; exit 1; }
  local cli=() src=$PWD
  [[ -x $build/wavg ]] && cli=(env "WAVG_CLI=$src/$build/wavg")
  (cd "$build" && "${cli[@]}" "$venv/bin/python" -m pytest -q -p no:cacheprovider "$src/tests/python" > "$src/$build.pytest.log" 2>&1) \
    || { tail -30 "$build.pytest.log"; echo "build-libtorch2: the Python suite failed against torch $version (log: $build.pytest.log)" >&2; exit 1; }
  echo "build-libtorch2: Python package built against torch $version (pybind11 $pb): $(tail -1 "$build.pytest.log")"
}
if [[ ${ONLY:-} == python ]]; then
  mkdir -p "$build"
  python_suite
  exit 0
fi

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
python_suite
echo "build-libtorch2: ok: wavg built against LibTorch $version with CUDA $cuda (CUDA paths compiled and linked), CPU tests passed, $note, the Python suite passed in that torch's venv"
