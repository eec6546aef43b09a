#!/usr/bin/env python3
"""Post-hoc EMA (Karras et al. 2024, EDM2) end to end: `wavg train` with two phema averagers (the
profiles sigma_rel 0.05 and 0.10, and a third profile 0.07 tracked exactly in the same run), then
`wavg phema`. Checked against independent numpy references:
- every snapshot equals a power-function EMA recomputed here in fp64 from the run's per-step model
  checkpoints (beta_t = (1 - 1/t)^(gamma+1), gamma from EDM2's std_to_exp via np.roots);
- asking for a tracked sigma_rel at a snapshot step returns that snapshot (within 1e-5);
- sigma_rel 0.07 reconstructed from the 0.05/0.10 snapshots matches the exactly tracked 0.07 profile
  (relative error of the weights <= 1e-2);
- the least-squares coefficients equal those of a numpy transcription of EDM2's
  solve_posthoc_coefficients (training/phema.py) to 1e-6, and the output is sum_i c_i snapshot_i;
- the reconstruction's validation metric is within the seed noise of the tracked profile's: both
  measured with `wavg eval`, their difference at most the sample standard deviation (ddof 1) of the
  tracked 0.07 profile's metric over seeds 0, 1, 2 (tolerance fixed before the numbers were seen:
  one standard deviation of seed noise);
- `wavg phema --eval` over sigma_rel 0.05,0.07,0.1 prints one row per sigma_rel whose metric is that of
  `wavg eval` of the same reconstruction (0.07) or of the tracked snapshot (0.05, 0.10);
- bad requests give one line 'wavg: error: ...' naming the value, exit 2, and no output.
Usage: phema_test.py PATH_TO_WAVG"""
import glob
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import check, finish, one_error_line, runner  # noqa: E402
from wavg_testlib import read_safetensors as read_st  # noqa: E402

WAVG = sys.argv[1]
run = runner(WAVG)


# ---- numpy transcription of EDM2's training/phema.py (NVlabs/edm2) --------------------------------

def std_to_exp(std):
    std = np.float64(std)
    tmp = std.flatten() ** -2
    exp = [np.roots([1, 7, 16 - t, 12 - t]).real.max() for t in tmp]
    return np.float64(exp).reshape(std.shape)


def power_function_correlation(a_ofs, a_std, b_ofs, b_std):
    a_exp = std_to_exp(a_std)
    b_exp = std_to_exp(b_std)
    t_ratio = a_ofs / b_ofs
    t_exp = np.where(a_ofs < b_ofs, b_exp, -a_exp)
    t_max = np.maximum(a_ofs, b_ofs)
    num = (a_exp + 1) * (b_exp + 1) * t_ratio ** t_exp
    den = (a_exp + b_exp + 1) * t_max
    return num / den


def solve_posthoc_coefficients(in_ofs, in_std, out_ofs, out_std):
    in_ofs, in_std = np.broadcast_arrays(in_ofs, in_std)
    out_ofs, out_std = np.broadcast_arrays(out_ofs, out_std)
    rv = lambda x: np.float64(x).reshape(-1, 1)  # noqa: E731
    cv = lambda x: np.float64(x).reshape(1, -1)  # noqa: E731
    A = power_function_correlation(rv(in_ofs), rv(in_std), cv(in_ofs), cv(in_std))
    B = power_function_correlation(rv(in_ofs), rv(in_std), cv(out_ofs), cv(out_std))
    X = np.linalg.solve(A, B)
    return X / np.sum(X, axis=0)


def floating(tensors):
    return {k: v.astype(np.float64) for k, v in tensors.items() if v.dtype.kind == "f"}


def rel_err(a, b):
    num = sum(float(np.sum((a[k] - b[k]) ** 2)) for k in b)
    den = sum(float(np.sum(b[k] ** 2)) for k in b)
    return (num / den) ** 0.5


def evaluate(path):
    r = run("eval", path, "--workload", "synth_ctr")
    check(r.returncode == 0, f"eval {path}: {r.stderr.strip()}")
    return float(r.stdout.split()[3]) if r.returncode == 0 else float("nan")


def tracked07(tmp, seed):
    """The exactly tracked sigma_rel 0.07 profile at the last step of a run with this seed."""
    rd = os.path.join(tmp, f"seed{seed}")
    cfg = os.path.join(tmp, f"seed{seed}.toml")
    with open(cfg, "w") as f:
        f.write(f'workload = "synth_ctr"\nseed = {seed}\nsteps = {STEPS}\neval_every = {STEPS}\n'
                f'threads = 1\nckpt_every = 0\nout = "{rd}"\n'
                f'phema = [{{name = "ph07", sigma_rel = [0.07], snapshot_every = {STEPS}}}]\n')
    r = run("train", "--config", cfg, "--quiet")
    check(r.returncode == 0, f"train seed {seed}: {r.stderr.strip()}")
    return glob.glob(os.path.join(rd, "phema", "ph07", f"*{STEPS}*.safetensors"))[0]


def check_metrics(tmp, rd, rec07):
    """The reconstruction's metric against the seed noise; `wavg phema --eval` against `wavg eval`."""
    exact = [p for p in glob.glob(os.path.join(rd, "phema", "ph07", "*.safetensors"))
             if int(read_st(p)[1]["step"]) == STEPS][0]
    tracked = [evaluate(exact)] + [evaluate(tracked07(tmp, s)) for s in (1, 2)]
    noise = float(np.std(tracked, ddof=1))
    got = evaluate(rec07)
    print(f"validation logloss: sigma_rel 0.07 reconstructed {got:.6f}, tracked {tracked[0]:.6f} "
          f"(difference {abs(got - tracked[0]):.3g}); tracked over seeds 0-2 {np.round(tracked, 6)}, "
          f"std {noise:.3g}")
    check(abs(got - tracked[0]) <= noise,
          f"reconstructed metric within the seed noise: |{got} - {tracked[0]}| > std {noise}")

    r = run("phema", "--averager", "ph", "--sigma-rel", "0.05,0.07,0.1", "--eval", rd)
    check(r.returncode == 0, f"phema --eval: {r.stderr.strip()}")
    rows = {}
    for line in r.stdout.splitlines():
        f = line.split()
        if len(f) == 6 and f[2] == str(STEPS):
            rows[float(f[0])] = float(f[3])
    print(r.stdout, end="")
    check(sorted(rows) == [0.05, 0.07, 0.1], f"one row per sigma_rel: {rows}")
    if sorted(rows) != [0.05, 0.07, 0.1]:
        return
    check(abs(rows[0.07] - got) <= 1e-9 * got, f"--eval 0.07 {rows[0.07]} = eval of the reconstruction {got}")
    for sig in (0.05, 0.1):
        snap = [p for p in glob.glob(os.path.join(rd, "phema", "ph", "*.safetensors"))
                if int(read_st(p)[1]["step"]) == STEPS and float(read_st(p)[1]["wavg.phema.sigma_rel"]) == sig]
        want = evaluate(snap[0])
        check(abs(rows[sig] - want) <= 1e-4 * want, f"--eval {sig}: {rows[sig]} vs the tracked snapshot {want}")
    check(rows[0.05] != rows[0.1], "the rows differ")
    bad = os.path.join(tmp, "bad_eval.safetensors")
    one_error_line(run("phema", "--averager", "ph", "--sigma-rel", "0.05,0.07", "--eval", "-o", bad, rd),
                   "--eval -o with two sigma_rel", ["one --sigma-rel with -o, got 2"], bad)
    one_error_line(run("phema", "--averager", "ph", "--sigma-rel", "0.05,0.07", "-o", bad, rd),
                   "two sigma_rel without --eval", ["one value without --eval, got 2"], bad)
    one_error_line(run("phema", "--averager", "ph", "--sigma-rel", "0.05,0.9", "--eval", rd),
                   "--eval with a bad sigma_rel", ["got 0.9"])


STEPS, K = 120, 20
with tempfile.TemporaryDirectory() as tmp:
    rd = os.path.join(tmp, "run")
    cfg = os.path.join(tmp, "c.toml")
    with open(cfg, "w") as f:
        f.write(f'workload = "synth_ctr"\nsteps = {STEPS}\neval_every = 60\nthreads = 1\n'
                f'ckpt_every = 1\nout = "{rd}"\n'
                f'phema = [{{name = "ph", sigma_rel = [0.05, 0.10], snapshot_every = {K}}},\n'
                f'         {{name = "ph07", sigma_rel = [0.07], snapshot_every = {K}}}]\n')
    r = run("train", "--config", cfg, "--quiet")
    check(r.returncode == 0, f"train failed: {r.stderr}")
    conf = open(os.path.join(rd, "config.toml")).read()
    check("sigma_rel = [0.05, 0.1]" in conf and f"snapshot_every = {K}" in conf,
          "config.toml records sigma_rel and snapshot_every")
    summary = json.load(open(os.path.join(rd, "summary.json")))
    check(summary.get("averager_state_bytes_per_param") == 12.0,
          f"summary: 3 fp32 profiles = 12 B/param, got {summary.get('averager_state_bytes_per_param')}")

    # The trajectory, from the per-step checkpoints.
    traj = {}
    for p in glob.glob(os.path.join(rd, "checkpoints", "*.safetensors")):
        t, meta = read_st(p)
        traj[int(meta["step"])] = floating(t)
    check(sorted(traj) == list(range(STEPS + 1)), f"checkpoints at steps 0..{STEPS}")

    snaps = {}
    for p in glob.glob(os.path.join(rd, "phema", "*", "*.safetensors")):
        t, meta = read_st(p)
        snaps[(meta["wavg.phema.averager"], int(meta["step"]), float(meta["wavg.phema.sigma_rel"]))] = (
            p, floating(t))
    want_keys = {(a, s, sig) for a, sigs in (("ph", (0.05, 0.10)), ("ph07", (0.07,)))
                 for s in range(K, STEPS + 1, K) for sig in sigs}
    check(set(snaps) == want_keys, f"snapshots: {sorted(snaps)}")

    # Every snapshot against a power-function EMA recomputed from the trajectory in fp64:
    # e = theta_0, then e <- beta_t e + (1 - beta_t) theta_t with beta_t = (1 - 1/t)^(gamma + 1).
    worst = 0.0
    for (a, s, sig), (_, got) in sorted(snaps.items()):
        gamma = float(std_to_exp(np.array(sig)))
        e = {k: v.copy() for k, v in traj[0].items()}
        for t in range(1, s + 1):
            beta = (1 - 1 / t) ** (gamma + 1)
            for k in e:
                e[k] = beta * e[k] + (1 - beta) * traj[t][k]
        params = {k: e[k] for k in e if "running" not in k}  # buffers follow the copy policy
        worst = max(worst, rel_err({k: got[k] for k in params}, params))
    check(worst < 1e-5, f"snapshots equal the fp64 power-function EMA: worst relative error {worst:.3g}")

    # A tracked sigma_rel at a snapshot step returns that snapshot.
    out = os.path.join(tmp, "rec05.safetensors")
    r = run("phema", "--averager", "ph", "--sigma-rel", "0.05", "--step", "100", "-o", out, rd)
    check(r.returncode == 0, f"phema 0.05 failed: {r.stderr}")
    if r.returncode == 0:
        got, _ = read_st(out)
        err = rel_err(floating(got), snaps[("ph", 100, 0.05)][1])
        check(err < 1e-5, f"tracked sigma_rel 0.05 at step 100: relative error {err:.3g}")

    # sigma_rel 0.07 from the 0.05/0.10 snapshots against the profile tracked exactly.
    out = os.path.join(tmp, "rec07.safetensors")
    r = run("phema", "--averager", "ph", "--sigma-rel", "0.07", "-o", out, rd)
    check(r.returncode == 0, f"phema 0.07 failed: {r.stderr}")
    if r.returncode == 0:
        got, meta = read_st(out)
        got = floating(got)
        exact = snaps[("ph07", STEPS, 0.07)][1]
        err = rel_err(got, exact)
        print(f"sigma_rel 0.07 reconstructed from {STEPS // K} x 2 snapshots: relative weight error "
              f"{err:.3g} (distance between the tracked 0.05 and 0.10 profiles: "
              f"{rel_err(snaps[('ph', STEPS, 0.05)][1], snaps[('ph', STEPS, 0.10)][1]):.3g})")
        check(err <= 1e-2, f"reconstructed 0.07 vs tracked 0.07: relative error {err:.3g}")
        inputs = json.loads(meta["wavg.phema.inputs"])
        check(int(meta["step"]) == STEPS and len(inputs) == 2 * (STEPS // K),
              f"newest step by default, every snapshot used: {meta['step']}, {len(inputs)}")
        ref = solve_posthoc_coefficients([i["step"] for i in inputs], [i["sigma_rel"] for i in inputs],
                                         STEPS, 0.07).ravel()
        coef = np.array([i["coefficient"] for i in inputs])
        diff = float(np.max(np.abs(coef - ref)))
        print(f"coefficients vs numpy EDM2 solver: max difference {diff:.3g}")
        check(diff <= 1e-6, f"coefficients vs EDM2's solver (numpy): max difference {diff:.3g}")
        combo = {k: sum(c * snaps[("ph", i["step"], i["sigma_rel"])][1][k] for c, i in zip(ref, inputs))
                 for k in exact}
        err = rel_err(got, combo)
        check(err < 1e-6, f"output = sum_i c_i snapshot_i: relative error {err:.3g}")
        # Only snapshots at or before the step are used.
        r = run("phema", "--averager", "ph", "--sigma-rel", "0.07", "--step", "60", "-o",
                os.path.join(tmp, "rec07_60.safetensors"), rd)
        _, meta = read_st(os.path.join(tmp, "rec07_60.safetensors"))
        steps_used = [i["step"] for i in json.loads(meta["wavg.phema.inputs"])]
        check(r.returncode == 0 and max(steps_used) == 60 and len(steps_used) == 6,
              f"--step 60 uses the snapshots at or before 60: {steps_used}")

        check_metrics(tmp, rd, out)

    bad = os.path.join(tmp, "bad.safetensors")
    one_error_line(run("phema", "--averager", "ph", "--sigma-rel", "0.07", "--step", "30", "-o", bad, rd),
                   "step not a snapshot step", ["--step 30 is not a snapshot step", "20 to 120"], bad)
    one_error_line(run("phema", "--averager", "ph", "--sigma-rel", "0.5", "-o", bad, rd),
                   "sigma_rel out of range", ["sigma_rel must be in (0, 0.300", "got 0.5"], bad)
    one_error_line(run("phema", "--sigma-rel", "0.07", "-o", bad, rd), "two phema averagers",
                   ["several phema averagers (ph, ph07)", "--averager"], bad)
    one_error_line(run("phema", "--averager", "nope", "--sigma-rel", "0.07", "-o", bad, rd),
                   "unknown averager", ["no snapshots of averager 'nope'"], bad)
    one_error_line(run("phema", "--sigma-rel", "0.07", "-o", bad, tmp), "no snapshots",
                   ["holds no phema snapshot"], bad)
    existing = os.path.join(tmp, "rec05.safetensors")
    before = open(existing, "rb").read() if os.path.exists(existing) else b""
    r = run("phema", "--averager", "ph", "--sigma-rel", "0.1", "-o", existing, rd)
    check(r.returncode == 2 and "exists" in r.stderr and open(existing, "rb").read() == before,
          f"existing output refused and kept: {r.stderr.strip()!r}")

finish()
