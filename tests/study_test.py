#!/usr/bin/env python3
"""Tests of `wavg study --quick` and `wavg report`: a small study on one workload writes
results.json (schema study-v2: the direction and the per-seed curves of every workload) whose
targets, steps to target, medians, ratios, profile and score are recomputed here independently from
those curves; it continues instead of redoing finished runs, refuses a run made with another
configuration, and its report rebuilds byte for byte from results.json alone once the run
directories are deleted. Partial and older results.json files give a report or a one-line error;
bad study configs are one-line errors. Usage: study_test.py PATH_TO_WAVG SOURCE_DIR"""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import check, finish  # noqa: E402

WAVG, SRC = sys.argv[1], sys.argv[2]
INF = math.inf
MODELS = {"nadamw": "raw", "nadamw+lawa": "lawa_rec", "nadamw+ema": "ema_rec"}


def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def first_reaching(curve, target):
    """AlgoPerf: the first evaluation at or past the target (lower is better here)."""
    return next((step for step, value in curve if value <= target), INF)


def as_steps(v):
    return INF if v is None else v


def check_scores(w, sc):
    """Recomputes the target, steps to target, medians, relative steps, ratios, profile and score
    of a one-workload study from its per-seed curves."""
    curves = w["curves"]
    seeds = sorted(curves, key=int)
    check(seeds == [str(s) for s in range(len(seeds))] and len(seeds) == 3, f"curves of 3 seeds: {seeds}")
    target = median([min(v for s, v in curves[k]["raw"] if s <= w["T"]) for k in seeds])
    check(abs(w["target"] - target) < 1e-12, f"target {w['target']} vs {target} from the curves")
    times = {}
    for method, model in MODELS.items():
        steps = [first_reaching(curves[k][model], w["target"]) for k in seeds]
        got = [as_steps(v) for v in w["methods"][method]["steps_to_target"]]
        check(got == steps, f"{method}: steps to target {got} vs {steps} from the curves")
        times[method] = median(steps)
        check(as_steps(w["methods"][method]["median_steps_to_target"]) == times[method],
              f"{method}: median steps to target")
        bests = [min(v for _, v in curves[k][model]) for k in seeds]
        check(np.allclose(w["methods"][method]["best_values"], bests, rtol=0, atol=1e-12), f"{method}: best values")
        check(abs(w["methods"][method]["best_std"] - np.std(bests, ddof=1)) < 1e-12, f"{method}: std over seeds")
    for method, t in times.items():
        rel = t / times["nadamw"] if math.isfinite(t) and math.isfinite(times["nadamw"]) else None
        got = w["methods"][method]["relative_steps"]
        check((got is None and rel is None) or (got is not None and rel is not None and abs(got - rel) < 1e-12),
              f"{method}: relative steps {got} vs {rel}")
    best = min(times.values())
    taus = np.linspace(1, 4, 301)
    for method, t in times.items():
        ratio = t / best if math.isfinite(t) and math.isfinite(best) else INF
        got = as_steps(sc["ratios"][method]["synth_ctr"])
        check(got == ratio or abs(got - ratio) < 1e-12, f"{method}: ratio {got} vs {ratio}")
        rho = np.array([1.0 if ratio <= tau else 0.0 for tau in taus])
        score = np.trapz(rho, taus) / 3
        check(abs(sc["score"][method] - score) < 1e-9, f"{method}: score {sc['score'][method]} vs {score}")
        prof = sc["profile"][method]
        check(len(prof) == 31 and all(abs(p[0] - taus[10 * i]) < 1e-12 and p[1] == rho[10 * i] for i, p in enumerate(prof)),
              f"{method}: profile")
    check(min(r for r in (as_steps(sc["ratios"][m]["synth_ctr"]) for m in MODELS)) == 1 or not math.isfinite(best),
          "one method is the best")


def check_against_runs(out, w):
    """The curves in results.json are those of the run directories, and the grid pick is the best."""
    for seed in range(3):
        rows = [json.loads(line) for line in open(os.path.join(out, "runs", "synth_ctr", f"seed_{seed}", "metrics.jsonl"))]
        for model in ["raw", "lawa_rec", "ema_rec"]:
            logged = [[r["step"], r["value"]] for r in rows if r["model"] == model]
            check(w["curves"][str(seed)][model] == logged, f"seed {seed} {model}: curve = metrics.jsonl")
        raw = [x for x in rows if x["model"] == "raw"]
        check(abs(min(x["value"] for x in raw if x["step"] <= w["T"]) - w["seed_best_within_T"][seed]) < 1e-12,
              f"seed {seed}: best within T from its metrics")
    grid = w["lr_sensitivity"]
    check(len(grid) == 2 and sum(g["chosen"] for g in grid) == 1, "grid of 2, one chosen")
    chosen = [g for g in grid if g["chosen"]][0]
    check(chosen["raw_best"] == min(g["raw_best"] for g in grid), "the lowest raw best is chosen (direction min)")


def sections_of(html):
    return {part.split("</h2>")[0]: part for part in html.split("<h2>")[1:]}


def check_report(html, w):
    for section in ["Findings", "1. Speed-up", "2. Horizon", "3. ", "4. Learning-rate", "5. Best validation",
                    "6. Averaging and learning-rate decay", "Scoring"]:
        check(section in html, f"report has section {section!r}")
    check("synth_ctr</b>, learning-rate decay (seed 0)" in html, "the decay comparison is among the findings")
    check("target logloss &le;" in html, "the target in the metric's direction")
    sections = html.split("<h2>")[1:]

    def section(prefix):
        return next((part for part in sections if part.startswith(prefix)), "")

    def figures(prefix):
        return section(prefix).count("<svg")

    bars = any(w["methods"][m]["relative_steps"] is not None for m in w["methods"])
    check(figures("1. Speed-up") == 1 + bars, f"speed-up: curves and bars ({figures('1. Speed-up')})")
    check(figures("2. Horizon") >= 1 or "no setting reached the target" in section("2. Horizon"),
          "horizon figure or the reason")
    check(figures("3. ") == 2, f"one heat map per grid ({figures('3. ')})")
    for prefix in ["4. Learning-rate", "5. Best validation", "6. Averaging", "Scoring"]:
        check(figures(prefix) == 1, f"{prefix}: one figure ({figures(prefix)})")
    check("src=\"http" not in html and "href=\"http" not in html.replace('xmlns', ''), "self-contained")
    check(html.count("<table") >= 5, "tables")
    check("not in results.json" not in html, "nothing missing from a finished study's results.json")


def run(*args):
    return subprocess.run([WAVG, *args], capture_output=True, text=True)


def check_partial_reports(tmp, res):
    """A results.json written before the scoring, a results.json of an older schema (the committed
    one) and a broken one give a report or a one-line error, never undefined behaviour."""
    part = os.path.join(tmp, "partial")
    os.makedirs(part)
    partial = dict(res)
    del partial["scoring"]
    json.dump(partial, open(os.path.join(part, "results.json"), "w"))
    r = run("report", part)
    check(r.returncode == 0 and "no scoring ('scoring' not in results.json" in open(os.path.join(part, "report.html")).read(),
          f"report of a study without scoring: {r.stderr.strip()!r}")
    json.dump({"protocol": {}}, open(os.path.join(part, "results.json"), "w"))
    r = run("report", part)
    check(r.returncode == 2 and r.stderr.startswith("wavg: error: ") and "'workloads' is missing" in r.stderr
          and len(r.stderr.strip().splitlines()) == 1, f"results.json without workloads: {r.stderr.strip()!r}")
    old = os.path.join(SRC, "results", "study")
    r = run("report", old, "-o", os.path.join(tmp, "old.html"))
    html = open(os.path.join(tmp, "old.html")).read() if r.returncode == 0 else ""
    check(r.returncode == 0 and "no validation curves ('curves' not in results.json" in html and html.count("<svg") >= 8,
          f"report of the committed (older) results.json: {r.stderr.strip()!r}")


with tempfile.TemporaryDirectory() as tmp:
    cfg = os.path.join(tmp, "study.toml")
    with open(cfg, "w") as f:
        f.write('workloads = ["synth_ctr"]\nsteps = [1500]\n[quick]\nsteps_scale = 0.1\nseeds = 3\n'
                'eval_points = 6\nlr_scale = [1.0, 2.0]\nlawa_window = [3, 10]\nlawa_every = [1, 5]\n'
                'ema_beta = [0.9]\nema_every = [1]\nschedule_final = [0.0, 1.0]\n')
    out = os.path.join(tmp, "study \"quoted\" dir")  # a path TOML text would have broken
    r = run("study", "--config", cfg, "--quick", "--out", out)
    check(r.returncode == 0, f"study ran: {r.stderr[-400:]}")
    res = json.load(open(os.path.join(out, "results.json")))
    check(res.get("schema") == "study-v2", "results.json schema study-v2")
    w = res["workloads"]["synth_ctr"]
    check(w["direction"] == "min" and w["metric"] == "logloss", f"direction {w['direction']} of {w['metric']}")
    check(w["T"] == 150 and w["hard_budget"] == 200, f"budgets T={w['T']} H={w['hard_budget']}")
    check_against_runs(out, w)
    check_scores(w, res["scoring"])
    check({s["name"] for s in w["settings"]} >= {"lawa_L3_nu1", "lawa_L10_nu5", "ema_b0.9_nu1", "lawa_rec", "ema_rec"},
          "bank settings present")
    for s in w["settings"]:
        if s["scheme"] == "lawa":
            check(abs(s["horizon"] - s["every"] * s["window"] / 200) < 1e-12, f"{s['name']} horizon")
    check([(r["final_fraction"], r["decay_fraction"]) for r in w["schedules"]] == [(0.0, 1.0), (1.0, 1.0), (0.0, 0.75)],
          f"schedule variants: {[(r['final_fraction'], r['decay_fraction']) for r in w['schedules']]}")

    # A second invocation finds every run finished.
    r2 = run("study", "--config", cfg, "--quick", "--out", out)
    check(r2.returncode == 0 and r2.stdout.count("(done before)") == r.stdout.count("done"),
          "rerun skips finished runs")

    # A changed plan does not silently reuse runs made under another configuration.
    cfg2 = os.path.join(tmp, "study2.toml")
    open(cfg2, "w").write(open(cfg).read().replace("lawa_window = [3, 10]", "lawa_window = [3, 12]"))
    r3 = run("study", "--config", cfg2, "--quick", "--out", out)
    check(r3.returncode == 2 and "another configuration" in r3.stderr and "lawa" in r3.stderr,
          f"changed plan refused: {r3.stderr.strip()[:300]!r}")

    html = open(os.path.join(out, "report.html")).read()
    check_report(html, w)

    # The report rebuilds from results.json alone: the same page without any run directory.
    shutil.rmtree(os.path.join(out, "runs"))
    r4 = run("report", out, "-o", os.path.join(out, "rebuilt.html"))
    rebuilt = open(os.path.join(out, "rebuilt.html")).read() if r4.returncode == 0 else ""
    check(r4.returncode == 0, f"report without run directories: {r4.stderr.strip()!r}")
    check(rebuilt == html, "the rebuilt report equals the report written by the study")
    check(sections_of(rebuilt).keys() == sections_of(html).keys() and rebuilt.count("<svg") == html.count("<svg"),
          f"the same sections and {html.count('<svg')} figures")

    check_partial_reports(tmp, res)

    for body, needle in [("seeds = 0\n", "'seeds' must be >= 1"), ("workloads = [\"mnist\"]\n", "unknown workload"),
                         ("colour = 1\n", "unknown key 'colour'"), ("ema_beta = [1.5]\n", "ema_beta must be in [0, 1)")]:
        bad = os.path.join(tmp, "bad.toml")
        open(bad, "w").write(body)
        r = run("study", "--config", bad, "--out", os.path.join(tmp, "x"))
        check(r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1,
              f"bad study config {body.strip()!r}: {r.stderr.strip()!r}")
    r = run("report", tmp)
    check(r.returncode == 2 and "neither a run" in r.stderr, "report of an empty directory")

finish()
