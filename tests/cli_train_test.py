#!/usr/bin/env python3
"""CLI tests of `wavg train`: configuration errors (unknown key, bad value, bad averager, missing data
package) give one line on stderr and exit code 2; a short run writes metrics.jsonl with the
documented schema, summary.json consistent with it, and final models.
Usage: cli_train_test.py PATH_TO_WAVG"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import check, finish  # noqa: E402

WAVG = sys.argv[1]


def run(args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([WAVG, *args], capture_output=True, text=True, env=e)


with tempfile.TemporaryDirectory() as tmp:
    cfg = os.path.join(tmp, "c.toml")
    with open(cfg, "w") as f:
        f.write('workload = "synth_ctr"\nsteps = 40\neval_every = 20\nthreads = 1\n'
                f'out = "{tmp}/run"\n'
                '[optimizer]\nname = "nadamw"\nlr = 3e-3\n'
                '[[lawa]]\nwindow = 4\nevery = 2\n[[ema]]\nhalf_life = 10\n[[swa]]\nstart = 0.5\n')
    errors = [
        (["--set", "stepz=10"], {}, "unknown key 'stepz'"),
        (["--set", "optimizer.lrr=1"], {}, "unknown key 'optimizer.lrr'"),
        (["--set", "steps=\"many\""], {}, "'steps' must be an integer"),
        (["--set", "steps=0"], {}, "'steps' must be >= 1, got 0"),
        (["--set", "optimizer.lr=-1"], {}, "lr must be > 0, got -1"),
        (["--set", "optimizer.name=adam"], {}, "unknown name 'adam'"),
        (["--set", "ema=[{beta = 1.5}]"], {}, "beta must be in [0, 1), got 1.5"),
        (["--set", "lawa=[{every = 2}]"], {}, "needs window or horizon"),
        (["--set", "schedule.kind=cosin"], {}, "unknown kind 'cosin'"),
        (["--set", "workload=mnist"], {}, "unknown workload 'mnist'"),
        (["--set", "workload=fmnist_cnn"], {"WAVG_FMNIST_DIR": "/nonexistent"},
         "apt-get install dataset-fashion-mnist"),
        (["--set", "workload=text_lm"], {"WAVG_WORDNET_DIR": "/nonexistent"},
         "apt-get install wordnet-base"),
        (["--set", "steps"], {}, "expected key=value"),
    ]
    for extra, env, needle in errors:
        r = run(["train", "--config", cfg, "--quiet", *extra], env)
        lines = r.stderr.strip().splitlines()
        check(r.returncode == 2, f"{extra}: exit code {r.returncode}, want 2 ({r.stderr.strip()})")
        check(len(lines) == 1, f"{extra}: want one line on stderr, got {lines}")
        check(needle in r.stderr, f"{extra}: message {r.stderr.strip()!r} lacks {needle!r}")
    r = run(["train", "--config", os.path.join(tmp, "missing.toml")])
    check(r.returncode == 2 and "missing.toml" in r.stderr, f"missing config file: {r.stderr}")
    bad = os.path.join(tmp, "bad.toml")
    with open(bad, "w") as f:
        f.write("workload = \n")
    r = run(["train", "--config", bad])
    check(r.returncode == 2 and "bad.toml:1" in r.stderr, f"TOML syntax error names the line: {r.stderr}")

    # A short real run.
    r = run(["train", "--config", cfg, "--quiet"])
    check(r.returncode == 0, f"run failed: {r.stderr}")
    rows = [json.loads(l) for l in open(os.path.join(tmp, "run", "metrics.jsonl"))]
    models = {"raw", "lawa_L4_nu2", "ema_hl10_nu1", "swa_nu1_s20"}
    check({row["model"] for row in rows} == models, f"models in metrics: {sorted({r['model'] for r in rows})}")
    for row in rows:
        check(set(row) >= {"step", "model", "metric", "value", "loss", "lr", "train_wall_s"},
              f"metrics row fields: {sorted(row)}")
    check(sorted({row["step"] for row in rows}) == [20, 40], "evaluated at 20 and 40")
    summary = json.load(open(os.path.join(tmp, "run", "summary.json")))
    for m in summary["models"]:
        vals = [(row["value"], row["step"]) for row in rows if row["model"] == m["model"]]
        best = min(vals)
        check(abs(m["best_value"] - best[0]) < 1e-12 and m["best_step"] == best[1],
              f"{m['model']}: summary best {m['best_value']} vs metrics {best}")
        reached = [s for v, s in sorted(vals, key=lambda x: x[1]) if v <= summary["target"]]
        check(m["steps_to_target"] == (reached[0] if reached else None), f"{m['model']}: steps_to_target")
        check(os.path.exists(os.path.join(tmp, "run", f"final_{m['model']}.safetensors")), "final model saved")
    check("half-life 10.0 steps" in r.stdout or "half-life 10 steps" in r.stdout or "ema_hl10_nu1" in r.stdout,
          "effective EMA beta stated")
    # A second run into the same directory is refused without --overwrite.
    r = run(["train", "--config", cfg, "--quiet"])
    check(r.returncode == 2 and "already holds a run" in r.stderr, f"refuses to overwrite: {r.stderr}")

    # Every shipped training config parses, names its workload, and trains a few steps with its bank.
    configs = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")
    shipped = sorted(c for c in os.listdir(configs) if c.endswith(".toml") and c != "study.toml")
    check(len(shipped) >= 4, f"shipped configs: {shipped}")
    for c in shipped:
        out = os.path.join(tmp, "shipped_" + c[:-5])
        r = run(["train", "--config", os.path.join(configs, c), "--quiet", "--set", "steps=4",
                 "--set", "eval_every=4", "--set", "threads=1", "--set", f"out={out}"])
        check(r.returncode == 0, f"configs/{c}: {r.stderr.strip()}")
        if r.returncode == 0:
            models = {json.loads(l)["model"] for l in open(os.path.join(out, "metrics.jsonl"))}
            check("raw" in models and len(models) >= 3, f"configs/{c}: models {sorted(models)}")

finish()
