#!/usr/bin/env python3
"""Validation metrics under data parallel (issue 14 §1, issue 13 §1): `wavg train --nproc 2` over
loopback against one process, on the higher-is-better workloads. graph_mol's average precision needs
every score: the ranks gather their scores and labels; mri_recon's SSIM is a mean over images: the
ranks sum it.
- At the initial model (a first step with a learning rate of 1e-30 leaves every weight as it was),
  both runs score the same molecules in the same batches: graph_mol's average precision is equal to
  the last bit, mri_recon's SSIM up to the order of the sum (1e-12).
- After a few steps at a real learning rate the trajectories differ only by the order of the gradient
  sums: the metric within 1e-3, the raw model within 1e-4 relative.
Usage: dist_metric_test.py PATH_TO_WAVG"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import check, finish  # noqa: E402

WAVG = os.path.abspath(sys.argv[1])


def config(workload, steps, lr, batch):
    return (f'workload = "{workload}"\nsteps = {steps}\neval_every = 1\nbatch_size = {batch}\n'
            f'threads = 1\ndist_timeout = 30\n[optimizer]\nlr = {lr}\n')


def train(tmp, name, text, nproc):
    cfg = os.path.join(tmp, name + ".toml")
    with open(cfg, "w") as f:
        f.write(text)
    out = os.path.join(tmp, f"{name}_{nproc}")
    args = [WAVG, "train", "--config", cfg, "--set", f"out={out}"]
    if nproc > 1:
        args += ["--nproc", str(nproc)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    check(r.returncode == 0, f"{name}, {nproc} process(es): trains ({r.stderr[-300:]})")
    return out


def raw_values(run):
    """(step, value, loss) of the raw model's evaluations."""
    path = os.path.join(run, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    rows = [json.loads(line) for line in open(path)]
    return [(r["step"], r["value"], r["loss"]) for r in rows if r["model"] == "raw"]


def tensors(path):
    """A safetensors file as {name: float64 array} (read here, independently of wavg)."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    dtypes = {"F32": np.float32, "F64": np.float64}
    return {k: np.frombuffer(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]],
                             dtype=dtypes[v["dtype"]]).astype(np.float64)
            for k, v in header.items() if k != "__metadata__"}


def rel_diff(a, b):
    num = sum(float(np.sum((a[k] - b[k]) ** 2)) for k in a)
    return (num / sum(float(np.sum(a[k] ** 2)) for k in a)) ** 0.5


def initial_model(tmp, workload, batch, exact):
    """One step at lr 1e-30: both runs evaluate the initial model."""
    text = config(workload, steps=1, lr=1e-30, batch=batch)
    one, two = (raw_values(train(tmp, workload + "_init", text, n)) for n in (1, 2))
    check(len(one) == 1 and len(two) == 1, f"{workload}: one evaluation each ({one}, {two})")
    if len(one) != 1 or len(two) != 1:
        return
    (_, v1, l1), (_, v2, l2) = one[0], two[0]
    if exact:
        check(v1 == v2, f"{workload}: initial metric equal to the last bit over 2 ranks ({v1!r} vs {v2!r})")
    else:
        check(abs(v1 - v2) <= 1e-12, f"{workload}: initial metric over 2 ranks within 1e-12 ({v1!r} vs {v2!r})")
    check(abs(l1 - l2) <= 1e-9 * abs(l1), f"{workload}: initial validation loss ({l1!r} vs {l2!r})")


def after_steps(tmp, workload, batch, lr):
    text = config(workload, steps=4, lr=lr, batch=batch)
    runs = [train(tmp, workload + "_steps", text, n) for n in (1, 2)]
    one, two = (raw_values(r) for r in runs)
    check(len(one) == 4 and [s for s, _, _ in one] == [s for s, _, _ in two],
          f"{workload}: evaluations at steps 1-4 in both runs ({one}, {two})")
    for (s, v1, _), (_, v2, _) in zip(one, two):
        check(abs(v1 - v2) <= 1e-3, f"{workload}: metric at step {s} over 2 ranks within 1e-3 ({v1} vs {v2})")
    check(one[-1][1] != one[0][1], f"{workload}: the metric moves over 4 steps ({one})")
    a, b = (os.path.join(r, "final_raw.safetensors") for r in runs)
    if os.path.exists(a) and os.path.exists(b):
        d = rel_diff(tensors(a), tensors(b))
        check(d <= 1e-4, f"{workload}: final raw model over 2 ranks within 1e-4 relative ({d:.2e})")
    else:
        check(False, f"{workload}: final_raw.safetensors written by both runs")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        initial_model(tmp, "graph_mol", batch=64, exact=True)
        after_steps(tmp, "graph_mol", batch=64, lr=3e-3)
        initial_model(tmp, "mri_recon", batch=16, exact=False)
    finish()


main()
