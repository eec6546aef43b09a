#!/usr/bin/env bash
# Sweep benchmark: a 40-setting sweep over a fmnist_cnn run (time averaging vs evaluating; target:
# averaging <= 10 % of the sweep), and the checkpoint-write overhead on training at the default
# ckpt_every (target <= 5 %), measured side by side. Usage: bench_sweep.sh BUILD_DIR
set -euo pipefail
wavg="$1/wavg"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
common=(--set workload=fmnist_cnn --set steps=400 --quiet --overwrite)

# Wall time of a run minus its evaluation time (from summary.json).
timed_run() {
  local out=$1
  shift
  local t0 t1
  t0=$(date +%s.%N)
  "$wavg" train --config /dev/null "${common[@]}" --set out=\""$out"\" "$@" > /dev/null
  t1=$(date +%s.%N)
  /usr/bin/python3 -c "import json,sys; print($t1 - $t0 - json.load(open('$out/summary.json'))['eval_wall_s'])"
}

# 1. Checkpoint writes at the defaults (model every eval_every = 50 steps, a full state every 200)
#    against none, alternating, 3 rounds.
with=() without=()
for round in 1 2 3; do
  with+=("$(timed_run "$tmp/with")")
  without+=("$(timed_run "$tmp/without" --set ckpt_every=0 --set state_every=0)")
done
/usr/bin/python3 - "$(ls "$tmp/with/checkpoints" | wc -l)" "${with[*]}" "${without[*]}" <<'PY'
import statistics, sys
n, w, wo = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
a, b = statistics.median(w), statistics.median(wo)
print(f"checkpoint writes (fmnist_cnn, 400 steps, {n} model checkpoints + states): {a:.2f} s vs "
      f"{b:.2f} s without: overhead {100 * (a / b - 1):+.1f}%   (target <= +5%)")
PY

# 2. A 40-setting sweep over a run checkpointed every 10 steps.
"$wavg" train --config /dev/null --set workload=fmnist_cnn --set steps=300 --set eval_every=150 \
  --set ckpt_every=10 --set out=\"$tmp/run\" --quiet > /dev/null
"$wavg" sweep "$tmp/run" --lawa window=2,5,10,20,50 every=10,20,40,80 \
  --ema beta=0.3,0.6,0.9,0.99,0.999 every=10,20,40,80 --quiet | tail -2 | head -1 |
  sed 's/$/   (target: averaging <= 10%)/'
