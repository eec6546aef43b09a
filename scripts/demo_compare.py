#!/usr/bin/env python3
"""`make run`'s last table: the demo run's steps to target beside the study's, for the same models.

  demo_compare.py RUN_DIR RESULTS_JSON

The demo (configs/demo.toml) is one scoring seed of the study's LM protocol with its target and
settings (tests/demo_config_test.py checks that they match RESULTS_JSON). This prints, per average,
the demo's steps to target as a percentage of the raw model's, the study's value for the same seed,
the study's paired per-seed range over every scoring seed and its ratio of medians with, where
RESULTS_JSON has it (schema study-v4: lm_protocol.intervals), the bootstrap 95 % interval.
"""
import json
import sys
import tomllib

METHODS = (("nadamw+lawa", "lawa_rec"), ("nadamw+ema", "ema_rec"))


def fail(msg):
    sys.exit(f"wavg: error: {msg}")


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read {path} ({e})")


def pct(x):
    return "-" if x is None else f"{100.0 * x:.1f} %"


def v4_interval(lm, method):
    """results.json study-v4: lm_protocol.intervals[method] = {ratio, ci95: [lo, hi], verdict}."""
    iv = lm.get("intervals", {}).get(method)
    if not iv:
        return None
    lo, hi = iv["ci95"]
    hi = "inf" if hi == "inf" or hi is None else f"{100.0 * hi:.1f}"
    return f"{pct(iv['ratio'])} [{100.0 * lo:.1f}, {hi}]"


def ratio(a, r):
    return a / r if isinstance(a, (int, float)) and isinstance(r, (int, float)) and r else None


def main(run_dir, results_path):
    summary = load(run_dir + "/summary.json")
    try:
        with open(run_dir + "/config.toml", "rb") as f:
            seed = tomllib.load(f)["seed"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as e:
        fail(f"cannot read the seed from {run_dir}/config.toml ({e})")
    lm = load(results_path).get("lm_protocol")
    if not lm:
        fail(f"{results_path} has no lm_protocol part")
    seeds, stt = lm["scoring_seeds"], lm["steps_to_target"]
    demo = {m["model"]: m["steps_to_target"] for m in summary["models"]}
    raw = stt["nadamw"]
    print(f"\nthe study ({results_path}, LM protocol, {len(seeds)} scoring seeds, the same "
          f"settings and target):")
    print(f"{'model':<10} {'this run':>9} {'study, seed ' + str(seed):>16} {'study, every seed':>19}"
          f" {'study: ratio of medians [95 % interval]':>40}")
    for method, model in METHODS:
        e = stt[method]
        per = [ratio(a, r) for a, r in zip(e["per_seed"], raw["per_seed"])]
        same = per[seeds.index(seed)] if seed in seeds else None
        known = [p for p in per if p is not None]
        spread = f"{pct(min(known))} - {pct(max(known))}" if len(known) == len(per) else "a miss"
        med = v4_interval(lm, method) or pct(ratio(e["median"], raw["median"]))
        print(f"{model:<10} {pct(ratio(demo.get(model), demo.get('raw'))):>9} {pct(same):>16} "
              f"{spread:>19} {med:>40}")
    print("(steps to the target as a percentage of the raw model's on the same seed; below 100 % "
          "the average got there first; the interval: bootstrap over the study's seeds)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        fail("usage: demo_compare.py RUN_DIR RESULTS_JSON")
    main(sys.argv[1], sys.argv[2])
