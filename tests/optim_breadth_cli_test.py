#!/usr/bin/env python3
"""Shampoo, Lookahead and Schedule-Free AdamW through `wavg train` (issue 13): a short run of each
learns (the raw model's validation value falls); a run resumed from its middle state ends with the
same final models, metrics and summary as the run done in one go; Schedule-Free's evaluation point
x is what is evaluated, saved as final_raw and sampled by the averagers (an EMA with beta = 0 holds
the last sample: its parameters equal final_raw's, while the trained model y differs), with the
BatchNorm statistics of final_raw recomputed at x; the resolved config records the optimizers'
keys; bad values are one-line errors with exit status 2. Usage: optim_breadth_cli_test.py WAVG"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import check, finish, read_safetensors  # noqa: E402

WAVG = sys.argv[1]
WALL = {"train_wall_s", "eval_wall_s"}
NP = {"F32": np.float32, "F64": np.float64, "I64": np.int64}


def read_st(path):
    return read_safetensors(path)[0]


def strip(obj):
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if k not in WALL}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def outputs(run):
    blobs = {f: open(os.path.join(run, f), "rb").read() for f in os.listdir(run) if f.startswith("final_")}
    metrics = [strip(json.loads(l)) for l in open(os.path.join(run, "metrics.jsonl"))]
    return blobs, metrics, strip(json.load(open(os.path.join(run, "summary.json"))))


def train(cfg, out, *extra):
    return subprocess.run([WAVG, "train", "--config", cfg, "--set", f'out="{out}"', "--quiet", *extra],
                          capture_output=True, text=True)


BASE = {
    "shampoo": ('workload = "synth_ctr"\nsteps = 24\neval_every = 8\nbatch_size = 256\n',
                '[optimizer]\nname = "shampoo"\nlr = 3e-3\nweight_decay = 0.01\n'
                'shampoo_block_size = 64\nshampoo_precondition_frequency = 5\nshampoo_start_step = 8\n'),
    "lookahead": ('workload = "synth_ctr"\nsteps = 24\neval_every = 8\nbatch_size = 256\n',
                  '[optimizer]\nname = "nadamw"\nlr = 3e-3\nlookahead_k = 6\nlookahead_alpha = 0.5\n'),
    "schedule_free": ('workload = "fmnist_cnn"\nsteps = 24\neval_every = 8\nbatch_size = 32\n',
                      '[optimizer]\nname = "schedule_free_adamw"\nlr = 4e-3\nweight_decay = 0.01\n'
                      'schedule_free_bn_batches = 4\n[schedule]\nwarmup = 4\n'),
}

with tempfile.TemporaryDirectory() as tmp:
    for name, (top, opt) in BASE.items():
        cfg = os.path.join(tmp, name + ".toml")
        with open(cfg, "w") as f:
            f.write(top + 'threads = 2\nckpt_every = 8\nstate_every = 12\nkeep_states = 3\n'
                    '[[ema]]\nbeta = 0.0\nname = "last"\n[[lawa]]\nwindow = 3\nevery = 5\n' + opt)
        # The run in one go: it learns.
        whole = os.path.join(tmp, name + "_whole")
        r = train(cfg, whole)
        check(r.returncode == 0, f"{name}: trains ({r.stderr.strip()[-300:]})")
        if r.returncode != 0:
            continue
        ref = outputs(whole)
        raw = [m["value"] for m in ref[1] if m["model"] == "raw"]
        check(len(raw) >= 3 and all(np.isfinite(raw)) and raw[-1] < raw[0],
              f"{name}: the raw validation value falls {raw}")
        resolved = open(os.path.join(whole, "config.toml")).read()
        for key in {"shampoo": ["shampoo_block_size = 64", "shampoo_precondition_frequency = 5",
                                "shampoo_start_step = 8", "shampoo_eps = "],
                    "lookahead": ["lookahead_k = 6", "lookahead_alpha = 0.5"],
                    "schedule_free": ["schedule_free_bn_batches = 4", 'kind = "constant"']}[name]:
            check(key in resolved, f"{name}: the resolved config records {key!r}")
        # The same run stopped after its state at step 12 (later files removed), then resumed.
        part = os.path.join(tmp, name + "_resumed")
        shutil.copytree(whole, part)
        for f in os.listdir(part):
            if f.startswith("final_") or f == "summary.json":
                os.remove(os.path.join(part, f))
        states = sorted(os.listdir(os.path.join(part, "state")))
        for s in states[1:]:
            shutil.rmtree(os.path.join(part, "state", s))
        check(states[0].endswith("00000012"), f"{name}: resumes from {states[0]}")
        r = subprocess.run([WAVG, "train", "--resume", part, "--quiet"], capture_output=True, text=True)
        check(r.returncode == 0, f"{name}: resumes ({r.stderr.strip()[-300:]})")
        if r.returncode != 0:
            continue
        got = outputs(part)
        check(sorted(got[0]) == sorted(ref[0]), f"{name}: final files {sorted(got[0])}")
        for f in ref[0]:
            check(got[0].get(f) == ref[0][f], f"{name}: resumed {f} is bit-identical")
        check(got[1] == ref[1] and got[2] == ref[2], f"{name}: resumed metrics and summary identical")

    # Schedule-Free: x is evaluated, saved and sampled; y is what trains.
    sf = os.path.join(tmp, "schedule_free_whole")
    if os.path.exists(os.path.join(sf, "final_raw.safetensors")):
        x = read_st(os.path.join(sf, "final_raw.safetensors"))
        last = read_st(os.path.join(sf, "final_last.safetensors"))
        y = read_st(os.path.join(sf, "state", sorted(os.listdir(os.path.join(sf, "state")))[-1],
                                 "model.safetensors"))
        params = [k for k in x if "running" not in k and "num_batches" not in k]
        check(all(np.array_equal(x[k], last[k]) for k in params),
              "schedule_free: the EMA (beta 0) sampled x: its parameters equal final_raw's")
        check(any(not np.array_equal(x[k], y[k]) for k in params),
              "schedule_free: final_raw (x) differs from the trained parameters y")
        means = [k for k in x if k.endswith("running_mean")]
        check(means and any(not np.array_equal(x[k], y[k]) for k in means),
              "schedule_free: final_raw's BatchNorm statistics were recomputed at x")

    # Bad values: one line, exit 2, naming the key and the value.
    cfg = os.path.join(tmp, "bad.toml")
    with open(cfg, "w") as f:
        f.write('workload = "synth_ctr"\nsteps = 10\n')
    for sets, want in [
        (["optimizer.name=shampoo", "optimizer.shampoo_block_size=1"], "'optimizer.shampoo_block_size' must be >= 2, got 1"),
        (["optimizer.shampoo_precondition_frequency=0"], "'optimizer.shampoo_precondition_frequency' must be >= 1 (steps), got 0"),
        (["optimizer.shampoo_start_step=-3"], "'optimizer.shampoo_start_step' must be >= 1 (steps), got -3"),
        (["optimizer.shampoo_eps=0.0"], "'optimizer.shampoo_eps' must be in (0, inf), got 0"),
        (["optimizer.lookahead_k=-1"], "'optimizer.lookahead_k' must be >= 0 (0: off), got -1"),
        (["optimizer.lookahead_alpha=1.5"], "'optimizer.lookahead_alpha' must be in (0, 1], got 1.5"),
        (["optimizer.name=schedule_free_adamw", "optimizer.lookahead_k=5"], "Lookahead cannot wrap schedule_free_adamw"),
        (["optimizer.name=schedule_free_adamw", "schedule.kind=cosine"],
         "runs without a decaying schedule: set schedule.kind = \"constant\" (a warmup is allowed), got cosine"),
        (["optimizer.name=schedule_free_adamw", "optimizer.schedule_free_bn_batches=0"], "'optimizer.schedule_free_bn_batches' must be >= 1, got 0"),
        (["optimizer.name=shampo"], "'optimizer.name' must be nadamw, adamw, sgd, shampoo or schedule_free_adamw"),
        (["optimizer.shampoo_block=8"], "shampoo_block"),
    ]:
        args = [WAVG, "train", "--config", cfg, "--set", f'out="{tmp}/bad"', "--quiet"]
        for s in sets:
            args += ["--set", s]
        r = subprocess.run(args, capture_output=True, text=True)
        err = r.stderr.strip()
        check(r.returncode == 2 and want in err and err.count("\n") == 0, f"{sets}: {err!r}")

finish()
