"""Issue 25's analyses of the study (results.json schema study-v4) recomputed from run directories
with plain Python arithmetic, an independent reference for the C++ code (no numpy): the exact
bootstrap by enumerating all n^n resample sequences (the code enumerates multisets with
multinomial weights), ratios of medians with a miss as infinity, the one-grid rule, the
leave-one-seed-out choice, the fixed-budget gains and the regime check's interval. Lower is better
throughout (the tests' workloads)."""
import itertools

from wavg_testlib import INF, as_steps, check, first_reaching, interpolated, median  # noqa: F401


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
    verdict = ("one seed: not resolved" if len(t) < 2 else "faster" if hi < 1 else "slower" if lo > 1
               else "within noise")
    check(got["verdict"] == verdict, f"{what}: verdict {got['verdict']} vs {verdict}")


def grid_steps(curves, every, H, target):
    return [first_reaching(on_grid(c, every, H), target) for c in curves]


def check_compared(got, model, base, e, H, target, what):
    """One comparison of `model` with `base` (curves per seed) on the grid of e steps."""
    for a, b in zip(model, base):  # the compared pair shares its evaluation steps
        check([s for s, _ in on_grid(a, e, H)] == [s for s, _ in on_grid(b, e, H)], f"{what}: one grid")
    check_ratio(got, grid_steps(model, e, H, target), grid_steps(base, e, H, target), what)
    rob = got["robustness"]
    for k in (2, 4):
        r = time_ratio(median(grid_steps(model, k * e, H, target)), median(grid_steps(base, k * e, H, target)))
        check(same(rob[f"subsample_{k}x"], r), f"{what}: subsampled {k}x {rob[f'subsample_{k}x']} vs {r}")
    sm = [[first_reaching(trailing_mean(on_grid(c, e, H)), target) for c in m] for m in (model, base)]
    check(same(rob["trailing_mean_3"], time_ratio(median(sm[0]), median(sm[1]))), f"{what}: trailing mean")


def check_intervals(w, runs, e, H, target):
    for method, model in [("nadamw+lawa", "lawa_rec"), ("nadamw+ema", "ema_rec")]:
        check_compared(w["intervals"][method], runs[model], runs["raw"], e, H, target, method)


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


def check_gains(got, model, base, what):
    """Best value and value at H per seed of `model`; with `base`, the paired gains (lower is better)."""
    best, at_h = [min(v for _, v in c) for c in model], [c[-1][1] for c in model]
    check(all(same(a, b) for a, b in zip(got["best"], best)) and all(same(a, b) for a, b in zip(got["at_H"], at_h)),
          f"fixed budget {what}: best and value at H")
    if base is None:
        return
    for key, v, b in [("best_gain", best, [min(x for _, x in c) for c in base]),
                      ("at_H_gain", at_h, [c[-1][1] for c in base])]:
        gains = [bb - vv for vv, bb in zip(v, b)]
        lo, hi = bootstrap(len(gains), lambda idx: sum(gains[i] for i in idx) / len(idx))
        g = got[key]
        check(same(g["mean"], sum(gains) / len(gains), 1e-12) and same(g["ci95"][0], lo, 1e-12)
              and same(g["ci95"][1], hi, 1e-12), f"fixed budget {what} {key}: {g} vs {lo, hi}")


def check_fixed_budget(w, runs, prefix="nadamw"):
    for method, model in [(prefix, "raw"), (prefix + "+lawa", "lawa_rec"), (prefix + "+ema", "ema_rec")]:
        check_gains(w["fixed_budget"][method], runs[model], None if model == "raw" else runs["raw"], method)


def check_regime_interval(w, finals, at_T):
    got = w["regime_interval"]
    gain = median(at_T) - median(finals)
    vals = sorted(median([at_T[i] for i in b]) - median([finals[j] for j in a])
                  for a in itertools.product(range(len(finals)), repeat=len(finals))
                  for b in itertools.product(range(len(at_T)), repeat=len(at_T)))
    k = len(vals) // 40
    check(same(got["gain"], gain, 1e-12) and same(got["ci95"][0], vals[k], 1e-12)
          and same(got["ci95"][1], vals[-1 - k], 1e-12), f"regime interval {got} vs {gain}, {vals[k], vals[-1 - k]}")


def _combine(marks):
    if marks and all(m == "agrees" for m in marks):
        return "agrees"
    return "disagrees" if "disagrees" in marks and "agrees" not in marks else "not resolved"


def _num(v):
    return INF if v == "inf" else -INF if v == "-inf" else v


def _verdict_mark(v, yes, no):
    return "agrees" if v == yes else "disagrees" if v == no else "not resolved"


def expected_conclusions(res):
    """The marks of results.json's "conclusions" by the rules conclusions.cpp states, from the
    verdicts and intervals: {claim: (overall, {part: mark})}."""
    parts = list(res.get("workloads", {}).items())
    if "lm_protocol" in res:
        parts.append(("lm_protocol", res["lm_protocol"]))
    out = {}

    def add(claim, rows):
        if rows:
            out[claim] = (_combine(list(rows.values())), rows)
    add("speed-up", {n: _combine([_verdict_mark(w["intervals"][m]["verdict"], "faster", "slower")
                                  for m in ("nadamw+lawa", "nadamw+ema")]) for n, w in parts if "intervals" in w})
    rows = {}
    for n, w in parts:
        if "tuned" in w:
            t = w["tuned"]
            lo, hi, p = _num(t["ci95"][0]), _num(t["ci95"][1]), t["paper_tuned_ratio"]
            rows[n] = ("agrees" if hi < 1 else "not resolved") if lo <= p <= hi else "disagrees"
    add("size of the speed-up (tuned)", rows)
    rows = {}
    for n, w in parts:
        if "horizon_fit_one_grid" in w:
            f = w["horizon_fit_one_grid"]
            if not f["resolvable"] or f.get("best_horizon") is None:
                rows[n] = "not resolved"
                continue
            lo, hi = _num(f["best_horizon_ci95"][0]), _num(f["best_horizon_ci95"][1])
            rows[n] = ("agrees" if lo >= 0.005 and hi <= 0.02 else
                       "disagrees" if hi < 0.005 or lo > 0.02 else "not resolved")
    add("horizon", rows)
    add("best value at a fixed budget",
        {n: _combine([_verdict_mark(w["fixed_budget"][m]["best_gain"]["verdict"], "better", "worse")
                      for m in ("nadamw+lawa", "nadamw+ema")]) for n, w in parts if "fixed_budget" in w})
    for n, w in parts:
        s = w.get("schedules_over_seeds", {})
        if "no_decay_lawa_vs_decayed_raw" in s:
            add("averaging does not replace decay",
                {n: _verdict_mark(s["no_decay_lawa_vs_decayed_raw"]["verdict"], "worse", "better")})
        if "short_raw_vs_lawa" in s:
            lo, hi = _num(s["short_raw_vs_lawa"]["ci95"][0]), _num(s["short_raw_vs_lawa"]["ci95"][1])
            add("averaging acts like a shorter decay",
                {n: "agrees" if lo >= 0.9 and hi <= 1.1 else "disagrees" if lo > 1 or hi < 1 else "not resolved"})
    arms = {}
    for n, w in parts:
        for a in w.get("arms", []):
            if "intervals" in a:
                v = a["intervals"]["vs_own_raw"]
                arms.setdefault(a["name"], {})[n] = _combine(
                    [_verdict_mark(v[a["name"] + s]["verdict"], "faster", "slower") for s in ("+lawa", "+ema")])
    for name, rows in arms.items():
        add("speed-up with " + name, rows)
    return out


def check_conclusions(res):
    got = {c["claim"]: (c["mark"], {p["part"]: p["mark"] for p in c["parts"]}) for c in res["conclusions"]}
    want = expected_conclusions(res)
    check(got == want, f"conclusions marked by their rules: {got} vs {want}")
