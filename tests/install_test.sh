#!/usr/bin/env bash
# Installs wavg into a temporary prefix and builds examples/client against it with find_package.
set -euo pipefail
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" > "$tmp/install.log"
test -f "$tmp/prefix/include/wavg/torch/model_averager.h"
test -f "$tmp/prefix/lib/cmake/wavg/wavgConfig.cmake"
if grep -rlE '#include *[<"](torch|ATen|c10)/' "$tmp/prefix/include/wavg/core" "$tmp/prefix/include/wavg/io"; then
  echo "core/io headers include LibTorch" >&2
  exit 1
fi
# Only public headers are installed: no internals (thread pool, bank state files, tensor utilities),
# and every installed wavg header includes only installed wavg headers.
for internal in core/parallel.h io/bank_state.h torch/scalar_types.h; do
  if test -e "$tmp/prefix/include/wavg/$internal"; then echo "internal header installed: $internal" >&2; exit 1; fi
done
for inc in $(grep -rhoE '#include "wavg/[^"]+"' "$tmp/prefix/include/wavg" | sed 's/#include "//; s/"$//' | sort -u); do
  test -f "$tmp/prefix/include/$inc" || { echo "installed header includes missing $inc" >&2; exit 1; }
done
cmake -S "$src/examples/client" -B "$tmp/client" -DCMAKE_PREFIX_PATH="$tmp/prefix" > "$tmp/configure.log" 2>&1 \
  || { cat "$tmp/configure.log"; exit 1; }
cmake --build "$tmp/client" -j 2 > "$tmp/build.log" 2>&1 || { tail -30 "$tmp/build.log"; exit 1; }
"$tmp/client/client" "$tmp" | tail -2
test -f "$tmp/ema.safetensors"
echo "install + find_package(wavg) + build + run: ok"
