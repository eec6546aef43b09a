#!/usr/bin/env python3
"""CLI tests of the `device` key (DESIGN.md §8): a malformed value, or a GPU that this wavg cannot use
(built against a CPU LibTorch, or no CUDA device visible), gives exactly one line "wavg: error: ..."
naming the value and the reason, exit code 2, and writes nothing; "cuda" stands for
cuda:$LOCAL_RANK; a CPU run records device = "cpu" (and async_averaging's device-dependent default)
in its resolved config.toml; resuming with another device is warned about, not refused as a changed
configuration. Usage: device_test.py PATH_TO_WAVG"""
import os
import subprocess
import sys
import tempfile
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import check, finish, one_error_line, runner  # noqa: E402

WAVG = sys.argv[1]
run = runner(WAVG, unset=("LOCAL_RANK",))


def gpu_visible():
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0
    except OSError:
        return False


with tempfile.TemporaryDirectory() as tmp:
    cfg = os.path.join(tmp, "c.toml")
    out = os.path.join(tmp, "run")
    with open(cfg, "w") as f:
        f.write(f'workload = "synth_ctr"\nsteps = 6\neval_every = 3\nthreads = 1\nout = "{out}"\n'
                'state_every = 3\n[[ema]]\nbeta = 0.5\n')

    # Malformed values: the syntax is checked whatever the machine.
    for value, needles in [
        ("gpu", ['got "gpu"', "cpu", "cuda:N"]),
        ("CUDA", ['got "CUDA"']),
        ("cuda:", ['got "cuda:"']),
        ("cuda:-1", ['got "cuda:-1"']),
        ("cuda:x", ['got "cuda:x"']),
        ("cuda:1024", ['got "cuda:1024"']),
        ("cuda:0 ", ['got "cuda:0 "']),
        ("1", ["'device' must be a string", "1"]),
    ]:
        r = run("train", "--config", cfg, "--set", f"device={value}")
        one_error_line(r, f"device={value!r}", ["'device'", *needles])
        check(not os.path.exists(out), f"device={value!r}: {out} was created")

    # A GPU this wavg cannot use: refused before anything is written, naming the value and why.
    if gpu_visible():
        print("a GPU is visible: the refusals of a GPU are not checked here")
    else:
        reasons = ("built against a LibTorch without CUDA", "no CUDA device is visible")
        for value, env, shown in [("cuda", {}, "(cuda:0)"), ("cuda:1", {}, 'device "cuda:1"'),
                                  ("cuda", {"LOCAL_RANK": "3"}, "(cuda:3)")]:
            r = run("train", "--config", cfg, "--set", f"device={value}", env=env)
            one_error_line(r, f"device={value} {env}", [f'device "{value}"', shown])
            check(any(x in r.stderr for x in reasons), f"device={value}: no reason in {r.stderr!r}")
            check(not os.path.exists(out), f"device={value}: {out} was created")
    # LOCAL_RANK is read only for "cuda", and must be an index.
    r = run("train", "--config", cfg, "--set", "device=cuda", env={"LOCAL_RANK": "one"})
    one_error_line(r, "LOCAL_RANK=one", ["LOCAL_RANK", "'one'"])

    # A CPU run records the device and async_averaging's default for it (off on the CPU).
    r = run("train", "--config", cfg, "--quiet")
    check(r.returncode == 0, f"cpu run: exit {r.returncode} ({r.stderr.strip()!r})")
    with open(os.path.join(out, "config.toml"), "rb") as f:
        resolved = tomllib.load(f)
    check(resolved.get("device") == "cpu", f"config.toml device = {resolved.get('device')!r}")
    check(resolved.get("async_averaging") is False,
          f"config.toml async_averaging = {resolved.get('async_averaging')!r} on the CPU")

    # Resuming with another device may change without --force (it is recorded, with a warning, once
    # the run resumes: resume_checks_test); on this machine the run stops first at the device check,
    # with the device's reason, and nothing in the run directory changes.
    if not gpu_visible():
        os.remove(os.path.join(out, "summary.json"))  # as if killed before it was written
        r = run("train", "--resume", out, "--set", "device=cuda:0")
        check(r.returncode == 2, f"resume on cuda:0: exit {r.returncode}")
        check("--force" not in r.stderr, f"resume on cuda:0 refused as a changed config: {r.stderr!r}")
        check('device "cuda:0"' in r.stderr and any(x in r.stderr for x in reasons),
              f"resume on cuda:0: {r.stderr!r}")
        with open(os.path.join(out, "config.toml"), "rb") as f:
            check(tomllib.load(f).get("device") == "cpu", "resume on cuda:0 rewrote config.toml")
        check(not os.path.exists(os.path.join(out, "config_changes.jsonl")),
              "resume on cuda:0 recorded a change that never ran")

finish()
