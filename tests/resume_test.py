#!/usr/bin/env python3
"""Crash-safety tests of `wavg train`: runs killed with SIGKILL at random moments (and in the
middle of writing a state) and resumed end with the same parameters, averages, metrics and summary
as an uninterrupted run (wall-clock fields aside); a damaged newest state is reported and skipped;
a resume with a different configuration is refused unless forced; SIGINT writes a state and exits
with 130; a finished or early-stopped run is resumed as a no-op (every file's bytes and mtime kept),
also when it was killed between its final state and summary.json; a run directory holding only a
raw (old) config.toml is resumed only with --force, which names the values taken from defaults;
changed threads are warned about, not refused. Usage: resume_test.py PATH_TO_WAVG"""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import check, finish  # noqa: E402
import shutil
import time

WAVG = sys.argv[1]
WALL = {"train_wall_s", "eval_wall_s"}


def strip(obj):
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if k not in WALL}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def outputs(run):
    files = sorted(f for f in os.listdir(run) if f.startswith("final_"))
    blobs = {f: open(os.path.join(run, f), "rb").read() for f in files}
    metrics = [strip(json.loads(l)) for l in open(os.path.join(run, "metrics.jsonl"))]
    summary = strip(json.load(open(os.path.join(run, "summary.json"))))
    return blobs, metrics, summary


def same_as_reference(run, ref, what):
    b, m, s = outputs(run)
    rb, rm, rs = ref
    check(sorted(b) == sorted(rb), f"{what}: final files {sorted(b)}")
    for f in rb:
        check(b.get(f) == rb[f], f"{what}: {f} is bit-identical")
    check(m == rm, f"{what}: metrics.jsonl identical ({len(m)} vs {len(rm)} rows)")
    check(s == rs, f"{what}: summary.json identical")


with tempfile.TemporaryDirectory() as tmp:
    cfg = os.path.join(tmp, "c.toml")
    with open(cfg, "w") as f:
        f.write('workload = "synth_ctr"\nsteps = 600\neval_every = 50\nckpt_every = 10\n'
                'state_every = 20\nthreads = 2\nbatch_size = 512\n'
                '[[lawa]]\nwindow = 5\nevery = 10\n[[ema]]\nbeta = 0.9\n[[swa]]\nstart = 0.5\n')

    def train(out, *extra, env=None):
        e = dict(os.environ)
        e.update(env or {})
        return subprocess.Popen([WAVG, "train", "--config", cfg, "--set", f'out="{out}"', "--quiet", *extra],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)

    t0 = time.time()
    p = train(os.path.join(tmp, "ref"))
    p.communicate()
    duration = time.time() - t0
    check(p.returncode == 0, "reference run")
    ref = outputs(os.path.join(tmp, "ref"))

    # 1. SIGKILL at random moments, then resume until done.
    rng = random.Random(1)
    run = os.path.join(tmp, "killed")
    proc = train(run)
    kills = 0
    while True:
        try:
            proc.wait(timeout=rng.uniform(0.2, duration * 0.3))
            break
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            if not os.path.exists(os.path.join(run, "config.toml")):  # killed before it started
                r = subprocess.run([WAVG, "train", "--resume", run, "--quiet"], capture_output=True, text=True)
                check(r.returncode == 2 and "holds no run" in r.stderr, f"resume of a run never started: {r.stderr!r}")
                proc = train(run)
                continue
            proc = subprocess.Popen([WAVG, "train", "--resume", run, "--quiet"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        if kills > 30:
            break
    out, err = proc.communicate()
    check(proc.returncode == 0, f"resumed run finished ({err.strip()})")
    check(kills >= 1, f"killed {kills} times")
    same_as_reference(run, ref, f"killed {kills} times")

    # 2. Killed in the middle of writing the state of step 240.
    run = os.path.join(tmp, "torn")
    p = train(run, env={"WAVG_TEST_KILL_IN_STATE_WRITE": "240"})
    p.communicate()
    check(p.returncode == -signal.SIGKILL, f"died mid-write (rc {p.returncode})")
    check(any(n.endswith(".tmp") for n in os.listdir(os.path.join(run, "state"))), "a torn state is left")
    r = subprocess.run([WAVG, "train", "--resume", run, "--quiet"], capture_output=True, text=True)
    check(r.returncode == 0, f"resume after a torn write: {r.stderr}")
    same_as_reference(run, ref, "torn state write")

    # 2b. Killed while writing the very first state (step 20): nothing intact to continue from,
    # so resume starts again from step 0, says so, and still ends identical.
    run = os.path.join(tmp, "first")
    p = train(run, env={"WAVG_TEST_KILL_IN_STATE_WRITE": "20"})
    p.communicate()
    check(p.returncode == -signal.SIGKILL, f"died mid-write of the first state (rc {p.returncode})")
    r = subprocess.run([WAVG, "train", "--resume", run, "--quiet"], capture_output=True, text=True)
    check(r.returncode == 0 and "from step 0" in r.stderr, f"resume with no intact state: {r.stderr!r}")
    same_as_reference(run, ref, "first state torn")

    # 3. A damaged newest state: reported, skipped, the previous one used.
    run = os.path.join(tmp, "damaged")
    p = train(run, env={"WAVG_TEST_KILL_IN_STATE_WRITE": "300"})
    p.communicate()
    states = sorted(n for n in os.listdir(os.path.join(run, "state")) if not n.endswith(".tmp"))
    newest = os.path.join(run, "state", states[-1])
    with open(os.path.join(newest, "bank.safetensors"), "r+b") as f:
        f.truncate(100)
    r = subprocess.run([WAVG, "train", "--resume", run, "--quiet"], capture_output=True, text=True)
    check(r.returncode == 0, f"resume past a damaged state: {r.stderr}")
    check(states[-1] in r.stderr and "damaged" in r.stderr, f"the damaged state is named: {r.stderr!r}")
    same_as_reference(run, ref, "damaged newest state")

    # 4. A different configuration is refused, unless forced; threads may change (warned).
    run = os.path.join(tmp, "changed")
    p = train(run, env={"WAVG_TEST_KILL_IN_STATE_WRITE": "300"})
    p.communicate()
    r = subprocess.run([WAVG, "train", "--resume", run, "--set", "optimizer.lr=0.5", "--quiet"],
                       capture_output=True, text=True)
    check(r.returncode == 2 and "optimizer.lr" in r.stderr and "--force" in r.stderr,
          f"config mismatch refused: {r.stderr!r}")
    r = subprocess.run([WAVG, "train", "--resume", run, "--set", "threads=1", "--quiet"],
                       capture_output=True, text=True)
    check(r.returncode == 0 and "warning" in r.stderr and "threads.intra_op (run: 2, now: 1)" in r.stderr,
          f"threads change warned, not refused: rc {r.returncode} {r.stderr!r}")

    # 5. SIGINT: finish the step, write a state, exit 130; resume completes identically.
    run = os.path.join(tmp, "interrupted")
    p = train(run)
    time.sleep(duration * 0.4)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate()
    if p.returncode == 0:
        print("note: the run finished before SIGINT arrived")
    else:
        check(p.returncode == 130, f"SIGINT exit code {p.returncode} ({err.strip()})")
        check("--resume" in out, "tells how to continue")
        r = subprocess.run([WAVG, "train", "--resume", run, "--quiet"], capture_output=True, text=True)
        check(r.returncode == 0, f"resume after SIGINT: {r.stderr}")
    same_as_reference(run, ref, "SIGINT")

    def snapshot(d):
        """Every file under d: (bytes, mtime_ns)."""
        out = {}
        for root, _, files in os.walk(d):
            for f in files:
                p = os.path.join(root, f)
                out[os.path.relpath(p, d)] = (open(p, "rb").read(), os.stat(p).st_mtime_ns)
        return out

    def resume_is_noop(d, what):
        before = snapshot(d)
        time.sleep(0.05)
        r = subprocess.run([WAVG, "train", "--resume", d], capture_output=True, text=True)
        check(r.returncode == 0 and "finished" in r.stdout, f"{what}: rc {r.returncode}, {r.stdout!r} {r.stderr!r}")
        after = snapshot(d)
        check(sorted(after) == sorted(before), f"{what}: files {sorted(set(after) ^ set(before))} appeared/vanished")
        for f in before:
            check(after.get(f) == before[f], f"{what}: {f} unchanged (bytes and mtime)")

    # 6. A finished run and an early-stopped run: resuming changes nothing.
    resume_is_noop(os.path.join(tmp, "ref"), "finished run")
    early_cfg = os.path.join(tmp, "early.toml")
    early = os.path.join(tmp, "early")
    with open(early_cfg, "w") as f:
        f.write(f'workload = "synth_ctr"\nsteps = 200\neval_every = 20\nckpt_every = 10\nstate_every = 20\n'
                f'threads = 2\ntarget = 10.0\nearly_stop = true\nout = "{early}"\n[[ema]]\nbeta = 0.9\n')
    r = subprocess.run([WAVG, "train", "--config", early_cfg, "--quiet"], capture_output=True, text=True)
    check(r.returncode == 0, f"early-stopped run: {r.stderr}")
    s = json.load(open(os.path.join(early, "summary.json")))
    check(s["steps_done"] == 20 and s["stop_reason"] == "early_stop", f"stopped early at 20: {s['steps_done']}")
    resume_is_noop(early, "early-stopped run")
    # Killed after its final state but before summary.json: the state says it finished, so resume
    # writes the final models and summary.json again without training a step.
    metrics_before = open(os.path.join(early, "metrics.jsonl"), "rb").read()
    finals = {f: open(os.path.join(early, f), "rb").read() for f in os.listdir(early) if f.startswith("final_")}
    os.remove(os.path.join(early, "summary.json"))
    for f in finals:
        os.remove(os.path.join(early, f))
    r = subprocess.run([WAVG, "train", "--resume", early, "--quiet"], capture_output=True, text=True)
    check(r.returncode == 0, f"resume before summary.json: {r.stderr}")
    s2 = json.load(open(os.path.join(early, "summary.json")))
    check(strip(s2) == strip(s), f"summary rewritten as it was: {s2['steps_done']}, {s2['stop_reason']}")
    check(open(os.path.join(early, "metrics.jsonl"), "rb").read() == metrics_before, "no step trained")
    for f, blob in finals.items():
        check(open(os.path.join(early, f), "rb").read() == blob, f"{f} rewritten identically")

    # 7. A run directory with a raw config.toml (as older versions wrote it): refused, then --force.
    raw = os.path.join(tmp, "raw")
    os.makedirs(raw)
    with open(os.path.join(raw, "config.toml"), "w") as f:
        f.write('workload = "synth_ctr"\nsteps = 40\neval_every = 20\nthreads = 1\n'
                '[[lawa]]\nwindow = 5\nevery = 10\n[[ema]]\nbeta = 0.9\n')
    r = subprocess.run([WAVG, "train", "--resume", raw, "--quiet"], capture_output=True, text=True)
    lines = r.stderr.splitlines()
    check(r.returncode == 2 and len(lines) == 1 and lines[0].startswith("wavg: error:") and "raw" in r.stderr
          and "--force" in r.stderr, f"raw config refused: {r.stderr!r}")
    check(sorted(os.listdir(raw)) == ["config.toml"], "refusal writes nothing")
    r = subprocess.run([WAVG, "train", "--resume", raw, "--force", "--quiet"], capture_output=True, text=True)
    check(r.returncode == 0, f"--force resolves with today's defaults: {r.stderr}")
    for default in ["optimizer.lr = 0.016", "target = 0.5", "schedule.warmup = 2", "ema[0].every = 1",
                    "batch_size = 256", "lawa[0].buffers = \"copy\""]:
        check(default in r.stderr, f"the warning names {default!r}: {r.stderr!r}")
    resolved = open(os.path.join(raw, "config.toml")).read()
    check(resolved.startswith("wavg = {resolved = true"), "config.toml is resolved after --force")
    check(json.load(open(os.path.join(raw, "summary.json")))["steps_done"] == 40, "the run finished")

finish()
