#!/usr/bin/env python3
"""Tests of `wavg study --quick` (schema study-v4, issues 12 and 25) and `wavg report`: a small study of one
workload and the language-model protocol, run part by part (`--workload`) and merged, writes
results.json whose target, regime check, steps to target (AlgoPerf's count and the interpolated
one), medians, ratios and score are recomputed here independently from its curves and the run
directories; the evaluation cadences (raw and pre-registered averages every eval_every, T among
them, the rest of the bank coarser) are checked in metrics.jsonl; the study continues instead of
redoing finished runs, refuses a run made with another configuration, and its report rebuilds byte
for byte from results.json alone. Issue 25's additions are recomputed here from the run directories
with plain Python arithmetic (no numpy): the intervals by enumerating all n^n resample sequences
(the code enumerates multisets), the robustness ratios, the one-grid rule (every compared pair
shares its evaluation steps; a pre-registered setting the bank holds too counts once), the
leave-one-seed-out choice and the fixed-budget gains; `--merge-only` rebuilds results.json from the
parts alone. An older schema (results/study-protocol1) is refused with one line.
Usage: study_test.py PATH_TO_WAVG SOURCE_DIR"""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import (check, check_steps, curve_of, finish, median, metrics,  # noqa: E402
                          runner)
from study_reference import (INF, as_steps, bank_on_grid, bootstrap, check_conclusions,  # noqa: E402
                             check_fixed_budget, check_intervals, check_one_grid, check_regime_interval, grid_steps,
                             interpolated, on_grid, same)

WAVG, SRC = sys.argv[1], sys.argv[2]
run = runner(WAVG)
INF = math.inf
MODELS = {"nadamw": "raw", "nadamw+lawa": "lawa_rec", "nadamw+ema": "ema_rec"}


def check_workload(out, w):
    T, H, e = w["budget_T"], w["budget_H"], w["eval_every"]
    check(T % e == 0 and H == math.ceil(4 * T / 3) and e <= 0.05 * H, f"budgets T={T} H={H} every {e}")
    seeds = [str(s) for s in w["scoring_seeds"]]
    check(len(seeds) == 3 and sorted(w["curves"], key=int) == seeds, f"curves of the scoring seeds {seeds}")
    check(not set(w["target_setting"]["seeds"]) & set(w["scoring_seeds"]), "target seeds apart from scoring seeds")
    wdir = os.path.join(out, "runs", "synth_ctr")
    # Target: the median of the best raw values of the target-setting runs (budget T, decayed at T).
    bests, finals = [], []
    for s in w["target_setting"]["seeds"]:
        raw = curve_of(metrics(os.path.join(wdir, f"target_{s}")), "raw")
        check(raw[-1][0] == T and all(st % e == 0 for st, _ in raw), f"target run {s}: evaluated every {e} up to T")
        bests.append(min(v for _, v in raw))
        finals.append(raw[-1][1])
    check(w["target_setting"]["best_values"] == bests, "target-setting best values from their runs")
    check(w["target"] == median(bests), f"target {w['target']} vs {median(bests)}")
    # Regime check from the baseline alone.
    at_T = [dict(map(tuple, w["curves"][s]["raw"]))[T] for s in seeds]
    rc = w["regime_check"]
    check(rc["decayed_at_T"] == median(finals) and rc["raw_at_T"] == median(at_T), "regime check medians")
    check(abs(rc["seed_spread"] - np.std(at_T, ddof=1)) < 1e-12, "regime check seed spread")
    check(rc["passes"] == (median(at_T) - median(finals) > rc["seed_spread"]), "regime check verdict")
    # Curves are the runs' and the cadences are as planned.
    for s in seeds:
        rows = metrics(os.path.join(wdir, f"seed_{s}"))
        for model in w["curves"][s]:
            check(w["curves"][s][model] == curve_of(rows, model), f"seed {s} {model}: curve = metrics.jsonl")
        for model in ["raw", "lawa_rec", "ema_rec"]:
            steps = [st for st, _ in curve_of(rows, model)]
            check(steps == list(range(e, H, e)) + [H] or steps == list(range(e, H + 1, e)),
                  f"seed {s} {model}: evaluated every {e}")
        coarse = [st for st, _ in curve_of(rows, "lawa_L3_nu1")]
        be = w["bank_eval_every"]
        check(be % e == 0 and be > e and coarse[0] == be and len(coarse) < len(curve_of(rows, "raw")),
              f"seed {s}: the bank evaluated every {be}")
    times = check_steps(w["steps_to_target"], w["curves"], seeds, w["target"], "synth_ctr")
    sel = w["steps_to_target"]["selected"]["model"]
    check(sel == w["selected_setting"] and sel in w["curves"][seeds[0]], f"selected setting {sel} has curves")
    # Issue 25, from the run directories: every setting's curve on the bank's grid.
    runs = {m: [curve_of(metrics(os.path.join(wdir, f"seed_{s}")), m) for s in seeds]
            for m in [st["name"] for st in w["settings"]] + ["raw"]}
    T_vals = [dict(map(tuple, c))[T] for c in runs["raw"]]
    check_regime_interval(w, finals, T_vals)
    check_intervals(w, runs, e, H, w["target"])
    check_one_grid(w, runs, H, w["target"])
    check_fixed_budget(w, runs)
    # The selection, on one grid: the smallest interpolated median of the bank there.
    every, bank = bank_on_grid(w, runs, H, w["target"])
    sel_med = median([interpolated(on_grid(c, every, H), w["target"]) for c in runs[sel]])
    check(sel_med == min(median(b[1]) for b in bank.values()), f"selected {sel} = the best of the bank on one grid")
    fit = w["horizon_fit_one_grid"]
    meds = [median(b[1]) for n, b in bank.items() if median(b[1]) != INF]
    check("horizon_fit" not in w and fit["resolvable"] == (bool(meds) and max(meds) - min(meds) > every),
          f"horizon fit on one grid, resolvable only above one interval: {fit}")
    check(fit["resolvable"] or ("note" in fit and "fit" not in fit), "no fit when not resolvable")
    for st in w["settings"]:  # analysis 3's ratios against the raw model on the setting's grid
        base = median(grid_steps(runs["raw"], st["eval_every"], H, w["target"]))
        t = median([as_steps(v) if v is not None else INF for v in st["steps_to_target"]])
        check(same(st["relative_steps"], t / base if t != INF and base != INF else None),
              f"{st['name']}: relative steps on its own grid")
    return times


def check_scoring(times, sc):
    best = min(times[m] for m in MODELS)
    taus = np.linspace(1, 4, 301)
    for method in MODELS:
        t = times[method]
        ratio = t / best if math.isfinite(t) and math.isfinite(best) else INF
        got = sc["ratios"][method]["synth_ctr"]
        got = INF if got is None else got
        check(got == ratio or abs(got - ratio) < 1e-12, f"{method}: ratio {got} vs {ratio}")
        rho = np.array([1.0 if ratio <= tau else 0.0 for tau in taus])
        score = np.trapz(rho, taus) / 3
        check(abs(sc["score"][method] - score) < 1e-9, f"{method}: score {sc['score'][method]} vs {score}")


def check_lm(out, lm):
    H, e, ts = lm["budget_H"], lm["eval_every"], lm["target_step"]
    check(ts == H // 3 and ts % e == 0 and e <= 0.05 * H, f"LM budget {H}, target step {ts}, every {e}")
    grid = lm["grid"]
    check(len(grid) == 2 and {g["final_fraction"] for g in grid} == {0.0, 0.1} and all(g["clip_norm"] == 1.0 for g in grid),
          "LM grid over the final learning rate, with clipping")
    chosen = [g for g in grid if g["chosen"]]
    check(len(chosen) == 1 and chosen[0]["best_value"] == min(g["best_value"] for g in grid), "LM grid: the best is chosen")
    vals = []
    for s in lm["target_setting"]["seeds"]:
        raw = dict(map(tuple, curve_of(metrics(os.path.join(out, "runs", "lm_protocol", f"target_{s}")), "raw")))
        vals.append(raw[ts])
    check(lm["target_setting"]["values_at_target_step"] == vals and lm["target"] == median(vals),
          f"LM target {lm['target']} = median of the values at step {ts}: {vals}")
    cfg = open(os.path.join(out, "runs", "lm_protocol", "seed_0", "config.toml")).read()
    check('name = "adamw"' in cfg and "clip_norm = 1.0" in cfg, "LM runs use AdamW with clipping")
    seeds = [str(s) for s in lm["scoring_seeds"]]
    check_steps(lm["steps_to_target"], lm["curves"], seeds, lm["target"], "lm_protocol")
    runs = {m: [curve_of(metrics(os.path.join(out, "runs", "lm_protocol", f"seed_{s}")), m) for s in seeds]
            for m in ["raw", "lawa_rec", "ema_rec"]}
    check_intervals(lm, runs, e, H, lm["target"])
    check_fixed_budget(lm, runs)
    check("tuned" not in lm and "regime_interval" not in lm, "LM protocol without a bank: no tuned row, no regime check")


def check_lm_bank(out, tmp, cfg, lm):
    """The lm_bank addition as scripts/study_extra_runs.py makes it (configs, `wavg train`, collect),
    on a small bank: the rerun raw model equals the part's bit for bit, and the LM protocol gets
    settings, one grid and a tuned row, recomputed here from the run directories."""
    bank_cfg = os.path.join(tmp, "bank.toml")
    open(bank_cfg, "w").write("lawa_window = [3]\nlawa_every = [1]\nema_beta = []\nema_every = []\nlm_batch_size = 8\n")
    env = dict(os.environ, WAVG_STUDY_DIR=out, WAVG_STUDY_CONFIG=bank_cfg)
    script, adir = os.path.join(SRC, "scripts", "study_extra_runs.py"), os.path.join(tmp, "lm_bank")
    r = subprocess.run([sys.executable, script, "configs", adir, "lm_bank"], env=env, capture_output=True, text=True)
    check(r.returncode == 0, f"lm_bank configs: {r.stderr[-300:]}")
    for toml in r.stdout.split():
        t = run("train", "--config", toml, "--quiet")
        check(t.returncode == 0, f"lm_bank run {toml}: {t.stderr[-300:]}")
    c = subprocess.run([sys.executable, script, "collect", adir, "lm_bank"], env=env, capture_output=True, text=True)
    check(c.returncode == 0, f"lm_bank collect: {c.stderr[-300:]}")
    open(os.path.join(out, "additions", "lm_bank.json"), "w").write(c.stdout)
    r = run("study", "--config", cfg, "--quick", "--out", out, "--merge-only")
    res = json.load(open(os.path.join(out, "results.json")))
    got = res["lm_protocol"]
    rep = got.get("bank_reproduction", {})
    check(r.returncode == 0 and rep.get("shared_evaluations", 0) > 0 and rep["bit_identical"] == rep["shared_evaluations"],
          f"lm_bank merged, its raw model the part's bit for bit: {rep} {r.stderr[-300:]}")
    seeds = [str(s) for s in lm["scoring_seeds"]]
    names = [s["name"] for s in got["settings"]]
    check(names == ["lawa_rec", "ema_rec", "lawa_L3_nu1"], f"LM bank settings {names}")
    runs = {m: [lm["curves"][s][m] for s in seeds] for m in ["raw", "lawa_rec", "ema_rec"]}
    for m in names[2:]:
        runs[m] = [curve_of(metrics(os.path.join(adir, f"seed_{s}")), m) for s in seeds]
    check_one_grid(got, runs, lm["budget_H"], lm["target"])
    check(got["tuned"]["paper_tuned_ratio"] == 0.70, "the LM tuned row beside the paper's 70 %")
    check_conclusions(res)
    os.remove(os.path.join(out, "additions", "lm_bank.json"))


CONFIG = ('workloads = ["synth_ctr"]\nsteps = [1500]\nlm_workload = "text_lm"\nlm_steps = 600\nlm_batch_size = 8\n'
          'threads = 1\n[quick]\nsteps_scale = 0.1\nseeds = 3\ntarget_seeds = 2\neval_fraction = 0.05\nbank_points = 6\n'
          'lr_scale = [1.0, 2.0]\nlawa_window = [3, 20]\nlawa_every = [1]\nema_beta = [0.9]\nema_every = [1]\n'
          'schedule_final = [0.0, 1.0]\nlm_lr_scale = [1.0]\nlm_final_fraction = [0.0, 0.1]\nlm_warmup = [0.1]\n'
          'lm_clip = [1.0]\n')

with tempfile.TemporaryDirectory() as tmp:
    cfg = os.path.join(tmp, "study.toml")
    open(cfg, "w").write(CONFIG)
    out = os.path.join(tmp, "study \"quoted\" dir")  # a path TOML text would have broken
    # Part by part: the workload first; results.json says what is missing.
    r = run("study", "--config", cfg, "--quick", "--out", out, "--workload", "synth_ctr")
    check(r.returncode == 0, f"study part synth_ctr ran: {r.stderr[-400:]}")
    res = json.load(open(os.path.join(out, "results.json")))
    check(res.get("missing_parts") == ["lm_protocol"] and "lm_protocol" not in res, "a partial study names its missing part")
    r = run("study", "--config", cfg, "--quick", "--out", out, "--workload", "lm_protocol")
    check(r.returncode == 0, f"study part lm_protocol ran: {r.stderr[-400:]}")
    res = json.load(open(os.path.join(out, "results.json")))
    check(res.get("schema") == "study-v4" and "missing_parts" not in res, "merged results.json, schema study-v4")
    # Each part and results.json record the workload definition of the part's runs (issue 22 §6),
    # read here from a run's resolved config.toml (definition 1 is left unwritten there).
    defs = {}
    for part, workload, run_dir in [("synth_ctr", "synth_ctr", "synth_ctr"), ("lm_protocol", "text_lm", "lm_protocol")]:
        toml = open(os.path.join(out, "runs", run_dir, "seed_0", "config.toml")).read()
        version = next((int(l.split("=")[1]) for l in toml.splitlines() if l.startswith("workload_version")), 1)
        recorded = json.load(open(os.path.join(out, "parts", part + ".json"))).get("workload_definitions")
        check(recorded == {workload: version}, f"part {part} records {workload} definition {version}: {recorded}")
        defs[workload] = version
    check(res.get("workload_definitions") == defs, f"results.json records {defs}: {res.get('workload_definitions')}")
    w = res["workloads"]["synth_ctr"]
    check(w["direction"] == "min" and w["metric"] == "logloss", f"direction {w['direction']} of {w['metric']}")
    for key in ["direction", "budget_T", "budget_H", "eval_every", "target", "target_setting", "scoring_seeds",
                "regime_check", "curves", "steps_to_target", "methods", "settings", "lr_sensitivity", "schedules",
                "intervals", "one_grid", "horizon_fit_one_grid", "tuned", "fixed_budget", "regime_interval"]:
        check(key in w, f"workload entry has {key}")
    check(set(w["steps_to_target"]) == {"nadamw", "nadamw+lawa", "nadamw+ema", "selected"}, "methods and selected")
    times = check_workload(out, w)
    check_scoring(times, res["scoring"])
    check_conclusions(res)
    check_lm(out, res["lm_protocol"])
    rec = {s["name"]: s for s in w["settings"] if s["pre_registered"]}
    H = w["budget_H"]
    nu = max(1, round(0.01 * H / 20))
    check(rec["lawa_rec"]["window"] == 20 and rec["lawa_rec"]["every"] == nu and rec["ema_rec"]["every"] == nu
          and abs(rec["ema_rec"]["beta"] - 19 / 21) < 1e-15, f"pre-registered settings at nu = {nu}")
    for s in w["settings"]:
        if s["scheme"] == "lawa":
            check(abs(s["horizon"] - s["every"] * s["window"] / H) < 1e-12, f"{s['name']} horizon over H")

    # A second invocation (every part) finds every run finished.
    r2 = run("study", "--config", cfg, "--quick", "--out", out)
    check(r2.returncode == 0 and r2.stdout.count("(done before)") == r2.stdout.count("] "),
          f"rerun skips finished runs: {r2.stdout[-300:]}")
    r5 = run("study", "--config", cfg, "--quick", "--out", out, "--workload", "mnist")
    check(r5.returncode == 2 and "not a part of this study" in r5.stderr, f"unknown part: {r5.stderr.strip()!r}")

    # A changed plan does not silently reuse runs made under another configuration.
    cfg2 = os.path.join(tmp, "study2.toml")
    open(cfg2, "w").write(CONFIG.replace("lawa_window = [3, 20]", "lawa_window = [3, 12]"))
    r3 = run("study", "--config", cfg2, "--quick", "--out", out, "--workload", "synth_ctr")
    check(r3.returncode == 2 and "another configuration" in r3.stderr and "lawa" in r3.stderr,
          f"changed plan refused: {r3.stderr.strip()[:300]!r}")

    html = open(os.path.join(out, "report.html")).read()
    for section in ["Findings", "Regime check", "Steps to target", "1. Speed-up", "2. Horizon", "3. ",
                    "4. Learning-rate", "5. Best validation", "6. Averaging and learning-rate decay",
                    "Language-model protocol", "Scoring", "Intervals over seeds", "The bank on one grid",
                    "Fixed budget", "Conclusions, point by point"]:
        check("<h2>" + section in html, f"report has section {section!r}")
    check("selected after the fact" in html and "pre-registered" in html, "pre-registered vs selected")
    check("interpolated" in html and "not in results.json" not in html, "both step columns, nothing missing")

    # The report rebuilds from results.json alone: the same page without any run directory.
    shutil.rmtree(os.path.join(out, "runs"))
    # results.json rebuilds from the parts alone (issue 25: committed studies have no run directories).
    merged = open(os.path.join(out, "results.json")).read()
    os.remove(os.path.join(out, "results.json"))
    r6 = run("study", "--config", cfg, "--quick", "--out", out, "--merge-only")
    check(r6.returncode == 0 and open(os.path.join(out, "results.json")).read() == merged,
          f"--merge-only rebuilds results.json from the parts: {r6.stderr.strip()[-300:]!r}")

    # Added scoring seeds (schema study-v4-addition, as scripts/study_extra_runs.py writes them):
    # here seed 0's curves again under seed 7, so that the recomputation below knows every curve.
    w = res["workloads"]["synth_ctr"]
    H, e = w["budget_H"], w["eval_every"]
    add = {"schema": "study-v4-addition", "job": "synth_ctr_seeds", "workload": "synth_ctr",
           "runs": {"seed_7": {"seed": 7, "steps": H, "eval_every": e,
                               "curves": {m: w["curves"]["0"][m] for m in ["raw", "lawa_rec", "ema_rec"]}}}}
    os.makedirs(os.path.join(out, "additions"))
    json.dump(add, open(os.path.join(out, "additions", "synth_ctr_seeds.json"), "w"))
    r7 = run("study", "--config", cfg, "--quick", "--out", out, "--merge-only")
    w7 = json.load(open(os.path.join(out, "results.json")))["workloads"]["synth_ctr"]
    seeds7 = [str(s) for s in w["scoring_seeds"]] + ["0"]
    runs7 = {m: [w["curves"][s][m] for s in seeds7] for m in ["raw", "lawa_rec", "ema_rec"]}
    check(r7.returncode == 0 and w7["added_seeds"] == [7] and w7["intervals_seeds"] == w["scoring_seeds"] + [7],
          f"an added seed is merged: {r7.stderr.strip()[-300:]!r}")
    check_intervals(w7, runs7, e, H, w["target"])
    check_fixed_budget(w7, runs7)
    check_regime_interval(w7, w["target_setting"]["final_values"], [dict(map(tuple, c))[w["budget_T"]] for c in runs7["raw"]])
    check(w7["one_grid"] == w["one_grid"] and w7["tuned"] == w["tuned"], "the bank stays on the part's own seeds")
    add["runs"]["seed_7"]["eval_every"] = e + 1
    json.dump(add, open(os.path.join(out, "additions", "synth_ctr_seeds.json"), "w"))
    r8 = run("study", "--config", cfg, "--quick", "--out", out, "--merge-only")
    check(r8.returncode == 2 and "seed_7" in r8.stderr and len(r8.stderr.strip().splitlines()) == 1,
          f"an added run on another grid is refused: {r8.stderr.strip()!r}")
    os.remove(os.path.join(out, "additions", "synth_ctr_seeds.json"))
    # Analysis 6 on one more seed, partly finished: only the no-decay run of seed 1 (seed 2's curves
    # stand in for it); the baseline of seed 1 is its scoring run, the shorter schedule keeps seed 0.
    fake = {m: w["curves"]["2"][m] for m in ["raw", "lawa_rec", "ema_rec"]}
    json.dump({"schema": "study-v4-addition", "job": "synth_ctr_schedules", "workload": "synth_ctr",
               "runs": {"sched_final1_seed1": {"seed": 1, "steps": H, "eval_every": e, "curves": fake}}},
              open(os.path.join(out, "additions", "synth_ctr_schedules.json"), "w"))
    r10 = run("study", "--config", cfg, "--quick", "--out", out, "--merge-only")
    o = json.load(open(os.path.join(out, "results.json")))["workloads"]["synth_ctr"].get("schedules_over_seeds", {})
    rows = {r["schedule"]: r for r in o.get("rows", [])}
    base = next(r for r in w["schedules"] if r["final_fraction"] == 0.0 and r["decay_fraction"] == 1.0)
    const = next(r for r in w["schedules"] if r["final_fraction"] == 1.0)
    check(r10.returncode == 0 and rows[base["schedule"]]["seeds"] == [0, 1] and rows[const["schedule"]]["seeds"] == [0, 1]
          and all(r["seeds"] == [0] for r in rows.values() if r["schedule"] not in (base["schedule"], const["schedule"])),
          f"analysis 6 over the seeds each schedule has: {r10.stderr.strip()[-300:]!r}")
    gains = [base["raw_best"] - const["lawa_best"],
             min(v for _, v in w["curves"]["1"]["raw"]) - min(v for _, v in fake["lawa_rec"])]
    lo, hi = bootstrap(2, lambda idx: sum(gains[i] for i in idx) / len(idx))
    g = o["no_decay_lawa_vs_decayed_raw"]
    check(same(g["mean"], sum(gains) / 2, 1e-12) and same(g["ci95"][0], lo, 1e-12) and same(g["ci95"][1], hi, 1e-12),
          f"no decay + LAWA vs decay over seeds 0 and 1: {g} vs {gains}")
    os.remove(os.path.join(out, "additions", "synth_ctr_schedules.json"))
    check_lm_bank(out, tmp, cfg, res["lm_protocol"])
    shutil.rmtree(os.path.join(out, "additions"))
    r9 = run("study", "--config", cfg, "--quick", "--out", out, "--merge-only")
    check(r9.returncode == 0 and open(os.path.join(out, "results.json")).read() == merged, "merged again without it")
    r4 = run("report", out, "-o", os.path.join(out, "rebuilt.html"))
    rebuilt = open(os.path.join(out, "rebuilt.html")).read() if r4.returncode == 0 else ""
    check(r4.returncode == 0 and rebuilt == html, f"the rebuilt report equals the study's: {r4.stderr.strip()!r}")

    # An older schema is refused with one line naming it.
    old = os.path.join(tmp, "old")
    os.makedirs(old)
    json.dump({"schema": "study-v2", "workloads": {}}, open(os.path.join(old, "results.json"), "w"))
    r = run("report", old)
    check(r.returncode == 2 and "schema 'study-v2'" in r.stderr and len(r.stderr.strip().splitlines()) == 1,
          f"older schema refused: {r.stderr.strip()!r}")
    json.dump({"schema": "study-v4", "protocol": {}}, open(os.path.join(old, "results.json"), "w"))
    r = run("report", old)
    check(r.returncode == 2 and "'workloads' is missing" in r.stderr, f"results.json without workloads: {r.stderr.strip()!r}")

    for body, needle in [("seeds = 0\n", "'seeds' must be >= 1"), ("workloads = [\"mnist\"]\n", "unknown workload"),
                         ("colour = 1\n", "unknown key 'colour'"), ("ema_beta = [1.5]\n", "ema_beta must be in [0, 1)"),
                         ("lm_clip = [-1.0]\n", "lm_clip must be >= 0"), ("target_seeds = 0\n", "'target_seeds'")]:
        bad = os.path.join(tmp, "bad.toml")
        open(bad, "w").write(body)
        r = run("study", "--config", bad, "--out", os.path.join(tmp, "x"))
        check(r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1,
              f"bad study config {body.strip()!r}: {r.stderr.strip()!r}")
    r = run("report", tmp)
    check(r.returncode == 2 and "neither a run" in r.stderr, "report of an empty directory")

finish()
