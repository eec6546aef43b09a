#!/usr/bin/env python3
"""Tests of `wavg sweep` and `wavg eval`: the offline sweep of the settings a run averaged online
gives exactly the online values; grids, horizons and files; grid errors (exit 2, one line); eval of
a saved average agrees with the sweep's last value. Usage: sweep_test.py PATH_TO_WAVG"""
import csv
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import check, finish, runner  # noqa: E402

WAVG = sys.argv[1]
run = runner(WAVG)


with tempfile.TemporaryDirectory() as tmp:
    rd = os.path.join(tmp, "run")
    cfg = os.path.join(tmp, "c.toml")
    with open(cfg, "w") as f:
        f.write(f'workload = "synth_ctr"\nsteps = 120\neval_every = 30\nckpt_every = 5\nthreads = 2\nout = "{rd}"\n'
                '[[lawa]]\nwindow = 4\nevery = 10\nbuffers = "average"\n'
                '[[ema]]\nbeta = 0.8\nevery = 5\nbuffers = "average"\n')
    r = run("train", "--config", cfg, "--quiet")
    check(r.returncode == 0, f"train: {r.stderr}")
    r = run("sweep", rd, "--lawa", "window=2,4", "every=5,10", "--ema", "beta=0.8,0.95", "every=5",
            "--swa", "every=5", "start=60", "--save-averages", "lawa_L4_nu10", "--quiet")
    check(r.returncode == 0, f"sweep: {r.stderr}")
    online = {}
    for line in open(os.path.join(rd, "metrics.jsonl")):
        j = json.loads(line)
        online[(j["model"], j["step"])] = j["value"]
    offline = {}
    for line in open(os.path.join(rd, "sweep.jsonl")):
        j = json.loads(line)
        offline[(j["model"], j["step"])] = j["value"]
        check(set(j) >= {"step", "model", "metric", "value", "loss", "lr"}, "sweep.jsonl schema")
    for name in ["lawa_L4_nu10", "ema_b0.8_nu5"]:
        keys = sorted(k for k in online if k[0] == name)
        check(len(keys) == 4, f"{name}: evaluated 4 times online")
        for k in keys:
            check(offline.get(k) == online[k], f"{k}: offline {offline.get(k)} == online {online[k]} exactly")
    rows = list(csv.DictReader(open(os.path.join(rd, "sweep_summary.csv"))))
    check(len(rows) == 7, f"7 settings in the summary, got {len(rows)}")
    by = {r["name"]: r for r in rows}
    check(abs(float(by["lawa_L4_nu10"]["horizon"]) - 10 * 4 / 120) < 1e-9, "LAWA horizon = nu*L/T")
    check(abs(float(by["ema_b0.95_nu5"]["horizon"]) - 5 / 0.05 / 120) < 1e-6, "EMA horizon = nu/(1-beta)/T")
    check(by["swa_nu5_s60"]["scheme"] == "swa", "SWA row")
    saved = os.path.join(rd, "sweep_lawa_L4_nu10.safetensors")
    check(os.path.exists(saved), "--save-averages wrote the average")
    r = run("eval", saved, "--workload", "synth_ctr")
    check(r.returncode == 0, f"eval: {r.stderr}")
    if r.returncode == 0:
        value = float(r.stdout.split()[3])
        check(abs(value - offline[("lawa_L4_nu10", 120)]) < 1e-9, f"eval {value} == sweep's last value")
    # eval --run rebuilds the workload (seed, batch size) from the run's resolved config.toml.
    r = run("eval", saved, "--run", rd)
    check(r.returncode == 0 and abs(float(r.stdout.split()[3]) - offline[("lawa_L4_nu10", 120)]) < 1e-9,
          f"eval --run: {r.stdout!r} {r.stderr!r}")
    r = run("eval", saved, "--run", rd, "--workload", "synth_ctr")
    check(r.returncode == 2 and "exactly one of --workload" in r.stderr, f"eval --run and --workload: {r.stderr!r}")
    # A run directory with a raw (old) config.toml: sweep refuses it unless --force.
    raw = os.path.join(tmp, "raw")
    os.makedirs(raw)
    with open(cfg) as src, open(os.path.join(raw, "config.toml"), "w") as dst:
        dst.write(src.read())
    r = run("sweep", raw, "--lawa", "window=2", "--quiet")
    check(r.returncode == 2 and "raw configuration" in r.stderr and "--force" in r.stderr,
          f"sweep of a raw config: {r.stderr.strip()!r}")

    for args, needle in [
        (["--lawa", "window=2", "every=3"], "not a multiple of the run's checkpoint period 5"),
        (["--lawa", "every=5"], "--lawa needs window="),
        (["--ema", "beta=1.2"], "beta must be in [0, 1), got 1.2"),
        (["--ema", "beta=0.9", "size=3"], "has no key 'size'"),
        (["--lawa", "window=x"], "window value 'x' is not a number"),
        (["--lawa", "window=2", "--save-averages", "nope"], "'nope', which is not in the grid"),
        ([], "no settings"),
    ]:
        r = run("sweep", rd, *args, "--quiet")
        check(r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1,
              f"sweep {args}: rc {r.returncode}, {r.stderr.strip()!r} lacks {needle!r}")
    r = run("sweep", tmp, "--lawa", "window=2")
    check(r.returncode == 2 and "config.toml" in r.stderr, f"not a run directory: {r.stderr.strip()}")
    r = run("eval", os.path.join(rd, "metrics.jsonl"), "--workload", "synth_ctr")
    check(r.returncode == 2 and "metrics.jsonl" in r.stderr, f"eval of a non-safetensors file: {r.stderr.strip()}")
    r = run("eval", saved, "--workload", "fmnist_cnn")
    check(r.returncode == 2 and "missing" in r.stderr, f"eval with the wrong workload: {r.stderr.strip()}")

    # A corrupted checkpoint (one flipped bit in its data) is detected by its recorded checksum.
    ck = os.path.join(rd, "checkpoints", "model_00000060.safetensors")
    blob = bytearray(open(ck, "rb").read())
    blob[-3] ^= 0x01
    open(ck, "wb").write(bytes(blob))
    r = run("sweep", rd, "--lawa", "window=2", "every=5", "--quiet")
    check(r.returncode == 2 and "model_00000060.safetensors" in r.stderr and "checksum" in r.stderr,
          f"corrupted checkpoint: {r.stderr.strip()!r}")

finish()
