#!/usr/bin/env python3
"""Tests of `wavg study --quick` and `wavg report`: a small study on one workload writes
results.json with every analysis and a consistent scoring, continues instead of redoing finished
runs, and renders a self-contained HTML report with its sections and SVG figures; bad study configs
are one-line errors. Usage: study_test.py PATH_TO_WAVG SOURCE_DIR"""
import json
import math
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import check, finish  # noqa: E402

WAVG, SRC = sys.argv[1], sys.argv[2]


with tempfile.TemporaryDirectory() as tmp:
    cfg = os.path.join(tmp, "study.toml")
    with open(cfg, "w") as f:
        f.write('workloads = ["synth_ctr"]\nsteps = [1500]\n[quick]\nsteps_scale = 0.1\nseeds = 3\n'
                'eval_points = 6\nlr_scale = [1.0, 2.0]\nlawa_window = [3, 10]\nlawa_every = [1, 5]\n'
                'ema_beta = [0.9]\nema_every = [1]\nschedule_final = [0.0, 1.0]\n')
    out = os.path.join(tmp, "study")
    r = subprocess.run([WAVG, "study", "--config", cfg, "--quick", "--out", out], capture_output=True, text=True)
    check(r.returncode == 0, f"study ran: {r.stderr[-400:]}")
    res = json.load(open(os.path.join(out, "results.json")))
    w = res["workloads"]["synth_ctr"]
    check(w["T"] == 150 and w["hard_budget"] == 200, f"budgets T={w['T']} H={w['hard_budget']}")
    check(len(w["lr_sensitivity"]) == 2 and sum(g["chosen"] for g in w["lr_sensitivity"]) == 1, "grid of 2, one chosen")
    chosen = [g for g in w["lr_sensitivity"] if g["chosen"]][0]
    check(chosen["raw_best"] == min(g["raw_best"] for g in w["lr_sensitivity"]), "the best grid point is chosen")
    # The target is the median over seeds of the best raw value within the first T steps.
    bests = sorted(w["seed_best_within_T"])
    check(abs(w["target"] - bests[1]) < 1e-12, "target = median of seed bests")
    for seed in range(3):
        rows = [json.loads(l) for l in open(os.path.join(out, "runs", "synth_ctr", f"seed_{seed}", "metrics.jsonl"))]
        raw = [x for x in rows if x["model"] == "raw"]
        check(abs(min(x["value"] for x in raw if x["step"] <= 150) - w["seed_best_within_T"][seed]) < 1e-12,
              f"seed {seed}: best within T from its metrics")
        reached = [x["step"] for x in raw if x["value"] <= w["target"]]
        got = w["methods"]["nadamw"]["steps_to_target"][seed]
        check(got == (reached[0] if reached else None), f"seed {seed}: steps to target {got} vs metrics")
    check({s["name"] for s in w["settings"]} >= {"lawa_L3_nu1", "lawa_L10_nu5", "ema_b0.9_nu1", "lawa_rec", "ema_rec"},
          "bank settings present")
    for s in w["settings"]:
        if s["scheme"] == "lawa":
            check(abs(s["horizon"] - s["every"] * s["window"] / 200) < 1e-12, f"{s['name']} horizon")
    check(len(w["schedules"]) == 3, "schedules analysis: decay to 0, none, short")
    check([(r["final_fraction"], r["decay_fraction"]) for r in w["schedules"]] == [(0.0, 1.0), (1.0, 1.0), (0.0, 0.75)],
          f"schedule variants: {[(r['final_fraction'], r['decay_fraction']) for r in w['schedules']]}")
    sc = res["scoring"]
    for m in ["nadamw", "nadamw+lawa", "nadamw+ema"]:
        check(0 <= sc["score"][m] <= 1, f"score of {m} in [0, 1]")
        prof = sc["profile"][m]
        check(all(prof[i][1] <= prof[i + 1][1] for i in range(len(prof) - 1)), f"profile of {m} is monotone")
        ratio = sc["ratios"][m]["synth_ctr"]
        expect = 1.0 if ratio is not None and ratio <= 1 else 0.0
        check(ratio is None or ratio >= 1, f"ratio of {m} >= 1")
        if ratio is not None and ratio == 1:
            check(abs(sc["score"][m] - 1) < 1e-9, f"{m} fastest: score 1")
    check(any(sc["ratios"][m]["synth_ctr"] == 1 for m in sc["ratios"]) or
          all(sc["ratios"][m]["synth_ctr"] is None for m in sc["ratios"]), "one method is the best")

    # A second invocation finds every run finished.
    r2 = subprocess.run([WAVG, "study", "--config", cfg, "--quick", "--out", out], capture_output=True, text=True)
    check(r2.returncode == 0 and r2.stdout.count("(done before)") == r.stdout.count("done"),
          "rerun skips finished runs")

    # A changed plan does not silently reuse runs made under another configuration.
    cfg2 = os.path.join(tmp, "study2.toml")
    open(cfg2, "w").write(open(cfg).read().replace("lawa_window = [3, 10]", "lawa_window = [3, 12]"))
    r3 = subprocess.run([WAVG, "study", "--config", cfg2, "--quick", "--out", out], capture_output=True, text=True)
    check(r3.returncode == 2 and "another configuration" in r3.stderr and "lawa" in r3.stderr,
          f"changed plan refused: {r3.stderr.strip()[:300]!r}")

    html = open(os.path.join(out, "report.html")).read()
    for section in ["Findings", "1. Speed-up", "2. Horizon", "3. ", "4. Learning-rate", "5. Best validation",
                    "6. Averaging and learning-rate decay", "Scoring"]:
        check(section in html, f"report has section {section!r}")
    # Figures, section by section: each analysis draws its figure, or says why it cannot.
    check("synth_ctr</b>, learning-rate decay (seed 0)" in html, "the decay comparison is among the findings")
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

    for body, needle in [("seeds = 0\n", "'seeds' must be >= 1"), ("workloads = [\"mnist\"]\n", "unknown workload"),
                         ("colour = 1\n", "unknown key 'colour'"), ("ema_beta = [1.5]\n", "ema_beta must be in [0, 1)")]:
        bad = os.path.join(tmp, "bad.toml")
        open(bad, "w").write(body)
        r = subprocess.run([WAVG, "study", "--config", bad, "--out", os.path.join(tmp, "x")], capture_output=True, text=True)
        check(r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1,
              f"bad study config {body.strip()!r}: {r.stderr.strip()!r}")
    r = subprocess.run([WAVG, "report", tmp], capture_output=True, text=True)
    check(r.returncode == 2 and "neither a run" in r.stderr, "report of an empty directory")

finish()
