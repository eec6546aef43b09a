#!/usr/bin/env bash
# Runs two builds of one benchmark alternately (A, B, A, B, …) on a loaded machine, so that both
# see the same load, and prints each run's lines and then, per line (keyed by its text before the
# first number and its N), the median of each of its numbers over the runs of each binary; the load average
# is printed before each run.
# Usage: bench/ab.sh RUNS "A command" "B command"
#   e.g. bench/ab.sh 5 "/tmp/bench_core_main 2097152" "build/bench/bench_core 2097152"
# A bench_core of another tree (the bank as it was) is built with bench/build_bench_core_at.sh.
set -euo pipefail
runs=$1 a=$2 b=$3
out=$(mktemp -d)
for ((r = 0; r < runs; ++r)); do
  for side in A B; do
    cmd=$a; [[ $side == B ]] && cmd=$b
    echo "== run $r $side (load $(cut -d' ' -f1-3 /proc/loadavg)): $cmd"
    $cmd | tee -a "$out/$side"
  done
done
echo "== medians over $runs runs of each (A: $a | B: $b)"
/usr/bin/python3 - "$out/A" "$out/B" <<'PY'
import re, statistics, sys
NUM = r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?"
def table(path):
    """Lines keyed by their text before the first number (and the size N = … if they give one); the
    numbers of each, run by run."""
    rows = {}
    for line in open(path):
        line = line.rstrip()
        key = re.split(NUM, line, maxsplit=1)[0] + " ".join(re.findall(r"N = \d+", line))
        rows.setdefault(key, []).append((line, [float(x) for x in re.findall(NUM, line)]))
    return rows
def median_line(rows):
    template = rows[0][0]
    cols = list(zip(*[nums for _, nums in rows if len(nums) == len(rows[0][1])]))
    meds = iter([statistics.median(c) for c in cols])
    return re.sub(NUM, lambda m: f"{next(meds):g}", template)
a, b = table(sys.argv[1]), table(sys.argv[2])
for key in a:
    if key in b:
        print("A:", median_line(a[key]))
        print("B:", median_line(b[key]))
PY
rm -rf "$out"
