#!/usr/bin/env python3
"""Resume of changed runs and of states that do not fit (issue 21 §1.2 and §1.4), through `wavg train`
on short synth_ctr runs (stopped at a chosen state by WAVG_TEST_KILL_IN_STATE_WRITE).

1. `--resume --force` with a changed learning rate, killed again, then resumed plainly: config.toml
   holds the new value, the change (step, key, old, new) is in config_changes.jsonl and summary.json,
   warned about once, and the final models equal, bit for bit (numpy over the testlib reader), those
   of a run that made the same change at the same step and then ran uninterrupted.
2. What may change without --force (threads, dist_timeout) is warned about once (also under
   --quiet) and recorded the same way.
3. A newest state whose bank ring count, sample count, manifest metrics_bytes, optimizer state,
   generator or model step does not fit: resume names the file and the field, falls back to the
   previous state and ends bit-identical to an uninterrupted run.
Usage: resume_checks_test.py PATH_TO_WAVG"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import check, finish, read_safetensors, write_safetensors  # noqa: E402

WAVG = os.path.abspath(sys.argv[1])
CONFIG = """workload = "synth_ctr"
steps = 60
eval_every = 20
state_every = 10
keep_states = 10
batch_size = 256
threads = 1
[[lawa]]
window = 3
every = 5
[[ema]]
beta = 0.9
every = 5
"""


def wavg(*args, kill_at=None, timeout=120):
    env = dict(os.environ)
    env.pop("WAVG_TEST_KILL_IN_STATE_WRITE", None)
    if kill_at is not None:
        env["WAVG_TEST_KILL_IN_STATE_WRITE"] = str(kill_at)
    return subprocess.run([WAVG, *args], capture_output=True, text=True, env=env, timeout=timeout)


def finals(run):
    return {f: read_safetensors(os.path.join(run, f))[0]
            for f in sorted(os.listdir(run)) if f.startswith("final_")}


def same_models(run, ref, what):
    a, b = finals(run), finals(ref)
    check(sorted(a) == sorted(b) and len(a) == 3, f"{what}: final files {sorted(a)} vs {sorted(b)}")
    for f in b:
        ok = f in a and a[f].keys() == b[f].keys() and all(np.array_equal(a[f][k], b[f][k]) for k in b[f])
        check(ok, f"{what}: {f} bit-identical to the reference")


def changes_of(run):
    path = os.path.join(run, "config_changes.jsonl")
    return [json.loads(l) for l in open(path)] if os.path.exists(path) else []


def warning_lines(stderr, needle):
    return [l for l in stderr.splitlines() if "warning" in l and needle in l]


def killed_at_30(cfg, run):
    """A run stopped while writing its state of step 30: states 10 and 20 are intact."""
    r = wavg("train", "--config", cfg, "--set", f"out={run}", "--quiet", kill_at=30)
    check(r.returncode == -signal.SIGKILL, f"killed while writing state 30 (rc {r.returncode})")


def forced_change(tmp, cfg):
    ref, run = os.path.join(tmp, "ref_change"), os.path.join(tmp, "change")
    killed_at_30(cfg, ref)
    lr_old = tomllib.load(open(os.path.join(ref, "config.toml"), "rb"))["optimizer"]["lr"]
    r = wavg("train", "--resume", ref, "--force", "--set", "optimizer.lr=0.05", "--quiet")
    check(r.returncode == 0, f"reference: forced resume finishes ({r.stderr[-300:]})")
    check(len(warning_lines(r.stderr, "optimizer.lr")) == 1, f"the forced change is warned once: {r.stderr!r}")
    killed_at_30(cfg, run)
    r = wavg("train", "--resume", run, "--force", "--set", "optimizer.lr=0.05", "--quiet", kill_at=50)
    check(r.returncode == -signal.SIGKILL, f"forced resume killed while writing state 50 (rc {r.returncode})")
    r = wavg("train", "--resume", run, "--quiet")
    check(r.returncode == 0 and r.stderr == "", f"plain resume: nothing to warn about ({r.returncode}, {r.stderr!r})")
    lr_now = tomllib.load(open(os.path.join(run, "config.toml"), "rb"))["optimizer"]["lr"]
    check(lr_now == 0.05, f"config.toml holds the forced value: lr {lr_now}")
    same_models(run, ref, "forced lr 0.05 at step 20, killed, resumed plainly")
    want = [{"step": 20, "key": "optimizer.lr"}]
    for where, got in (("config_changes.jsonl", changes_of(run)),
                       ("summary.json", json.load(open(os.path.join(run, "summary.json"))).get("config_changes"))):
        ok = got is not None and [{k: c[k] for k in ("step", "key")} for c in got] == want and \
            float(got[0]["old"]) == lr_old and float(got[0]["new"]) == 0.05
        check(ok, f"{where} records the change at step 20 from {lr_old} to 0.05: {got}")


def allowed_changes(tmp, cfg):
    run = os.path.join(tmp, "allowed")
    killed_at_30(cfg, run)
    r = wavg("train", "--resume", run, "--set", "threads=2", "--set", "dist_timeout=77", "--quiet")
    check(r.returncode == 0, f"threads and dist_timeout change without --force ({r.stderr[-300:]})")
    for key in ("threads.intra_op (run: 1, now: 2)", "dist_timeout (run: "):
        check(len(warning_lines(r.stderr, key)) == 1, f"warned once under --quiet: {key!r} in {r.stderr!r}")
    got = {c["key"]: c for c in changes_of(run)}
    check(got.get("threads.intra_op", {}).get("step") == 20 and got["threads.intra_op"]["new"] == "2",
          f"threads change recorded at step 20: {got}")
    check("dist_timeout" in got and float(got["dist_timeout"]["new"]) == 77, f"dist_timeout recorded: {got}")
    conf = tomllib.load(open(os.path.join(run, "config.toml"), "rb"))
    check(conf["threads"]["intra_op"] == 2 and conf["dist_timeout"] == 77, "config.toml holds the values in force")
    summary = json.load(open(os.path.join(run, "summary.json")))
    check(summary.get("config_changes") == changes_of(run), "summary.json lists the same changes")


def rewrite(path, tensors=None, meta=None):
    """Rewrites a safetensors file with changed metadata (tensors kept unless given)."""
    t, m = read_safetensors(path)
    m.update(meta or {})
    write_safetensors(path, tensors if tensors is not None else t, m)


def refresh_manifest(state, name):
    """The manifest's size and CRC-32 of `name` made to match the file again (so that only the
    field under test is wrong)."""
    p = os.path.join(state, "manifest.json")
    m = json.load(open(p))
    data = open(os.path.join(state, name), "rb").read()
    m["files"][name] = {"bytes": len(data), "crc32": zlib.crc32(data)}
    json.dump(m, open(p, "w"), indent=2)


def set_manifest(state, **fields):
    p = os.path.join(state, "manifest.json")
    m = json.load(open(p))
    m.update(fields)
    json.dump(m, open(p, "w"), indent=2)


def unfit_states(tmp, cfg):
    plain = os.path.join(tmp, "plain")
    r = wavg("train", "--config", cfg, "--set", f"out={plain}", "--quiet")
    check(r.returncode == 0, f"uninterrupted run ({r.stderr[-300:]})")
    base = os.path.join(tmp, "base")
    killed_at_30(cfg, base)

    def bank(s, **meta):
        rewrite(os.path.join(s, "bank.safetensors"), meta=meta)
        refresh_manifest(s, "bank.safetensors")

    def optimizer_of_state_10(s):
        shutil.copy(os.path.join(os.path.dirname(s), "step_00000010", "optimizer.pt"), os.path.join(s, "optimizer.pt"))
        refresh_manifest(s, "optimizer.pt")

    def short_rng(s):
        p = os.path.join(s, "rng.bin")
        open(p, "r+b").truncate(os.path.getsize(p) - 8)
        refresh_manifest(s, "rng.bin")

    def model_step(s):
        rewrite(os.path.join(s, "model.safetensors"), meta={"step": "10"})
        refresh_manifest(s, "model.safetensors")

    cases = [
        ("ring count negative", lambda s: bank(s, **{"ring.0.count": "-1"}), "bank.safetensors", "ring.0.count"),
        ("ring count huge", lambda s: bank(s, **{"ring.0.count": "9223372036854775807"}), "bank.safetensors", "ring.0.count"),
        ("ring count below the window's samples", lambda s: bank(s, **{"ring.0.count": "1"}), "bank.safetensors", "ring.0.count"),
        ("sample count", lambda s: bank(s, **{"averager.1.samples": "999"}), "bank.safetensors", "averager.1.samples"),
        ("metrics_bytes past metrics.jsonl", lambda s: set_manifest(s, metrics_bytes=10**9), "manifest.json", "metrics_bytes"),
        ("optimizer state of step 10", optimizer_of_state_10, "optimizer.pt", "step"),
        ("generator state short", short_rng, "rng.bin", "bytes"),
        ("model of step 10", model_step, "model.safetensors", "'step'"),
    ]
    for i, (what, tamper, file, field) in enumerate(cases):
        run = os.path.join(tmp, f"unfit{i}")
        shutil.copytree(base, run)
        state = os.path.join(run, "state", "step_00000020")
        tamper(state)
        r = wavg("train", "--resume", run, "--quiet", timeout=60)
        lines = [l for l in r.stderr.splitlines() if "step_00000020" in l and file in l and field in l]
        check(r.returncode == 0, f"{what}: resume falls back and finishes (rc {r.returncode}, {r.stderr[-300:]!r})")
        check(len(lines) == 1 and "older" in lines[0], f"{what}: one warning naming {file} and {field!r}: {r.stderr!r}")
        if r.returncode == 0:
            same_models(run, plain, f"{what}: resumed from state 10")


with tempfile.TemporaryDirectory() as tmp:
    cfg = os.path.join(tmp, "c.toml")
    with open(cfg, "w") as f:
        f.write(CONFIG)
    forced_change(tmp, cfg)
    allowed_changes(tmp, cfg)
    unfit_states(tmp, cfg)
finish()
