#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (core/ and io/ only) and runs each for a bounded time over
# a copy of its committed seed corpus. Usage: fuzz/run.sh [SECONDS per target, default 30] [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
build=${2:-build-fuzz}
cmake -S . -B "$build" -DWAVG_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  > "$build.cmake.log" 2>&1 || { cat "$build.cmake.log"; exit 1; }
cmake --build "$build" -j "$(nproc)" > "$build.build.log" 2>&1 || { tail -40 "$build.build.log"; exit 1; }
for target in fuzz_header fuzz_average fuzz_bank_state; do
  corpus=$(mktemp -d)
  trap 'rm -rf "$corpus"' EXIT
  cp fuzz/corpus/${target#fuzz_}/* "$corpus/"
  echo "fuzz: $target for ${seconds}s"
  # Crash inputs go to the build directory; a finding fails the run (exit non-zero).
  "$build/fuzz/$target" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$build/$target-" -print_final_stats=1 "$corpus" 2>&1 | grep -E "^(#|stat::number_of_executed_units|==|SUMMARY|Done)" | tail -4
  rc=${PIPESTATUS[0]}
  rm -rf "$corpus"
  ((rc == 0)) || { echo "fuzz: $target found a failing input (see $build/$target-*)" >&2; exit 1; }
done
echo "fuzz: no findings"
