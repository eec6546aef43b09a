#!/usr/bin/env bash
# Builds this tree's bench/bench_core.cpp against another tree's core (its headers and its built
# libwavg_core.a), e.g. the lead's main build, to compare the bank as it was with today's in
# bench/ab.sh. Sections that need what the other tree lacks (EXP windows) are left out.
# Usage: bench/build_bench_core_at.sh OTHER_TREE OUTPUT   (OTHER_TREE/build/libwavg_core.a built)
set -euo pipefail
other=$1 output=$2
here=$(cd "$(dirname "$0")/.." && pwd)
g++ -std=c++17 -O3 -DNDEBUG -DWAVG_BENCH_WITHOUT_EXP -I"$other/include" -I"$other/src" \
  "$here/bench/bench_core.cpp" "$other/build/libwavg_core.a" -pthread -o "$output"
