#!/usr/bin/env bash
# Data-parallel benchmark (issue 14 §6): training step time of text_lm at W = 1 and W = 2 ranks
# (--nproc, 1 thread per rank) against 1 process with 2 threads, from summary.json's train_wall_s
# (evaluation excluded; the same global batch everywhere), and the bytes of averager state per
# parameter held by each rank (its bank shard in the final state: bank*.safetensors / parameters),
# for a bank of LAWA L=20 and EMA at ν = 1. Usage: bench_dist.sh BUILD_DIR [STEPS]
set -euo pipefail
wavg="$1/wavg"
steps="${2:-60}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/c.toml" <<TOML
workload = "text_lm"
steps = $steps
eval_every = $steps
ckpt_every = 0
state_every = $steps
batch_size = 32
[[lawa]]
window = 20
every = 1
[[ema]]
beta = 0.9
every = 1
TOML
run() {  # NAME ARGS...
  local name=$1
  shift
  "$wavg" train --config "$tmp/c.toml" --set out=\""$tmp/$name"\" --quiet "$@" > /dev/null
}
run w1_t1 --set threads=1
run w1_t2 --set threads=2
run w2_t1 --nproc 2
/usr/bin/python3 - "$tmp" "$steps" <<'PY'
import glob, json, os, struct, sys
tmp, steps = sys.argv[1], int(sys.argv[2])
def step_ms(name):
    return 1000 * json.load(open(f"{tmp}/{name}/summary.json"))["train_wall_s"] / steps
def params(path):
    b = open(path, "rb").read(8 + struct.unpack("<Q", open(path, "rb").read(8))[0])
    h = json.loads(b[8:])
    n = 0
    for k, v in h.items():
        if k != "__metadata__":
            m = 1
            for d in v["shape"]:
                m *= d
            n += m
    return n
def bank_bytes_per_param(name):
    state = sorted(glob.glob(f"{tmp}/{name}/state/step_*"))[-1]
    n = params(f"{state}/model.safetensors")
    shards = sorted(glob.glob(f"{state}/bank*.safetensors"))
    return max(os.path.getsize(s) for s in shards) / n, len(shards)
t11, t12, t21 = step_ms("w1_t1"), step_ms("w1_t2"), step_ms("w2_t1")
print(f"text_lm, global batch 32, {steps} steps, bank LAWA L=20 + EMA at nu=1")
print(f"step time: W=1 x 1 thread {t11:.1f} ms, W=2 x 1 thread {t21:.1f} ms, 1 process x 2 threads {t12:.1f} ms")
print(f"ratios: W=2/W=1 {t21 / t11:.2f}, W=2 / (1 process, 2 threads) {t21 / t12:.2f}")
for name, w in (("w1_t1", 1), ("w2_t1", 2)):
    b, k = bank_bytes_per_param(name)
    print(f"averager state per parameter per rank at W={w}: {b:.1f} bytes ({k} shard file(s))")
PY
