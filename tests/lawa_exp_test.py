#!/usr/bin/env python3
"""Kaddour's EXP window end to end: `wavg train` with `lawa_exp` averagers (one sharing the ring of a
LAWA window of the same nu, one with more samples than it ever gets, one with a later start), checked
against an independent numpy reference:
- each final_NAME.safetensors equals sum_i w_i x_i over the run's per-step checkpoints, w_i
  proportional to (1 - alpha)^(m - i) over the last m = min(n, k) samples (DESIGN.md section 2),
  recomputed here in fp64;
- config.toml records every lawa_exp with its name, window, alpha, every and start; metrics name them;
- summary.json's bytes of averager state per parameter count the rings the windows share;
- bad settings give one line 'wavg: error: ...' naming the key and the value, exit 2.
Usage: lawa_exp_test.py PATH_TO_WAVG"""
import glob
import json
import os
import sys
import tempfile
import tomllib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import check, finish, one_error_line, read_safetensors, runner  # noqa: E402

WAVG = sys.argv[1]
run = runner(WAVG)


def read_st(path):
    tensors, meta = read_safetensors(path)
    return {k: v.astype(np.float64) for k, v in tensors.items()}, meta


def exp_reference(traj, window, alpha, every, start, last):
    """Kaddour's EXP over the samples taken up to step `last`, in fp64."""
    taken = [t for t in range(last + 1) if t >= start and t % every == 0]
    m = min(len(taken), window)
    w = np.array([(1 - alpha) ** (m - i) for i in range(1, m + 1)])
    w /= w.sum()
    steps = taken[len(taken) - m :]
    return {k: sum(wi * traj[t][k] for wi, t in zip(w, steps)) for k in traj[0]}


STEPS = 30
AVERAGERS = [  # name, window, alpha, every, start
    ("lawa_exp_k5_a0.3_nu2", 5, 0.3, 2, 0),
    ("lawa_exp_k50_a0.1_nu1", 50, 0.1, 1, 0),
    ("e1", 4, 0.5, 3, 4),
]
with tempfile.TemporaryDirectory() as tmp:
    rd = os.path.join(tmp, "run")
    cfg = os.path.join(tmp, "c.toml")
    with open(cfg, "w") as f:
        f.write(f'workload = "synth_ctr"\nsteps = {STEPS}\neval_every = {STEPS}\nthreads = 1\n'
                f'ckpt_every = 1\nout = "{rd}"\n'
                'lawa = [{window = 3, every = 2}]\n'
                '[[lawa_exp]]\nwindow = 5\nalpha = 0.3\nevery = 2\n'
                '[[lawa_exp]]\nwindow = 50\nalpha = 0.1\n'
                '[[lawa_exp]]\nname = "e1"\nwindow = 4\nalpha = 0.5\nevery = 3\nstart = 4\n')

    errors = [
        ("lawa_exp=[{window = 20, alpha = 1.0}]", ["'lawa_exp[0].alpha' must be in (0, 1), got 1"]),
        ("lawa_exp=[{window = 20, alpha = 0}]", ["'lawa_exp[0].alpha'", "got 0"]),
        ("lawa_exp=[{window = 20, alpha = nan}]", ["'lawa_exp[0].alpha'", "got nan"]),
        ("lawa_exp=[{window = 0, alpha = 0.1}]", ["'lawa_exp[0].window' must be >= 1, got 0"]),
        ("lawa_exp=[{window = 20}]", ["'lawa_exp[0]' needs window (k samples) and alpha"]),
        ("lawa_exp=[{window = 20, alpha = 0.1, every = 0}]", ["'lawa_exp[0].every'", "got 0"]),
        ("lawa_exp=[{window = 20, alpha = 0.1, beta = 0.9}]", ["lawa_exp[0].beta"]),
        ("lawa_exp=[{window = 1000000000000, alpha = 0.1}]",
         ["'lawa_exp[0].window' = 1000000000000 needs about"]),
    ]
    for setting, needles in errors:
        one_error_line(run("train", "--config", cfg, "--quiet", "--set", setting), setting, needles)

    r = run("train", "--config", cfg, "--quiet")
    check(r.returncode == 0, f"train failed: {r.stderr}")
    resolved = tomllib.load(open(os.path.join(rd, "config.toml"), "rb"))
    got = [(e["name"], e["window"], e["alpha"], e["every"], e["start"])
           for e in resolved.get("lawa_exp", [])]
    check(got == AVERAGERS, f"config.toml records the EXP windows: {got}")
    models = {json.loads(l)["model"] for l in open(os.path.join(rd, "metrics.jsonl"))}
    check(models >= {a[0] for a in AVERAGERS}, f"metrics name the EXP windows: {sorted(models)}")
    # Rings: nu = 2 holds max(3, 5) + 1 samples, nu = 1 holds 51, nu = 3 holds 5; fp32.
    summary = json.load(open(os.path.join(rd, "summary.json")))
    check(summary.get("averager_state_bytes_per_param") == 4.0 * (6 + 51 + 5),
          f"state bytes per parameter: {summary.get('averager_state_bytes_per_param')}, want 248")

    traj, paths = {}, {}
    for p in glob.glob(os.path.join(rd, "checkpoints", "*.safetensors")):
        t, meta = read_st(p)
        traj[int(meta["step"])] = t
        paths[int(meta["step"])] = p
    ckpts = [paths[t] for t in sorted(paths)]  # oldest first: checkpoint i is step i
    check(sorted(traj) == list(range(STEPS + 1)), f"checkpoints at steps 0..{STEPS}")
    for name, window, alpha, every, start in AVERAGERS:
        want = exp_reference(traj, window, alpha, every, start, STEPS)
        final, _ = read_st(os.path.join(rd, f"final_{name}.safetensors"))
        num = sum(float(np.sum((final[k] - want[k]) ** 2)) for k in want)
        den = sum(float(np.sum(want[k] ** 2)) for k in want)
        check((num / den) ** 0.5 < 1e-6, f"{name}: relative error {(num / den) ** 0.5:.3g} vs numpy")
        # Offline = online: `wavg average --lawa-exp` over the ordered per-step checkpoints.
        out = os.path.join(tmp, f"offline_{name}.safetensors")
        r = run("average", "--lawa-exp", str(window), "--exp-alpha", str(alpha), "--every",
                str(every), "--start", str(start), "-o", out, *ckpts)
        check(r.returncode == 0, f"{name}: wavg average --lawa-exp failed: {r.stderr.strip()}")
        if r.returncode == 0:
            offline, meta = read_st(out)
            num = sum(float(np.sum((offline[k] - want[k]) ** 2)) for k in want)
            check((num / den) ** 0.5 < 1e-6,
                  f"{name}: offline relative error {(num / den) ** 0.5:.3g} vs numpy")
            rec = json.loads(meta.get("wavg.average", "{}"))
            check(rec.get("scheme") == "lawa_exp" and rec.get("window") == window
                  and rec.get("alpha") == alpha, f"{name}: the offline record {rec}")
    one_error_line(run("average", "--lawa-exp", "3", "-o", os.path.join(tmp, "x.safetensors"),
                       *ckpts), "--lawa-exp without --exp-alpha", ["--exp-alpha"])
    one_error_line(run("average", "--lawa-exp", "3", "--exp-alpha", "1.5", "-o",
                       os.path.join(tmp, "x.safetensors"), *ckpts), "--exp-alpha 1.5", ["1.5"])
finish()
