#!/usr/bin/env python3
"""Issue 25: runs added to a committed study part without rerunning the part.

A study part's run directories are not committed, and `wavg study` reruns a whole part (grid,
target seeds, scoring seeds) when they are gone. The additions of issue 25 (more scoring seeds,
analysis 6 on more seeds, more points of the LM grid) reuse the part's committed choices (its
chosen grid point, budgets and evaluation interval) and run only the new runs, each with
`wavg train` from a configuration written here field by field as plan.cpp's study_run_config /
lm_run_config builds it (threads 1; every other field the workload's default, as there). The
resolved config.toml of each run directory shows every effective value.

  study_extra_runs.py configs OUT_DIR JOB     write OUT_DIR/<run>.toml (out = OUT_DIR/<run>) for each run
  study_extra_runs.py collect OUT_DIR JOB     write the part of JOB (curves of every run) to stdout
The parts read are results/study/parts/ and the bank configs/study.toml's (the tests point
WAVG_STUDY_DIR=DIR at DIR/parts/ and WAVG_STUDY_CONFIG=FILE at another bank).

JOB: fmnist_seeds (scoring seeds 5..9, raw + pre-registered averages), fmnist_schedules (analysis
6 on seeds 1 and 2), lm_gridX (the LM grid's point X times text_lm's default learning rate,
both final fractions, raw only, seed 0), lm_bank (the LM protocol's scoring seeds 0..4 again at
the chosen grid point, with configs/study.toml's bank, LAWA L x nu and EMA beta x nu, every
setting and the raw model evaluated at ~20 points: the same grid for all of them).
"""
import json
import math
import os
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = os.path.join(os.environ.get("WAVG_STUDY_DIR", os.path.join(ROOT, "results", "study")), "parts")
L = 20  # the pre-registered LAWA window (DESIGN.md §4)


def llround(x):
    """C's llround: half away from zero."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def part(name):
    with open(os.path.join(PARTS, name + ".json")) as f:
        return json.load(f)["entry"]


def pre_registered(H, eval_every):
    """recommended_settings(0.01, H, eval_every): LAWA L = 20 and EMA beta = 19/21 at one nu."""
    nu = max(1, llround(0.01 * H / L))
    common = f'every = {nu}, buffers = "average", eval_every = {eval_every}'
    return (f'lawa = [{{name = "lawa_rec", window = {L}, {common}}}]\n'
            f'ema = [{{name = "ema_rec", beta = {repr((L - 1) / (L + 1))}, {common}}}]\n')


def run_toml(workload, out, seed, steps, eval_every, opt, sched, bank="", batch_size=0):
    """base_config + the optimizer and schedule tables (plan.cpp), threads 1 as the study's runs."""
    head = (f'workload = "{workload}"\nseed = {seed}\nsteps = {steps}\neval_every = {eval_every}\n'
            f'out = "{out}"\nckpt_every = 0\nstate_every = {max(eval_every, steps // 4)}\n')
    if batch_size > 0:
        head += f"batch_size = {batch_size}\n"
    threads = "[threads]\nintra_op = 1\nblas = 1\naveraging = 1\n"
    o = "[optimizer]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in opt.items())
    s = "[schedule]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in sched.items())
    return head + bank + threads + o + s


def fmnist_runs(job):
    e = part("fmnist_cnn")
    H, ev, best = e["budget_H"], e["eval_every"], e["best_config"]
    opt = {"name": "nadamw", "lr": best["lr"], "weight_decay": best["weight_decay"]}
    warm = llround(best["warmup"] * H)
    bank = pre_registered(H, ev)
    runs = {}
    if job == "fmnist_seeds":
        for s in range(5, 10):
            runs[f"seed_{s}"] = (s, H, ev, opt, {"kind": "cosine", "warmup": warm,
                                                 "total_steps": H, "final_fraction": 0.0}, bank)
    else:  # analysis 6: schedule_final 0.5, 1.0 and the shorter schedule (0.75 H), seeds 1 and 2
        variants = (("sched_final1", H, 1.0), ("sched_short", max(1, llround(0.75 * H)), 0.0),
                    ("sched_final0.5", H, 0.5))  # in the order run: no decay and shorter first
        for name, total, final in variants:
            for s in (1, 2):
                runs[f"{name}_seed{s}"] = (s, H, ev, opt, {"kind": "cosine", "warmup": warm,
                                                           "total_steps": total,
                                                           "final_fraction": final}, bank)
    return "fmnist_cnn", runs


def lm_runs(lr_scales):
    e = part("lm_protocol")
    H = e["budget_H"]
    grid_ev = e["eval_every"] * max(1, llround(H / 20 / e["eval_every"]))  # coarse_interval
    g0 = e["grid"][0]
    base_lr = 3e-3  # text_lm's default learning rate (workloads/registry.cpp)
    runs = {}
    for ls in lr_scales:
        for ff in (0.0, 0.1):
            lr = base_lr * ls
            opt = {"name": "adamw", "lr": lr, "weight_decay": g0["weight_decay"],
                   "clip_norm": g0["clip_norm"]}
            sched = {"kind": "cosine", "warmup": llround(g0["warmup"] * H), "total_steps": H,
                     "final_fraction": ff}
            runs[f"lm_grid_lr{lr:.10g}_ff{ff:.10g}"] = (0, H, grid_ev, opt, sched, "")
    return "text_lm", runs


def study_config():
    """configs/study.toml (WAVG_STUDY_CONFIG=FILE: FILE), its top level."""
    with open(os.environ.get("WAVG_STUDY_CONFIG", os.path.join(ROOT, "configs", "study.toml")), "rb") as f:
        return tomllib.load(f)


def study_bank():
    """The study's bank (plan.cpp full_bank: LAWA L x nu, EMA beta x nu, in bank order)."""
    c = study_config()
    return c["lawa_window"], c["lawa_every"], c["ema_beta"], c["ema_every"]


def bank_toml(bank_every):
    """full_bank without the pre-registered pair (the part's curves hold those every 1 %)."""
    common = f'buffers = "average", eval_every = {bank_every}'
    windows, lawa_every, betas, ema_every = study_bank()
    lawa = [f'{{name = "lawa_L{L}_nu{nu}", window = {L}, every = {nu}, {common}}}'
            for L in windows for nu in lawa_every]
    ema = [f'{{name = "ema_b{b:g}_nu{nu}", beta = {b!r}, every = {nu}, {common}}}'
           for b in betas for nu in ema_every]
    return "lawa = [\n  " + ",\n  ".join(lawa) + "\n]\nema = [\n  " + ",\n  ".join(ema) + "\n]\n"


def lm_bank_settings():
    """Every setting the LM bank's analyses use, in bank order (plan.cpp full_bank): the
    pre-registered pair (its curves, every 1 % of H, are the part's) and the addition's bank."""
    e = part("lm_protocol")
    H, ev = e["budget_H"], e["eval_every"]
    bank_every = ev * max(1, llround(H / 20 / ev))
    nu = max(1, llround(0.01 * H / L))
    out = [{"name": "lawa_rec", "scheme": "lawa", "window": L, "every": nu, "eval_every": ev,
            "curves": "part"},
           {"name": "ema_rec", "scheme": "ema", "beta": (L - 1) / (L + 1), "every": nu,
            "eval_every": ev, "curves": "part"}]
    windows, lawa_every, betas, ema_every = study_bank()
    out += [{"name": f"lawa_L{w}_nu{n}", "scheme": "lawa", "window": w, "every": n,
             "eval_every": bank_every, "curves": "addition"}
            for w in windows for n in lawa_every]
    out += [{"name": f"ema_b{b:g}_nu{n}", "scheme": "ema", "beta": b, "every": n,
             "eval_every": bank_every, "curves": "addition"}
            for b in betas for n in ema_every]
    return out


def lm_bank_runs():
    """The scoring seeds at the chosen grid point (plan.cpp lm_run_config), raw and the bank
    evaluated every coarse_interval(H, e, 20) steps."""
    e = part("lm_protocol")
    H, ev = e["budget_H"], e["eval_every"]
    bank_every = ev * max(1, llround(H / 20 / ev))
    g = next(x for x in e["grid"] if x["chosen"])
    opt = {"name": "adamw", "lr": g["lr"], "weight_decay": g["weight_decay"], "clip_norm": g["clip_norm"]}
    sched = {"kind": "cosine", "warmup": llround(g["warmup"] * H), "total_steps": H,
             "final_fraction": g["final_fraction"]}
    return "text_lm", {f"seed_{s}": (s, H, bank_every, opt, sched, bank_toml(bank_every))
                       for s in e["scoring_seeds"]}


def runs_of(job):
    if job in ("fmnist_seeds", "fmnist_schedules"):
        return fmnist_runs(job)
    if job == "lm_bank":
        return lm_bank_runs()
    if job.startswith("lm_grid"):  # lm_grid4: the grid point 4x the default lr (two final lrs)
        return lm_runs((float(job[len("lm_grid"):]),))
    sys.exit(f"wavg: error: unknown job '{job}' (fmnist_seeds, fmnist_schedules, lm_gridX, lm_bank)")


def write_configs(out_dir, job):
    workload, runs = runs_of(job)
    for name, (seed, steps, ev, opt, sched, bank) in runs.items():
        d = os.path.join(out_dir, name)
        os.makedirs(out_dir, exist_ok=True)
        with open(d + ".toml", "w") as f:
            f.write(run_toml(workload, d, seed, steps, ev, opt, sched, bank,
                             study_config().get("lm_batch_size", 0) if job.startswith("lm_") else 0))
        print(d + ".toml")


def curves(run_dir):
    by_model = {}
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("kind", "eval") != "eval" or "value" not in r:
                continue
            by_model.setdefault(r["model"], []).append([r["step"], r["value"]])
    return by_model


def runner_log(out_dir):
    """OUT_DIR.log, if any (the runner's lines "run DIR rc R wall S s end T load: A, B, C"):
    measured wall seconds and the load average at each run's end, by run name."""
    walls = {}
    if os.path.exists(out_dir.rstrip("/") + ".log"):
        for line in open(out_dir.rstrip("/") + ".log"):
            f = line.split()
            if len(f) > 6 and f[0] == "run" and f[2] == "rc" and f[4] == "wall":
                walls[os.path.basename(f[1])] = {"wall_s": int(f[5]), "rc": int(f[3]),
                                                  "load_at_end": line.split("load: ")[-1].strip()}
    return walls


MACHINE = {
    "": "2-core reference VM beside five other helpers' builds and runs; 1 thread per run "
        "(nice 5), at most two runs at a time",
    "lm_bank": "2-core reference VM beside a second study run (mri_recon) and two helpers' "
               "builds; 1 thread, the five seeds one after another"}


def collect(out_dir, job):
    workload, runs = runs_of(job)
    walls = runner_log(out_dir)
    doc = {"schema": "study-v4-addition", "job": job, "workload": workload,
           "machine": MACHINE.get(job, MACHINE[""]), "runs": {}}
    if job == "lm_bank":
        doc["bank"] = lm_bank_settings()
    for name, (seed, steps, ev, opt, sched, bank) in runs.items():
        d = os.path.join(out_dir, name)
        if not os.path.exists(os.path.join(d, "summary.json")):
            continue
        with open(os.path.join(d, "summary.json")) as f:
            summary = json.load(f)
        doc["runs"][name] = {
            "seed": seed, "steps": steps, "eval_every": ev, "optimizer": opt, "schedule": sched,
            "averagers": ("the bank (LAWA L x nu, EMA beta x nu)" if job == "lm_bank" else
                          "pre-registered (lawa_rec, ema_rec)") if bank else "none",
            "train_wall_s": summary.get("train_wall_s"), "eval_wall_s": summary.get("eval_wall_s"),
            "runner": walls.get(name),
            "curves": curves(d)}
    json.dump(doc, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("configs", "collect"):
        sys.exit("usage: study_extra_runs.py configs|collect OUT_DIR JOB")
    (write_configs if sys.argv[1] == "configs" else collect)(sys.argv[2], sys.argv[3])
