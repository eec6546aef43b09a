#!/usr/bin/env python3
"""The main job (`make run`, configs/demo.toml) is one scoring seed of the study's LM protocol
(issue 25 item 10): its workload, seed, budget, evaluation interval, target, optimizer, schedule and
averagers must be the protocol's, read from results/study/results.json; the README's expected table
must be that seed's steps to target in the study; and the effect it shows (each pre-registered
average reaches the target before the raw model) must hold on every scoring seed of the study.

  demo_config_test.py [REPO_ROOT]
"""
import json
import os
import re
import sys
import tomllib

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
L = 20  # the pre-registered LAWA window (DESIGN.md §4)
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def chosen_point(lm):
    chosen = [g for g in lm["grid"] if g.get("chosen")]
    check(len(chosen) == 1, f"lm_protocol.grid has {len(chosen)} chosen points, not 1")
    return chosen[0]


def check_run(demo, lm):
    H = lm["budget_H"]
    check(demo["workload"] == lm["workload"], f"workload {demo['workload']} != {lm['workload']}")
    check(demo["seed"] in lm["scoring_seeds"], f"seed {demo['seed']} is not a scoring seed")
    check(demo["steps"] == H, f"steps {demo['steps']} != budget_H {H}")
    check(demo["eval_every"] == lm["eval_every"], f"eval_every {demo['eval_every']} != the study's")
    check(demo["target"] == lm["target"], f"target {demo['target']!r} != {lm['target']!r}")
    check(demo.get("early_stop") is True, "early_stop is not true")


def check_settings(demo, lm):
    H, g = lm["budget_H"], chosen_point(lm)
    opt, sched = demo["optimizer"], demo["schedule"]
    check(opt["name"] == "adamw", f"optimizer {opt['name']} is not the protocol's AdamW")
    for key, want in (("lr", g["lr"]), ("weight_decay", g["weight_decay"]),
                      ("clip_norm", g["clip_norm"])):
        check(opt.get(key) == want, f"optimizer.{key} {opt.get(key)} != chosen {want}")
    check(sched["kind"] == "cosine", "schedule is not cosine")
    check(sched["warmup"] == round(g["warmup"] * H), f"warmup {sched['warmup']} steps != {g['warmup']} H")
    check(sched["total_steps"] == H, f"schedule.total_steps {sched['total_steps']} != H")
    check(sched["final_fraction"] == g["final_fraction"], "schedule.final_fraction != chosen")
    nu = max(1, int(0.01 * H / L + 0.5))
    lawa, ema = demo["lawa"], demo["ema"]
    check(len(lawa) == 1 and lawa[0]["window"] == L and lawa[0]["every"] == nu,
          f"lawa is not L = {L} at nu = {nu}: {lawa}")
    check(len(ema) == 1 and abs(ema[0]["beta"] - (L - 1) / (L + 1)) < 1e-15 and ema[0]["every"] == nu,
          f"ema is not beta = 19/21 at nu = {nu}: {ema}")
    check([lawa[0]["name"], ema[0]["name"]] == ["lawa_rec", "ema_rec"], "averager names")


def check_effect_on_every_seed(lm):
    raw = lm["steps_to_target"]["nadamw"]["per_seed"]
    for method in ("nadamw+lawa", "nadamw+ema"):
        per = lm["steps_to_target"][method]["per_seed"]
        for seed, a, r in zip(lm["scoring_seeds"], per, raw):
            check(a is not None and r is not None and a < r,
                  f"{method} on seed {seed}: {a} steps, raw {r}: the demo's effect does not hold")


def check_readme_table(demo, lm):
    """The README's expected `make run` table: each model's steps to target at the demo's seed."""
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text.split("### The main job", 1)[-1].split("\n## ", 1)[0]
    if demo["seed"] not in lm["scoring_seeds"]:
        return  # reported by check_run
    i = lm["scoring_seeds"].index(demo["seed"])
    for model, method in (("raw", "nadamw"), ("lawa_rec", "nadamw+lawa"), ("ema_rec", "nadamw+ema")):
        m = re.search(rf"^{model}\s+(\d+)\s", section, re.M)
        check(m is not None, f"README's main-job table has no row {model}")
        want = lm["steps_to_target"][method]["per_seed"][i]
        check(m is not None and float(m.group(1)) == want,
              f"README's {model} row: {m.group(1) if m else None} steps, the study's seed "
              f"{demo['seed']}: {want}")


def main():
    with open(os.path.join(ROOT, "configs", "demo.toml"), "rb") as f:
        demo = tomllib.load(f)
    with open(os.path.join(ROOT, "results", "study", "results.json")) as f:
        lm = json.load(f)["lm_protocol"]
    check_run(demo, lm)
    check_settings(demo, lm)
    check_effect_on_every_seed(lm)
    check_readme_table(demo, lm)
    for f in failures:
        print("FAIL:", f)
    print("demo_config_test:", "FAILED" if failures else "ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
