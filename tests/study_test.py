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
import itertools
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import (check, check_steps, curve_of, finish, median, metrics,  # noqa: E402
                          runner)

# ---- issue 25 (study-v4): intervals, one grid, leave-one-seed-out, fixed budget -----------------
# Recomputed from the run directories with plain Python arithmetic: the bootstrap enumerates all
# n^n resample sequences (the C++ code enumerates multisets with multinomial weights).

def on_grid(curve, every, last):
    return [[s, v] for s, v in curve if s % every == 0 or s == last]


def trailing_mean(curve, window=3):
    return [[curve[i][0], sum(v for _, v in curve[i + 1 - window:i + 1]) / window]
            for i in range(window - 1, len(curve))]


def time_ratio(t, base):
    if t == INF and base == INF:
        return 1.0
    if base == INF:
        return 0.0
    return t / base


def bootstrap(n, stat):
    """The 95 % interval: positions floor(N/40) and N-1-floor(N/40) of all N = n^n sequences."""
    values = sorted(stat(idx) for idx in itertools.product(range(n), repeat=n))
    k = len(values) // 40
    return values[k], values[len(values) - 1 - k]


def same(a, b, tol=1e-9):
    if a == "inf":
        a = INF
    if b == "inf":
        b = INF
    if a is None or b is None:
        return a is b
    return a == b or abs(a - b) <= tol * max(1.0, abs(b))


def check_ratio(got, t, base, what):
    per = [None if a == INF and b == INF else time_ratio(a, b) for a, b in zip(t, base)]
    check(all(same(g, p) for g, p in zip(got["per_seed_ratio"], per)), f"{what}: per-seed ratios {got['per_seed_ratio']} vs {per}")
    check(same(got["ratio"], time_ratio(median(t), median(base))), f"{what}: ratio of medians")
    lo, hi = bootstrap(len(t), lambda idx: time_ratio(median([t[i] for i in idx]), median([base[i] for i in idx])))
    check(same(got["ci95"][0], lo) and same(got["ci95"][1], hi), f"{what}: interval {got['ci95']} vs {[lo, hi]}")
    check(got["open_above"] == (hi == INF), f"{what}: open above")
    verdict = "faster" if hi < 1 else "slower" if lo > 1 else "within noise"
    check(got["verdict"] == verdict, f"{what}: verdict {got['verdict']} vs {verdict}")


def grid_steps(curves, every, H, target):
    return [first_reaching(on_grid(c, every, H), target) for c in curves]


def check_intervals(w, runs, e, H, target):
    raw = runs["raw"]
    for method, model in [("nadamw+lawa", "lawa_rec"), ("nadamw+ema", "ema_rec")]:
        got, avg = w["intervals"][method], runs[model]
        for a, b in zip(avg, raw):  # the compared pair shares its evaluation steps
            check([s for s, _ in on_grid(a, e, H)] == [s for s, _ in on_grid(b, e, H)], f"{method}: one grid")
        check_ratio(got, grid_steps(avg, e, H, target), grid_steps(raw, e, H, target), method)
        rob = got["robustness"]
        for k in (2, 4):
            r = time_ratio(median(grid_steps(avg, k * e, H, target)), median(grid_steps(raw, k * e, H, target)))
            check(same(rob[f"subsample_{k}x"], r), f"{method}: subsampled {k}x {rob[f'subsample_{k}x']} vs {r}")
        sm = [[first_reaching(trailing_mean(on_grid(c, e, H)), target) for c in m] for m in (avg, raw)]
        check(same(rob["trailing_mean_3"], time_ratio(median(sm[0]), median(sm[1]))), f"{method}: trailing mean")


def bank_on_grid(w, runs, H, target):
    """Every setting once on the bank's grid, from the run directories: name -> (steps, interpolated)."""
    every = max(s["eval_every"] for s in w["settings"])
    rows = {s["name"]: s for s in w["settings"]}
    out = {}
    for name, s in rows.items():
        twin = [o for o in rows.values() if not o["pre_registered"] and o is not s and o["scheme"] == s["scheme"]
                and o["every"] == s["every"] and o.get("window") == s.get("window")
                and abs(o.get("beta", 0) - s.get("beta", 0)) < 1e-12]
        curves = [on_grid(c, every, H) for c in runs[name]]
        for c, r in zip(curves, runs["raw"]):  # every compared pair shares its evaluation steps
            check([st for st, _ in c] == [st for st, _ in on_grid(r, every, H)], f"{name}: on the bank's grid")
        steps = [first_reaching(c, target) for c in curves]
        if s["pre_registered"] and twin:
            check(steps == [first_reaching(on_grid(c, every, H), target) for c in runs[twin[0]["name"]]],
                  f"{name} on the bank's grid = {twin[0]['name']}")
            continue
        out[name] = (steps, [interpolated(c, target) for c in curves])
    return every, out


def check_one_grid(w, runs, H, target):
    every, bank = bank_on_grid(w, runs, H, target)
    og = w["one_grid"]
    check(og["eval_every"] == every and [s["name"] for s in og["settings"]] == list(bank),
          f"one grid: every {every}, each setting once: {[s['name'] for s in og['settings']]} vs {list(bank)}")
    raw = grid_steps(runs["raw"], every, H, target)
    for s in og["settings"]:
        check([as_steps(v) for v in s["steps"]] == bank[s["name"]][0], f"one grid {s['name']}: steps")
        check_ratio(s, bank[s["name"]][0], raw, f"one grid {s['name']}")
    # Leave-one-seed-out: per held-out seed, the smallest median interpolated steps over the others
    # (then the smallest AlgoPerf median, then the first), scored on the held-out seed.
    names, tuned = [], []
    for k in range(len(raw)):
        def key(item):
            steps, interp = item[1]
            return (median([v for i, v in enumerate(interp) if i != k]),
                    median([v for i, v in enumerate(steps) if i != k]))
        best = min(enumerate(bank.items()), key=lambda p: (key(p[1]), p[0]))[1]
        names.append(best[0])
        tuned.append(best[1][0][k])
    t = w["tuned"]
    check([r["chosen"] for r in t["rotations"]] == names, f"tuned: chosen {[r['chosen'] for r in t['rotations']]} vs {names}")
    check_ratio(t, tuned, raw, "tuned")


def check_fixed_budget(w, runs, lower=True):
    fb = w["fixed_budget"]
    raw = runs["raw"]
    for method, model in MODELS.items():
        got = fb[method]
        best = [min(v for _, v in c) for c in runs[model]]
        at_h = [c[-1][1] for c in runs[model]]
        check(all(same(a, b) for a, b in zip(got["best"], best)) and all(same(a, b) for a, b in zip(got["at_H"], at_h)),
              f"fixed budget {method}: best and value at H")
        if model == "raw":
            continue
        for key, v, b in [("best_gain", best, [min(x for _, x in c) for c in raw]),
                          ("at_H_gain", at_h, [c[-1][1] for c in raw])]:
            gains = [bb - vv for vv, bb in zip(v, b)]
            lo, hi = bootstrap(len(gains), lambda idx: sum(gains[i] for i in idx) / len(idx))
            g = got[key]
            check(same(g["mean"], sum(gains) / len(gains), 1e-12) and same(g["ci95"][0], lo, 1e-12)
                  and same(g["ci95"][1], hi, 1e-12), f"fixed budget {method} {key}: {g} vs {lo, hi}")


def check_regime_interval(w, finals, at_T):
    got = w["regime_interval"]
    gain = median(at_T) - median(finals)
    vals = sorted(median([at_T[i] for i in b]) - median([finals[j] for j in a])
                  for a in itertools.product(range(len(finals)), repeat=len(finals))
                  for b in itertools.product(range(len(at_T)), repeat=len(at_T)))
    k = len(vals) // 40
    check(same(got["gain"], gain, 1e-12) and same(got["ci95"][0], vals[k], 1e-12)
          and same(got["ci95"][1], vals[-1 - k], 1e-12), f"regime interval {got} vs {gain}, {vals[k], vals[-1 - k]}")


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
    w = res["workloads"]["synth_ctr"]
    check(w["direction"] == "min" and w["metric"] == "logloss", f"direction {w['direction']} of {w['metric']}")
    for key in ["direction", "budget_T", "budget_H", "eval_every", "target", "target_setting", "scoring_seeds",
                "regime_check", "curves", "steps_to_target", "methods", "settings", "lr_sensitivity", "schedules",
                "intervals", "one_grid", "horizon_fit_one_grid", "tuned", "fixed_budget", "regime_interval"]:
        check(key in w, f"workload entry has {key}")
    check(set(w["steps_to_target"]) == {"nadamw", "nadamw+lawa", "nadamw+ema", "selected"}, "methods and selected")
    times = check_workload(out, w)
    check_scoring(times, res["scoring"])
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
                    "Fixed budget"]:
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
    json.dump({"schema": "study-v3", "protocol": {}}, open(os.path.join(old, "results.json"), "w"))
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
