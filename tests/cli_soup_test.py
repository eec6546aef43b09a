#!/usr/bin/env python3
"""Model soups (Wortsman et al. 2022) through `wavg soup`, on short synth_ctr runs from one
initialisation with three learning rates, plus a diverged ingredient (a copy with a NaN). Checked
against independent references:
- the greedy soup's keep/drop decisions equal a replay of Wortsman et al.'s rule written here, over
  `wavg eval` values of candidates mixed here in numpy (fp64 mean), and the soup's metric with each
  candidate equals `wavg eval`'s of the replay's candidate; the candidates take both branches and a
  tie; the diverged ingredient is left out, listed last and said to be diverged; ingredients are
  tried best first. The soup's metric on the test split, which chose nothing, is printed beside the
  best ingredient's, not asserted (the validation split chose the soup: "no worse than the best
  ingredient" there holds by construction);
- the uniform soup equals `wavg average --last K` of the same files bit for bit, and a numpy fp64 mean
  of the ingredients within one fp32 ulp; the greedy soup is the fp64 mean of the ingredients it kept;
- the output's metadata (wavg.soup) lists every ingredient, its metric and whether it was kept;
- a sharded newest ingredient gives a sharded soup with the same values; --strip-prefix on `soup` and
  on `eval`;
- BatchNorm (fmnist_cnn): the soup's parameters are the average, its statistics are recomputed (not
  the average), and `wavg eval` of the written soup gives the metric the soup reported;
- bad input: one line 'wavg: error: ...', exit 2, nothing written.
Usage: cli_soup_test.py PATH_TO_WAVG"""
import json
import os
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import (check, finish, one_error_line, read_safetensors, runner,  # noqa: E402
                          split_into_shards, write_safetensors)

WAVG = sys.argv[1]
run = runner(WAVG, timeout=120)
LRS = [0.012, 0.016, 0.032]


def train(tmp, name, workload, lr, steps, extra=""):
    rd = os.path.join(tmp, name)
    cfg = os.path.join(tmp, name + ".toml")
    with open(cfg, "w") as f:
        f.write(f'workload = "{workload}"\nseed = 0\nsteps = {steps}\neval_every = {steps}\n'
                f'ckpt_every = 0\nthreads = 1\nout = "{rd}"\n{extra}[optimizer]\nlr = {lr}\n')
    r = run("train", "--config", cfg, "--quiet")
    check(r.returncode == 0, f"train {name}: {r.stderr.strip()}")
    return os.path.join(rd, "final_raw.safetensors")


def evaluate(path, workload="synth_ctr", *extra):
    r = run("eval", path, "--workload", workload, *extra)
    check(r.returncode == 0, f"eval {path}: {r.stderr.strip()}")
    return float(r.stdout.split()[3]) if r.returncode == 0 else float("nan")


def read_checkpoint(path):
    """A single file, or a sharded checkpoint's directory: (tensors, metadata of the first part)."""
    if not os.path.isdir(path):
        return read_safetensors(path)
    index = json.load(open(os.path.join(path, "model.safetensors.index.json")))
    tensors, meta = {}, None
    for shard in sorted(set(index["weight_map"].values())):
        t, m = read_safetensors(os.path.join(path, shard))
        tensors.update(t)
        meta = meta if meta is not None else m
    return tensors, meta


def same_bits(a, b):
    return (sorted(a) == sorted(b) and
            all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes()
                for k in a))


def within_one_ulp(got, models, names):
    """got (fp32) against the fp64 mean of models: |got - mean| <= one fp32 ulp of the mean."""
    worst = 0.0
    for k in names:
        mean = np.mean([m[k].astype(np.float64) for m in models], axis=0)
        ulp = np.spacing(np.abs(mean).astype(np.float32)).astype(np.float64)
        worst = max(worst, float(np.max(np.abs(got[k].astype(np.float64) - mean) / ulp)))
    return worst


def mix(paths, out):
    """The uniform mix of checkpoints `paths` (argument order), written to `out` for `wavg eval`:
    floating tensors as the fp64 mean rounded to their dtype, others copied from the last."""
    models = [read_safetensors(p)[0] for p in paths]
    tensors = {}
    for k, v in models[-1].items():
        if np.issubdtype(v.dtype, np.floating):
            tensors[k] = np.mean([m[k].astype(np.float64) for m in models], axis=0).astype(v.dtype)
        else:
            tensors[k] = v
    write_safetensors(out, tensors)
    return out


def replay_greedy(tmp, args, value):
    """Wortsman et al. 2022, Recipe 1, replayed here over `wavg eval` values: the ingredients with a
    finite metric in order of their own validation metric (best first, ties in argument order),
    each added if the validation metric of the soup with it is not worse (lower log-loss, ties
    kept) than the soup's without it. -> ({path: kept}, {path: soup with it}, kept paths)."""
    order = sorted(args, key=lambda p: (value[p], args.index(p)))
    soup, soup_value = [order[0]], value[order[0]]
    kept, with_it = {order[0]: True}, {}
    for n, p in enumerate(order[1:]):
        candidate = sorted(soup + [p], key=args.index)
        with_it[p] = evaluate(mix(candidate, os.path.join(tmp, f"replay{n}.safetensors")))
        kept[p] = with_it[p] <= soup_value
        print(f"replay: {os.path.relpath(p, tmp)}: soup with it {with_it[p]:.9f} vs "
              f"{soup_value:.9f} -> {'kept' if kept[p] else 'dropped'}")
        if kept[p]:
            soup, soup_value = candidate, with_it[p]
    return kept, with_it, soup


def noisy_pair(tmp, path, scale=0.2):
    """Two copies of `path` with opposite Gaussian noise (scale x each tensor's RMS, seed 0): each
    is worse than the original, and their mean is the original (up to rounding)."""
    x, _ = read_safetensors(path)
    rng = np.random.RandomState(0)
    noise = {k: scale * np.sqrt(np.mean(v.astype(np.float64) ** 2)) * rng.standard_normal(v.shape)
             for k, v in x.items()}
    out = []
    for sign, name in [(1, "plus"), (-1, "minus")]:
        out.append(os.path.join(tmp, f"noisy_{name}.safetensors"))
        write_safetensors(out[-1], {k: (v + sign * noise[k]).astype(v.dtype) for k, v in x.items()})
    return out


def test_greedy(tmp, ing, bad, evals):
    """The keep/drop decisions of `wavg soup --greedy` = the replay's; the soup's metric on the test
    split, which chose nothing, is reported beside the best ingredient's, not asserted.
    Ingredients: the runs at the lowest and highest learning rates, a noisy pair around the middle
    one (their soup beats either: the rule's keep branch), and a copy of the best ingredient (the
    mean of x and x is x: a tie, kept since the soup "does not get worse")."""
    plus, minus = noisy_pair(tmp, ing[1])
    value = dict(evals, **{p: evaluate(p) for p in (plus, minus)})
    args = [ing[0], plus, minus, ing[2]]
    best_path = min(args, key=lambda p: (value[p], args.index(p)))
    twin = os.path.join(tmp, "twin.safetensors")
    shutil.copyfile(best_path, twin)
    value[twin] = value[best_path]
    args.append(twin)
    out = os.path.join(tmp, "greedy.safetensors")
    r = run("soup", "--workload", "synth_ctr", "--greedy", "-o", out, *args, bad)
    check(r.returncode == 0, f"greedy soup: {r.stderr.strip()}")
    if r.returncode:
        return
    print(r.stdout, end="")
    got, meta = read_safetensors(out)
    rec = json.loads(meta.get("wavg.soup", "{}"))
    rows = rec.get("ingredients", [])
    check(rec.get("recipe") == "greedy" and rec.get("metric") == "logloss" and
          rec.get("direction") == "lower is better", f"record: {rec}")
    want = sorted(args, key=lambda p: (value[p], args.index(p)))
    check([x["path"] for x in rows[:len(args)]] == want and rows[len(args)]["path"] == bad,
          f"tried best first (ties in argument order), the diverged one last: {[x['path'] for x in rows]}")
    by = {x["path"]: x for x in rows}
    check(not by[bad]["kept"] and "not finite" in by[bad].get("diverged", ""),
          f"the diverged ingredient is left out and named: {by[bad]}")
    check(all(abs(by[p]["value"] - value[p]) <= 1e-9 * value[p] for p in args),
          f"recorded metrics = wavg eval's: {[(by[p]['value'], value[p]) for p in args]}")
    bad_line = [line for line in r.stdout.splitlines() if line.startswith(bad)]
    check(len(bad_line) == 1 and " no " in bad_line[0] and "diverged" in bad_line[0],
          f"the table reports the diverged ingredient: {bad_line}")
    kept, with_it, soup = replay_greedy(tmp, args, value)
    check({p: by[p]["kept"] for p in args} == kept,
          f"keep/drop = the replay's: wavg {[(p, by[p]['kept']) for p in want]}, replay {kept}")
    gap = max(abs(by[p]["soup_with_it"] - with_it[p]) / with_it[p] for p in with_it)
    print(f"soup with it: wavg's vs wavg eval of the replay's candidates: max relative difference {gap:.3g}")
    check(gap <= 1e-6, f"soup with it = wavg eval of the replay's candidate: "
          f"{[(by[p]['soup_with_it'], with_it[p]) for p in with_it]}")
    # Both branches of the rule are taken here (a real ingredient kept, one dropped), and the twin's
    # tie is kept, so a rule with the comparison flipped or strict fails the check above.
    check(kept[twin] and any(kept[p] for p in want[1:] if p != twin) and not all(kept.values()),
          f"the candidates exercise keep, drop and a tie: {kept}")
    soup_value = evaluate(out)
    check(abs(soup_value - rec["value"]) <= 1e-9 * soup_value, f"eval of the soup {soup_value} = recorded {rec['value']}")
    kept_models = [read_safetensors(p)[0] for p in args if by[p]["kept"]]
    worst = within_one_ulp(got, kept_models, got)
    check(worst <= 1.0, f"greedy soup = fp64 mean of the kept ingredients: worst {worst:.3g} ulp")
    test_soup, test_best = evaluate(out, "synth_ctr", "--split", "test"), evaluate(best_path, "synth_ctr", "--split", "test")
    print(f"greedy soup of {len(soup)} of {len(args)} ingredients: validation logloss {soup_value:.6f} "
          f"(best ingredient {value[best_path]:.6f}); test split, never seen by the recipe: soup "
          f"{test_soup:.6f}, best ingredient {test_best:.6f} (reported, not asserted)")


def test_uniform(tmp, ing, bad):
    out, avg = os.path.join(tmp, "uniform.safetensors"), os.path.join(tmp, "avg.safetensors")
    r = run("soup", "--workload", "synth_ctr", "-o", out, *ing)
    check(r.returncode == 0, f"uniform soup: {r.stderr.strip()}")
    r2 = run("average", "--last", str(len(ing)), "-o", avg, *ing)
    check(r2.returncode == 0, f"average --last: {r2.stderr.strip()}")
    if r.returncode or r2.returncode:
        return
    got, meta = read_safetensors(out)
    check(same_bits(got, read_safetensors(avg)[0]), "uniform soup = wavg average --last K, bit for bit")
    models = [read_safetensors(p)[0] for p in ing]
    worst = within_one_ulp(got, models, got)
    check(worst <= 1.0, f"uniform soup = numpy fp64 mean within one fp32 ulp: worst {worst:.3g} ulp")
    rec = json.loads(meta["wavg.soup"])
    check(rec["recipe"] == "uniform" and [x["path"] for x in rec["ingredients"]] == ing and
          all(x["kept"] for x in rec["ingredients"]), f"metadata lists the ingredients: {rec['ingredients']}")
    check(abs(evaluate(out) - rec["value"]) <= 1e-9 * rec["value"], "eval of the uniform soup = recorded value")
    # The average of trained checkpoints does not carry the newest's data checksum (eval verifies it).
    check(abs(evaluate(avg) - rec["value"]) <= 1e-9 * rec["value"], "eval of average --last K = the soup's value")
    bad_out = os.path.join(tmp, "poisoned.safetensors")
    one_error_line(run("soup", "--workload", "synth_ctr", "-o", bad_out, *ing, bad), "uniform with NaN",
                   [bad, "not finite", "--greedy"], bad_out)


def test_forms(tmp, ing, evals):
    """Prefixed names (DDP's module.) in the oldest ingredient, a sharded newest one: a sharded soup
    with the newest's names and the values of the original single files' average."""
    avg = os.path.join(tmp, "avg2.safetensors")
    r = run("average", "--last", "2", "-o", avg, *ing[:2])
    check(r.returncode == 0, f"average --last 2: {r.stderr.strip()}")
    t0, _ = read_safetensors(ing[0])
    pref = os.path.join(tmp, "prefixed.safetensors")
    write_safetensors(pref, {"module." + k: v for k, v in t0.items()})  # no checksum
    shards = os.path.join(tmp, "shards")
    split_into_shards(ing[1], shards, 3)
    out = os.path.join(tmp, "soup_dir")
    one_error_line(run("soup", "--workload", "synth_ctr", "-o", out, pref, shards), "prefixed names",
                   ["--strip-prefix module."], out)
    one_error_line(run("soup", "--workload", "synth_ctr", "-o", out, pref), "prefixed names vs the model",
                   ["of the synth_ctr model is missing", "pass --strip-prefix module."], out)
    r = run("soup", "--workload", "synth_ctr", "--strip-prefix", "module.", "-o", out, pref, shards)
    check(r.returncode == 0 and os.path.isfile(os.path.join(out, "model.safetensors.index.json")),
          f"sharded newest -> sharded soup: {r.stderr.strip()}")
    if r.returncode == 0:
        check(same_bits(read_checkpoint(out)[0], read_safetensors(avg)[0]),
              "the soup of a prefixed copy and a sharded copy = the average of the original files")
    # `wavg eval --strip-prefix`.
    one_error_line(run("eval", pref, "--workload", "synth_ctr"), "eval of prefixed names",
                   ["missing", "pass --strip-prefix module."])
    check(evaluate(pref, "synth_ctr", "--strip-prefix", "module.") == evals[ing[0]],
          "eval --strip-prefix module. of the prefixed copy = eval of the original")


def test_bad_inputs(tmp, ing):
    out = os.path.join(tmp, "bad.safetensors")
    one_error_line(run("soup", "--workload", "nope", "-o", out, *ing), "unknown workload",
                   ["unknown workload 'nope'"], out)
    one_error_line(run("soup", "--workload", "synth_ctr", "-o", out), "no ingredient", ["inputs"], out)
    one_error_line(run("soup", "--workload", "fmnist_cnn", "-o", out, *ing), "another workload's model",
                   ["missing"], out)
    t, _ = read_safetensors(ing[0])
    k = sorted(t)[0]
    other = os.path.join(tmp, "other_shape.safetensors")
    write_safetensors(other, dict(t, **{k: np.zeros((3,), np.float32)}))
    one_error_line(run("soup", "--workload", "synth_ctr", "-o", out, other, ing[1]), "mismatched tensors",
                   [k], out)
    one_error_line(run("soup", "--workload", "synth_ctr", "--recompute-batches", "0", "-o", out, *ing),
                   "--recompute-batches 0", ["--recompute-batches must be >= 1, got 0"], out)
    existing = os.path.join(tmp, "uniform.safetensors")
    before = open(existing, "rb").read()
    r = run("soup", "--workload", "synth_ctr", "--greedy", "-o", existing, *ing)
    one_error_line(r, "existing output", ["exists", "--overwrite"])
    check(open(existing, "rb").read() == before, "the existing output is kept")
    r = run("soup", "--workload", "synth_ctr", "--greedy", "--overwrite", "-o", existing, ing[0])
    check(r.returncode == 0 and json.loads(read_safetensors(existing)[1]["wavg.soup"])["recipe"] == "greedy",
          f"--overwrite replaces it: {r.stderr.strip()}")


def test_batchnorm(tmp):
    """fmnist_cnn (BatchNorm): statistics recomputed for the soup and written with it."""
    ing = [train(tmp, f"bn{i}", "fmnist_cnn", lr, 6, "batch_size = 32\n") for i, lr in enumerate([2e-3, 4e-3])]
    out, avg = os.path.join(tmp, "bn_soup.safetensors"), os.path.join(tmp, "bn_avg.safetensors")
    r = run("soup", "--workload", "fmnist_cnn", "--recompute-batches", "4", "-o", out, *ing)
    r2 = run("average", "--last", "2", "-o", avg, *ing)
    check(r.returncode == 0 and r2.returncode == 0, f"BatchNorm soup: {r.stderr.strip()} {r2.stderr.strip()}")
    if r.returncode or r2.returncode:
        return
    got, meta = read_safetensors(out)
    mean, _ = read_safetensors(avg)
    stats = [k for k in got if "running_" in k or "num_batches" in k]
    params = [k for k in got if k not in stats]
    check(len(stats) >= 4 and all(got[k].tobytes() == mean[k].tobytes() for k in params),
          f"BatchNorm soup: parameters = average --last 2 bit for bit ({stats})")
    check(all(not np.array_equal(got[k], mean[k]) for k in stats if "running_" in k),
          "BatchNorm soup: statistics recomputed, not averaged")
    rec = json.loads(meta["wavg.soup"])
    check("recomputed from 4" in rec["batchnorm"], f"record says so: {rec['batchnorm']}")
    value = evaluate(out, "fmnist_cnn")
    check(abs(value - rec["value"]) <= 1e-9, f"eval of the BatchNorm soup {value} = reported {rec['value']}")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        ing = [train(tmp, f"lr{lr}", "synth_ctr", lr, 60) for lr in LRS]
        if not all(os.path.exists(p) for p in ing):
            finish()
        # A diverged ingredient: a copy of one with a NaN (written without a checksum).
        t, _ = read_safetensors(ing[1])
        k = sorted(t)[0]
        w = t[k].copy()
        w.flat[0] = np.nan
        bad = os.path.join(tmp, "diverged.safetensors")
        write_safetensors(bad, dict(t, **{k: w}))
        evals = {p: evaluate(p) for p in ing}
        print("ingredients (wavg eval):", {os.path.basename(os.path.dirname(p)): v for p, v in evals.items()})
        test_greedy(tmp, ing, bad, evals)
        test_uniform(tmp, ing, bad)
        test_forms(tmp, ing, evals)
        test_bad_inputs(tmp, ing)
        test_batchnorm(tmp)
    finish()


if __name__ == "__main__":
    main()
