#!/usr/bin/env python3
"""CLI tests of `wavg train`: every error a user can cause (bad keys and values, a config that is
not TOML, a run directory that is a file, a missing run to resume) gives exactly one line
"wavg: error: ..." naming the key and the value, exit code 2; a short run's summary.json agrees with
its metrics.jsonl recomputed here, the printed table agrees with summary.json, and config.toml holds
the resolved run (values computed here from the horizons and defaults), which trains the same run
again when given back as a config; --overwrite removes everything a previous run wrote and refuses
a directory holding anything else. Usage: cli_train_test.py PATH_TO_WAVG"""
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import check, finish, one_error_line, runner  # noqa: E402

WAVG = sys.argv[1]
run = runner(WAVG)


def strip_wall(row):
    return {k: v for k, v in row.items() if k not in ("train_wall_s", "eval_wall_s")}


with tempfile.TemporaryDirectory() as tmp:
    cfg = os.path.join(tmp, "c.toml")
    # No [optimizer] table: the learning rate, schedule and target come from synth_ctr's defaults;
    # LAWA by horizon and EMA by half-life: config.toml must hold the L, nu and beta used.
    with open(cfg, "w") as f:
        f.write('workload = "synth_ctr"\nsteps = 40\neval_every = 20\nthreads = 1\n'
                f'out = "{tmp}/run"\n'
                '[[lawa]]\nwindow = 4\nevery = 2\n[[lawa]]\nhorizon = 0.5\nwindow = 5\n'
                '[[ema]]\nhalf_life = 10\n[[swa]]\nstart = 0.5\n')
    errors = [
        (["--set", "stepz=10"], {}, ["unknown key 'stepz'"]),
        (["--set", "optimizer.lrr=1"], {}, ["unknown key 'optimizer.lrr'"]),
        (["--set", "steps=abc"], {}, ["'steps' must be an integer", "abc"]),
        (["--set", "steps=\"many\""], {}, ["'steps' must be an integer", "many"]),
        (["--set", "steps=0"], {}, ["'steps' must be >= 1, got 0"]),
        (["--set", "optimizer.lr=nan"], {}, ["'optimizer.lr'", "got nan"]),
        (["--set", "optimizer.lr=-1"], {}, ["'optimizer.lr'", "got -1"]),
        (["--set", "eval_every=0"], {}, ["'eval_every' must be >= 1, got 0"]),
        (["--set", "seed=1.5"], {}, ["'seed' must be an integer", "1.5"]),
        (["--set", "seed=-3"], {}, ["'seed' must be >= 0, got -3"]),
        (["--set", "batch_size=0"], {}, ["'batch_size' must be >= 1, got 0"]),
        (["--set", "target=inf"], {}, ["'target' must be finite, got inf"]),
        (["--set", "threads=1000"], {}, ["'threads' must be in [0, 256], got 1000"]),
        (["--set", "schedule.warmup=100"], {}, ["'schedule.warmup'", "got 100"]),
        (["--set", "optimizer.beta2=1"], {}, ["'optimizer.beta2' must be in [0, 1), got 1"]),
        (["--set", "optimizer.name=adam"], {}, ["'optimizer.name'", "adam"]),
        (["--set", "ema=[{beta = 1.5}]"], {}, ["'ema[0].beta' must be in [0, 1), got 1.5"]),
        (["--set", "ema=[{half_life = -2}]"], {}, ["'ema[0].half_life'", "got -2"]),
        (["--set", "lawa=[{every = 2}]"], {}, ["'lawa[0]' needs window or horizon"]),
        (["--set", "lawa=[{window = 2, name = \"../x\"}]"], {}, ["'lawa[0].name'", "../x"]),
        (["--set", "lawa=[{window = 2, name = \"raw\"}]"], {}, ["duplicate averager name", "raw"]),
        (["--set", "schedule.kind=cosin"], {}, ["unknown kind 'cosin'"]),
        (["--set", "workload=mnist"], {}, ["unknown workload 'mnist'", "fmnist_cnn, text_lm, synth_ctr"]),
        (["--set", "workload=fmnist_cnn"], {"WAVG_FMNIST_DIR": "/nonexistent"},
         ["apt-get install dataset-fashion-mnist"]),
        (["--set", "workload=text_lm"], {"WAVG_WORDNET_DIR": "/nonexistent"},
         ["apt-get install wordnet-base"]),
        (["--set", "steps"], {}, ["expected key=value"]),
        (["--set", f"out={cfg}"], {}, [cfg, "not a directory"]),
    ]
    for extra, env, needles in errors:
        one_error_line(run("train", "--config", cfg, "--quiet", *extra, env=env), str(extra), needles)
    one_error_line(run("train", "--config", os.path.join(tmp, "missing.toml")), "missing config",
                   ["missing.toml"])
    bad = os.path.join(tmp, "bad.toml")
    with open(bad, "w") as f:
        f.write("workload = \n")
    one_error_line(run("train", "--config", bad), "TOML syntax error", ["bad.toml:1", "not TOML"])
    binary = os.path.join(tmp, "binary.toml")
    with open(binary, "wb") as f:
        f.write(bytes(range(256)) * 4)
    one_error_line(run("train", "--config", binary), "binary config", ["binary.toml", "not TOML"])
    one_error_line(run("train", "--resume", os.path.join(tmp, "nowhere")), "resume of a missing dir",
                   [os.path.join(tmp, "nowhere"), "does not exist"])
    # Raw bytes never reach the terminal: a key with byte 0xFF is escaped in the message.
    r = subprocess.run([WAVG, "train", "--config", cfg, "--set", b"st\xffeps=1"], capture_output=True)
    check(r.returncode == 2 and b"\\xff" in r.stderr and b"\xff" not in r.stderr,
          f"byte 0xFF escaped: {r.stderr!r}")

    # A short real run.
    r = run("train", "--config", cfg)
    check(r.returncode == 0, f"run failed: {r.stderr}")
    rd = os.path.join(tmp, "run")
    rows = [json.loads(l) for l in open(os.path.join(rd, "metrics.jsonl"))]
    # horizon 0.5 with L = 5 over T = 40: nu = round(0.5 * 40 / 5) = 4; half-life 10 at nu = 1.
    models = ["raw", "lawa_L4_nu2", "lawa_L5_nu4", "ema_hl10_nu1", "swa_nu1_s20"]
    check(sorted({row["model"] for row in rows}) == sorted(models),
          f"models in metrics: {sorted({r['model'] for r in rows})}")
    for row in rows:
        check(set(row) >= {"step", "model", "metric", "value", "loss", "lr", "train_wall_s"},
              f"metrics row fields: {sorted(row)}")
    check(sorted({row["step"] for row in rows}) == [20, 40], "evaluated at 20 and 40")
    summary = json.load(open(os.path.join(rd, "summary.json")))
    check(summary["steps"] == 40 and summary["steps_done"] == 40 and summary["stop_reason"] == "budget",
          f"summary steps: {summary['steps']}, {summary['steps_done']}, {summary['stop_reason']}")
    check([m["model"] for m in summary["models"]] == models, "summary lists raw then the bank in order")
    lower = summary["lower_is_better"]
    check(lower is True and summary["metric"] == "logloss", "synth_ctr: log-loss, lower is better")
    for m in summary["models"]:
        curve = sorted((row["step"], row["value"]) for row in rows if row["model"] == m["model"])
        best = min(curve, key=lambda p: (p[1], p[0]))  # best value, earliest on ties
        check(m["best_value"] == best[1] and m["best_step"] == best[0],
              f"{m['model']}: summary best {m['best_value']} ({m['best_step']}) vs metrics {best}")
        reached = [s for s, v in curve if v <= summary["target"]]
        check(m["steps_to_target"] == (reached[0] if reached else None), f"{m['model']}: steps_to_target")
        check(os.path.exists(os.path.join(rd, f"final_{m['model']}.safetensors")), "final model saved")
    # The printed table agrees with summary.json.
    table = {}
    for line in r.stdout.splitlines():
        mt = re.match(r"^(\S+)\s+(\d+|not reached)\s+(\S+)\s+(\d+\.\d{4}) \((\d+)\)$", line)
        if mt:
            table[mt.group(1)] = mt.groups()[1:]
    check(sorted(table) == sorted(models), f"table rows: {sorted(table)}")
    for m in summary["models"]:
        stt, pct, best, step = table.get(m["model"], (None,) * 4)
        want_stt = str(m["steps_to_target"]) if m["steps_to_target"] is not None else "not reached"
        check(stt == want_stt, f"table {m['model']}: steps to target {stt} vs {want_stt}")
        check(best == f"{m['best_value']:.4f}" and step == str(m["best_step"]),
              f"table {m['model']}: best {best} ({step}) vs {m['best_value']:.4f} ({m['best_step']})")
    check(f"40 of 40 steps" in r.stdout, "table footer: steps done")

    # config.toml holds the resolved run.
    rc = tomllib.load(open(os.path.join(rd, "config.toml"), "rb"))
    check(rc.get("wavg", {}).get("resolved") is True, "config.toml is marked resolved")
    check(rc["optimizer"]["lr"] == 1.6e-2 and rc["optimizer"]["weight_decay"] == 0.0,
          f"synth_ctr's default lr recorded: {rc['optimizer']}")
    check(rc["schedule"]["kind"] == "cosine" and rc["schedule"]["warmup"] == round(0.05 * 40)
          and rc["schedule"]["total_steps"] == 40, f"schedule in steps: {rc['schedule']}")
    check(rc["target"] == summary["target"] == 0.5, f"target {rc['target']}")
    check(rc["batch_size"] == 256, f"effective batch size {rc['batch_size']}")
    check(rc["threads"] == {"intra_op": 1, "blas": 1, "averaging": 1}, f"threads in force {rc['threads']}")
    check(rc["ckpt_every"] == 20 and rc["state_every"] == 80 and rc["keep_states"] == 2,
          f"cadences {rc['ckpt_every']}, {rc['state_every']}, {rc['keep_states']}")
    lawa = rc["lawa"]
    check([(a["name"], a["window"], a["every"], a["start"]) for a in lawa] ==
          [("lawa_L4_nu2", 4, 2, 0), ("lawa_L5_nu4", 5, round(0.5 * 40 / 5), 0)], f"lawa {lawa}")
    ema = rc["ema"][0]
    check(ema["every"] == 1 and abs(ema["beta"] - 0.5 ** (1 / 10)) < 1e-15, f"ema beta {ema}")
    check(rc["swa"][0]["start"] == 20 and rc["swa"][0]["buffers"] == "copy", f"swa {rc['swa']}")
    check(all(a["recompute_batches"] == 20 for a in lawa + rc["ema"] + rc["swa"]), "recompute_batches")

    # The resolved config is itself a config: it trains the same run, and resolves to itself.
    rd2 = os.path.join(tmp, "run2")
    r = run("train", "--config", os.path.join(rd, "config.toml"), "--set", f"out={rd2}", "--quiet")
    check(r.returncode == 0, f"train from a resolved config: {r.stderr}")
    text1 = open(os.path.join(rd, "config.toml")).read().replace(rd, "OUT")
    text2 = open(os.path.join(rd2, "config.toml")).read().replace(rd2, "OUT")
    check(text1 == text2, "the resolved config resolves to itself")
    rows2 = [json.loads(l) for l in open(os.path.join(rd2, "metrics.jsonl"))]
    check([strip_wall(x) for x in rows2] == [strip_wall(x) for x in rows], "same run from the resolved config")
    s2 = json.load(open(os.path.join(rd2, "summary.json")))
    check(s2["config_hash"] == summary["config_hash"], "same config hash (out is not part of it)")
    r = run("train", "--config", cfg, "--quiet", "--set", f"out={tmp}/run3", "--set", "optimizer.lr=0.01",
             "--set", "steps=1", "--set", "eval_every=1")
    check(r.returncode == 0 and json.load(open(f"{tmp}/run3/summary.json"))["config_hash"] != summary["config_hash"],
          "another learning rate, another hash")

    # A second run into the same directory is refused without --overwrite.
    one_error_line(run("train", "--config", cfg, "--quiet"), "second run", ["already holds a run", rd])

    # --overwrite removes everything the previous run wrote (and what sweep/report added).
    for stale in ["sweep.jsonl", "sweep_summary.csv", "report.html", "final_old_average.safetensors",
                  "sweep_lawa_L2_nu5.safetensors", "summary.json.tmp.12345"]:
        open(os.path.join(rd, stale), "w").write("stale")
    os.makedirs(os.path.join(rd, "checkpoints"), exist_ok=True)
    open(os.path.join(rd, "checkpoints", "model_00099999.safetensors"), "w").write("stale")
    r = run("train", "--config", cfg, "--quiet", "--overwrite", "--set", "lawa=[{window = 2}]")
    check(r.returncode == 0, f"--overwrite: {r.stderr}")
    left = sorted(os.listdir(rd))
    check(left == sorted(["config.toml", "metrics.jsonl", "summary.json", "checkpoints", "state",
                          "final_raw.safetensors", "final_lawa_L2_nu1.safetensors",
                          "final_ema_hl10_nu1.safetensors", "final_swa_nu1_s20.safetensors"]),
          f"after --overwrite: {left}")
    check(sorted(os.listdir(os.path.join(rd, "checkpoints"))) ==
          [f"model_{s:08d}.safetensors" for s in (0, 20, 40)], "stale checkpoints removed")
    # A file wavg did not write makes --overwrite refuse, naming it, and nothing is removed.
    open(os.path.join(rd, "notes.txt"), "w").write("mine")
    before = sorted(os.listdir(rd))
    one_error_line(run("train", "--config", cfg, "--quiet", "--overwrite"), "foreign file",
                   ["notes.txt", "--overwrite"])
    check(sorted(os.listdir(rd)) == before and open(os.path.join(rd, "notes.txt")).read() == "mine",
          "refused --overwrite removes nothing")

    # Every shipped training config parses, names its workload, and trains a few steps with its bank.
    configs = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")
    shipped = sorted(c for c in os.listdir(configs) if c.endswith(".toml") and not c.startswith("study"))
    check(len(shipped) >= 4, f"shipped configs: {shipped}")
    for c in shipped:
        out = os.path.join(tmp, "shipped_" + c[:-5])
        want = tomllib.load(open(os.path.join(configs, c), "rb"))
        r = run("train", "--config", os.path.join(configs, c), "--quiet", "--set", "steps=4",
                 "--set", "eval_every=4", "--set", "threads=1", "--set", f"out={out}")
        check(r.returncode == 0, f"configs/{c}: {r.stderr.strip()}")
        if r.returncode == 0:
            models = {json.loads(l)["model"] for l in open(os.path.join(out, "metrics.jsonl"))}
            n_bank = sum(len(want.get(k, [])) for k in ("lawa", "ema", "swa"))
            check("raw" in models and len(models) == 1 + n_bank, f"configs/{c}: models {sorted(models)}")
            got = tomllib.load(open(os.path.join(out, "config.toml"), "rb"))
            check(got["workload"] == want["workload"] and got["optimizer"]["lr"] == want["optimizer"]["lr"],
                  f"configs/{c}: workload and lr recorded")

finish()
