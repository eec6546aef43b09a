#!/usr/bin/env python3
"""Tests of the study's optimizer arms and EXP windows (issue 13; configs/study_breadth.toml): a
tiny study of synth_ctr with Shampoo, Schedule-Free AdamW (two learning rates) and NAdamW +
Lookahead arms and an EXP window in the bank. Recomputed here from the run directories alone: each
arm's grid choice (the best raw value), its runs' optimizer, schedule and budgets (config.toml), its
steps to target (AlgoPerf's count and the interpolated one) against the workload's NAdamW target,
its ratios to NAdamW and to its own raw model, its best values, and (issue 25) its intervals,
robustness ratios and fixed-budget gains against both, by study_reference.py; the EXP window's
setting, cadence and interval against uniform LAWA. Bad arm tables are refused with one line; the report has the arms' and EXP's sections.
Usage: study_breadth_test.py PATH_TO_WAVG"""
import json
import math
import os
import sys
import tempfile
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import (INF, check, check_steps, curve_of, finish, median, metrics,  # noqa: E402
                          one_error_line, runner)
from study_reference import (check_compared, check_conclusions, check_gains, check_ratio,  # noqa: E402
                             grid_steps)

run = runner(sys.argv[1])

CONFIG = """workloads = ["synth_ctr"]
steps = [200]
seeds = 2
target_seeds = 1
eval_fraction = 0.1
bank_points = 4
lr_scale = [1.0]
lawa_window = []
lawa_every = []
ema_beta = []
ema_every = []
lawa_exp_alpha = [0.2]
schedule_final = []
lm_workload = ""
threads = 1

[[arm]]
name = "shampoo"
optimizer = "shampoo"
shampoo_precondition_frequency = 50

[[arm]]
name = "sf"
optimizer = "schedule_free_adamw"
decay = false
lr_scale = [1.0, 2.0]

[[arm]]
name = "la"
optimizer = "nadamw"
lookahead_k = 5
lookahead_alpha = 0.5
workloads = ["synth_ctr"]
"""
ARMS = {"shampoo": ("shampoo", "cosine", 0), "sf": ("schedule_free_adamw", "constant", 0),
        "la": ("nadamw", "cosine", 5)}
MODELS = {"": "raw", "+lawa": "lawa_rec", "+ema": "ema_rec"}


def ratio(a, b):
    return a / b if math.isfinite(a) and math.isfinite(b) else None


def check_arm(out, w, arm, base_time, base_interp):
    name = arm["name"]
    wdir = os.path.join(out, "runs", "synth_ctr", "arm_" + name)
    optimizer, schedule, k = ARMS[name]
    check(arm["optimizer"] == optimizer and arm["lookahead_k"] == k, f"{name}: optimizer and Lookahead")
    # The grid choice: the best raw value of the arm's own grid runs (budget T, seed 0).
    bests = {}
    for g in arm["grid"]:
        runs = [d for d in os.listdir(wdir) if d.startswith("grid_lr")]
        path = next(os.path.join(wdir, d) for d in runs if
                    tomllib.load(open(os.path.join(wdir, d, "config.toml"), "rb"))["optimizer"]["lr"] == g["lr"])
        bests[g["lr"]] = min(v for _, v in curve_of(metrics(path), "raw"))
        check(g["best_raw"] == bests[g["lr"]], f"{name}: grid best at lr {g['lr']} from its run")
    check(arm["chosen_lr"] == min(bests, key=bests.get), f"{name}: chosen lr {arm['chosen_lr']} of {bests}")
    check(len(bests) == (2 if name == "sf" else 1), f"{name}: grid of {len(bests)}")
    # The scoring runs: the arm's optimizer at the chosen lr, H steps, the scoring seeds.
    curves = {}
    for s in w["scoring_seeds"]:
        d = os.path.join(wdir, f"seed_{s}")
        c = tomllib.load(open(os.path.join(d, "config.toml"), "rb"))
        check(c["optimizer"]["name"] == optimizer and c["optimizer"]["lr"] == arm["chosen_lr"] and
              c["schedule"]["kind"] == schedule and c["steps"] == w["budget_H"] and c["seed"] == s and
              c["optimizer"].get("lookahead_k", 0) == k, f"{name} seed {s}: config {c['optimizer']} {c['schedule']}")
        if name == "shampoo":
            check(c["optimizer"]["shampoo_precondition_frequency"] == 50, "shampoo: the arm's frequency")
        rows = metrics(d)
        curves[str(s)] = {m: curve_of(rows, m) for m in MODELS.values()}
        for m in MODELS.values():
            steps = [st for st, _ in curves[str(s)][m]]
            check(steps[:2] == [w["eval_every"], 2 * w["eval_every"]] and steps[-1] == w["budget_H"],
                  f"{name} seed {s} {m}: evaluated every {w['eval_every']} up to H")
    methods = arm["methods"]
    check(set(methods) == {name + sfx for sfx in MODELS}, f"{name}: methods {sorted(methods)}")
    times = check_steps({m: methods[m] for m in methods}, curves, [str(s) for s in w["scoring_seeds"]],
                        w["target"], name)
    own, own_i = times[name], methods[name]["interpolated_median"]
    for sfx, model in MODELS.items():
        e = methods[name + sfx]
        check(e["model"] == model, f"{name}{sfx}: model {e['model']}")
        bests = [min(v for _, v in curves[str(s)][model]) for s in w["scoring_seeds"]]
        check(abs(e["best_mean"] - sum(bests) / len(bests)) < 1e-12, f"{name}{sfx}: best mean")
        t = times[name + sfx]
        ti = INF if e["interpolated_median"] == "inf" else e["interpolated_median"]
        got = e["relative_to_nadamw"]["steps"]
        want = ratio(t, base_time)
        check(got == want or (want is not None and got is not None and abs(got - want) < 1e-12),
              f"{name}{sfx}: relative to NAdamW {got} vs {want}")
        gi, wi = e["relative_to_nadamw"]["interpolated"], ratio(ti, base_interp)
        check(gi == wi or (wi is not None and gi is not None and abs(gi - wi) < 1e-12),
              f"{name}{sfx}: interpolated relative to NAdamW {gi} vs {wi}")
        if sfx:
            want = ratio(t, own)
            got = e["relative_to_own_raw"]["steps"]
            check(got == want or (want is not None and got is not None and abs(got - want) < 1e-12),
                  f"{name}{sfx}: relative to its own raw {got} vs {want} (own interpolated {own_i})")
        else:
            check("relative_to_own_raw" not in e, f"{name}: no ratio to itself")
    # Issue 25: the arm's intervals and fixed-budget gains against NAdamW's raw model (same seeds,
    # same grid) and against its own raw model, recomputed with study_reference.py.
    seeds = [str(s) for s in w["scoring_seeds"]]
    nadamw = [curve_of(metrics(os.path.join(out, "runs", "synth_ctr", f"seed_{s}")), "raw") for s in seeds]
    mine = {m: [curves[s][m] for s in seeds] for m in MODELS.values()}
    iv = arm["intervals"]
    for sfx, model in MODELS.items():
        args = (w["eval_every"], w["budget_H"], w["target"])
        check_compared(iv["vs_nadamw"][name + sfx], mine[model], nadamw, *args, f"{name}{sfx} / nadamw")
        if sfx:
            check_compared(iv["vs_own_raw"][name + sfx], mine[model], mine["raw"], *args, f"{name}{sfx} / {name}")
        check_gains(arm["fixed_budget"]["vs_nadamw"][name + sfx], mine[model], nadamw, f"{name}{sfx}")


with tempfile.TemporaryDirectory() as tmp:
    cfg = os.path.join(tmp, "breadth.toml")
    open(cfg, "w").write(CONFIG)
    out = os.path.join(tmp, "study")
    r = run("study", "--config", cfg, "--out", out)
    check(r.returncode == 0, f"breadth study ran: {r.stderr[-500:]}")
    res = json.load(open(os.path.join(out, "results.json")))
    w = res["workloads"]["synth_ctr"]
    check(set(res["protocol"]["arms"]) == set(ARMS) and res["protocol"]["lawa_exp_alpha"] == [0.2],
          "the protocol records the arms and the EXP windows")
    check("lm_protocol" not in res and "schedules" not in w, "no LM protocol, no analysis 6")
    # The workload's NAdamW target and counts, as the default study computes them.
    target_raw = curve_of(metrics(os.path.join(out, "runs", "synth_ctr", "target_1000")), "raw")
    check(w["target"] == min(v for _, v in target_raw), "target from the target-setting run")
    base = w["steps_to_target"]["nadamw"]
    base_time = median([INF if v == "inf" else v for v in base["per_seed"]])
    base_interp = INF if base["interpolated_median"] == "inf" else base["interpolated_median"]
    check([a["name"] for a in w["arms"]] == list(ARMS), f"arms in order: {[a['name'] for a in w['arms']]}")
    for arm in w["arms"]:
        check_arm(out, w, arm, base_time, base_interp)
    check_conclusions(res)
    check(any(c["claim"] == "speed-up with " + a for c in res["conclusions"] for a in ARMS),
          "a conclusion per arm")
    # Kaddour's EXP window: L 20 at lawa_rec's ν, evaluated as finely as lawa_rec.
    settings = {s["name"]: s for s in w["settings"]}
    exp, lawa = settings.get("exp_rec_a0.2"), settings["lawa_rec"]
    check(exp is not None and exp["scheme"] == "lawa_exp" and exp["window"] == 20 and exp["alpha"] == 0.2 and
          exp["every"] == lawa["every"] and exp["eval_every"] == w["eval_every"] and not exp["pre_registered"],
          f"EXP window setting {exp}")
    rows = metrics(os.path.join(out, "runs", "synth_ctr", "seed_0"))
    check([s for s, _ in curve_of(rows, "exp_rec_a0.2")] == [s for s, _ in curve_of(rows, "lawa_rec")],
          "EXP evaluated with lawa_rec")
    # Its interval against uniform LAWA (the same grid, the same seeds).
    ev = next(e for e in w["exp_vs_uniform"] if e["name"] == "exp_rec_a0.2")
    runs = {m: [curve_of(metrics(os.path.join(out, "runs", "synth_ctr", f"seed_{s}")), m) for s in w["scoring_seeds"]]
            for m in ["exp_rec_a0.2", "lawa_rec"]}
    check_ratio(ev, grid_steps(runs["exp_rec_a0.2"], w["eval_every"], w["budget_H"], w["target"]),
                grid_steps(runs["lawa_rec"], w["eval_every"], w["budget_H"], w["target"]), "EXP / uniform")
    html = open(os.path.join(out, "report.html")).read()
    for section in ["Optimizers under averaging", "Kaddour's EXP window", "fastest median to the target",
                    "steps to target with intervals"]:
        check(section in html, f"report has {section!r}")

    # The shipped breadth config parses (its arms and EXP windows included) and names its parts.
    shipped = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "study_breadth.toml")
    one_error_line(run("study", "--config", shipped, "--out", os.path.join(tmp, "y"), "--workload", "nope"),
                   "shipped breadth config", ["its parts: graph_mol, synth_ctr"])

    # Bad arm tables: one line naming the problem and the value.
    for body, needles in [
            ('[[arm]]\nname = "x"\noptimizer = "lion"\n', ["arm x", "'optimizer.name'", "lion"]),
            ('[[arm]]\nname = "x"\ncolour = 1\n', ["unknown key 'arm.colour'"]),
            ('[[arm]]\nname = "x"\noptimizer = "schedule_free_adamw"\n', ["arm x", "without a decaying schedule"]),
            ('[[arm]]\nname = "x"\nworkloads = ["mnist"]\n', ["arm x", "'mnist'"]),
            ('[[arm]]\nname = "x"\nlr_scale = [0.0]\n', ["arm x", "lr_scale must be > 0, got 0"]),
            ('[[arm]]\nname = "X y"\n', ["arm name 'X y'"]),
            ('[[arm]]\nname = "x"\nlookahead_alpha = 1.5\n', ["arm x", "lookahead_alpha", "1.5"]),
            ('[[arm]]\nname = "x"\noptimizer = "schedule_free_adamw"\ndecay = false\nlookahead_k = 5\n',
             ["arm x", "Lookahead cannot wrap schedule_free_adamw"]),
            ('[[arm]]\nname = "x"\n[[arm]]\nname = "x"\n', ["two arms named x"]),
            ('arm = 3\n', ["'arm' must be [[arm]] tables"]),
            ('lawa_exp_alpha = [1.0]\n', ["lawa_exp_alpha must be in (0, 1), got 1"])]:
        bad = os.path.join(tmp, "bad.toml")
        open(bad, "w").write('workloads = ["synth_ctr"]\n' + body)
        one_error_line(run("study", "--config", bad, "--out", os.path.join(tmp, "x")), f"bad {body!r}", needles,
                       out=os.path.join(tmp, "x"))

finish()
