#!/usr/bin/env bash
# Runs every benchmark and prints the ratios (`make bench`). Argument: the build directory.
set -euo pipefail
build=${1:-build}
echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
"$build/bench/bench_core"
"$build/bench/bench_average" "$build/wavg"
"$build/bench/bench_shards" "$build/wavg"
"$build/bench/bench_train" --python-script bench/torch_step.py
bash bench/bench_sweep.sh "$build"
# The Python package against the averagers people use from Python (issue 23 §4).
bash python/install.sh "$PWD" "$(cd "$build" && pwd)/python-pkg"
.venv/bin/python bench/python_overhead.py
