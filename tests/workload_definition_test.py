#!/usr/bin/env python3
"""A run made under another definition of its workload (issue 22 §6): the workload's definition
version is part of the resolved config; resume and sweep refuse a run recorded under another one
with one line naming the workload and both versions (exit 2), `--force` accepts it with a warning
and records the change; a new configuration that claims another definition is refused. Short
synth_ctr runs (1 thread), stopped at a chosen state by WAVG_TEST_KILL_IN_STATE_WRITE.
The study's merge (`wavg study --merge-only`) does the same for a part file: a part that records
another definition of its workload is refused in one line (`--accept-other-definitions` warns and
records it); a part without the field (every committed part) is definition 1, and each committed
study under results/ rebuilds its committed results.json byte for byte, the definitions recorded.
Usage: workload_definition_test.py PATH_TO_WAVG"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import check, finish  # noqa: E402

WAVG = os.path.abspath(sys.argv[1])
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = ('workload = "synth_ctr"\nsteps = 12\neval_every = 6\nstate_every = 4\nckpt_every = 4\n'
          'batch_size = 64\nthreads = 1\n[[lawa]]\nwindow = 2\nevery = 2\n')


def wavg(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([WAVG, *args], capture_output=True, text=True, env=e)


def one_line_error(r):
    lines = r.stderr.strip().splitlines()
    return r.returncode == 2 and len(lines) == 1 and lines[0].startswith("wavg: error: ")


with tempfile.TemporaryDirectory() as tmp:
    cfg = os.path.join(tmp, "c.toml")
    with open(cfg, "w") as f:
        f.write(CONFIG)
    run = os.path.join(tmp, "run")
    r = wavg("train", "--config", cfg, "--set", f'out="{run}"', "--quiet",
             env={"WAVG_TEST_KILL_IN_STATE_WRITE": "8"})
    check(r.returncode != 0 and os.path.exists(os.path.join(run, "state")), f"stopped at step 8: {r.stderr!r}")
    config_toml = os.path.join(run, "config.toml")
    text = open(config_toml).read()
    # Today's definition of every workload is 1, which the resolved config leaves unwritten.
    check("workload_version" not in text, "definition 1 is not written (earlier runs keep their hashes)")

    # The run as an older (or newer) wavg would have recorded it under definition 7.
    with open(config_toml, "w") as f:
        f.write(text.replace('workload = "synth_ctr"\n', 'workload = "synth_ctr"\nworkload_version = 7\n'))
    r = wavg("train", "--resume", run, "--quiet")
    check(one_line_error(r), f"resume refused in one line, exit 2: {r.returncode} {r.stderr!r}")
    check("workload 'synth_ctr' definition 7" in r.stderr and "this wavg has definition 1" in r.stderr
          and "--force" in r.stderr, f"the message names the workload and both versions: {r.stderr!r}")
    r = wavg("sweep", run, "--lawa", "window=2", "--quiet")
    check(one_line_error(r) and r.stderr.startswith("wavg: error: sweep: ")
          and "definition 7" in r.stderr and "definition 1" in r.stderr, f"sweep refused: {r.stderr!r}")

    r = wavg("train", "--resume", run, "--force", "--quiet")
    check(r.returncode == 0, f"--force resumes: {r.stderr!r}")
    check("wavg: warning: resume --force:" in r.stderr and "definition 7; using definition 1" in r.stderr,
          f"--force warns: {r.stderr!r}")
    changes = [json.loads(l) for l in open(os.path.join(run, "config_changes.jsonl"))]
    # Definition 1 is unwritten: recorded as "unset", as every key a resolved config leaves out.
    check(any(c["key"] == "workload_version" and c["old"] == "7" and c["new"] == "unset" for c in changes),
          f"the change is recorded: {changes}")
    check("workload_version" not in open(config_toml).read(), "config.toml rewritten under definition 1")
    summary = json.load(open(os.path.join(run, "summary.json")))
    check(summary["steps_done"] == 12, "the run finished")

    # A new configuration that claims another definition cannot be trained by this wavg.
    r = wavg("train", "--config", cfg, "--set", f'out="{tmp}/new"', "--set", "workload_version=2", "--quiet")
    check(one_line_error(r) and "workload 'synth_ctr' is definition 1" in r.stderr
          and "made under definition 2" in r.stderr, f"a new run under definition 2 refused: {r.stderr!r}")
    r = wavg("train", "--config", cfg, "--set", f'out="{tmp}/zero"', "--set", "workload_version=0", "--quiet")
    check(one_line_error(r) and "'workload_version' must be >= 1, got 0" in r.stderr, f"version 0: {r.stderr!r}")


def merge(study, *extra):
    return wavg("study", "--config", os.path.join(ROOT, "configs", study + ".toml"), "--out",
                os.path.join(tmp, study), "--merge-only", "--quiet", *extra)


with tempfile.TemporaryDirectory() as tmp:
    # The committed studies: their parts predate the field (definition 1 of each workload).
    expected = {"study": {"fmnist_cnn": 1, "text_lm": 1, "synth_ctr": 1, "mri_recon": 1},
                "study_breadth": {"graph_mol": 1, "synth_ctr": 1}, "study_breadth_rerun": {"graph_mol": 1, "synth_ctr": 1}}
    for study, defs in expected.items():
        committed = os.path.join(ROOT, "results", study)
        shutil.copytree(committed, os.path.join(tmp, study), ignore=shutil.ignore_patterns("*.html"))
        parts = [json.load(open(os.path.join(committed, "parts", p))) for p in os.listdir(committed + "/parts")]
        # Parts written before the field (definition 1) or after it (recording 1 of their workload).
        check(all(p.get("workload_definitions", {p["part"]: 1}) == {p["part"]: 1} for p in parts),
              f"{study}: parts without the field or recording definition 1")
        r = merge(study)
        res = open(os.path.join(tmp, study, "results.json")).read()
        check(r.returncode == 0 and res == open(os.path.join(committed, "results.json")).read(),
              f"{study}: results.json rebuilds byte for byte from the committed parts: {r.stderr[-300:]!r}")
        check(json.loads(res).get("workload_definitions") == defs, f"{study}: definitions recorded")
        html = open(os.path.join(tmp, study, "report.html")).read()
        listed = ", ".join(f"{w} {v}" for w, v in defs.items())
        check("Its runs were made under these workload definitions" in html and listed + "." in html
              and html == open(os.path.join(committed, "report.html")).read(),
              f"{study}: the report names the definitions ({listed}) and rebuilds byte for byte")

    # The same part as a wavg with graph_mol at definition 7 would have written it.
    part = os.path.join(tmp, "study_breadth_rerun", "parts", "graph_mol.json")
    doc = json.load(open(part))
    doc["workload_definitions"] = {"graph_mol": 7}
    json.dump(doc, open(part, "w"))
    before = open(os.path.join(tmp, "study_breadth_rerun", "results.json")).read()
    r = merge("study_breadth_rerun")
    check(one_line_error(r) and part in r.stderr and "workload 'graph_mol' definition 7" in r.stderr
          and "this wavg has definition 1" in r.stderr and "--accept-other-definitions" in r.stderr,
          f"merge refuses a part made under another definition: {r.returncode} {r.stderr!r}")
    check(open(os.path.join(tmp, "study_breadth_rerun", "results.json")).read() == before,
          "results.json left as it was")
    r = merge("study_breadth_rerun", "--accept-other-definitions")
    res = json.load(open(os.path.join(tmp, "study_breadth_rerun", "results.json")))
    check(r.returncode == 0 and "wavg: warning: study --accept-other-definitions: " + part in r.stderr
          and "definition 7" in r.stderr, f"--accept-other-definitions warns: {r.stderr!r}")
    check(res.get("workload_definitions") == {"graph_mol": 7, "synth_ctr": 1}, f"the part's definition recorded: {res.get('workload_definitions')}")
    # Accepted or not, two parts of one study cannot disagree on a workload (text_lm's part and the
    # LM protocol's, which runs on text_lm and predates the field: definition 1).
    text_lm = os.path.join(tmp, "study", "parts", "text_lm.json")
    lm_doc = json.load(open(text_lm))
    lm_doc["workload_definitions"] = {"text_lm": 2}
    json.dump(lm_doc, open(text_lm, "w"))
    r = merge("study", "--accept-other-definitions")
    check(r.returncode == 2 and r.stderr.splitlines()[-1].startswith("wavg: error: study: ")
          and "parts/lm_protocol.json was made under workload 'text_lm' definition 1, another part under "
          "definition 2" in r.stderr, f"parts disagreeing on a workload: {r.stderr!r}")
    doc["workload_definitions"] = {"graph_mol": "one"}
    json.dump(doc, open(part, "w"))
    r = merge("study_breadth_rerun")
    check(one_line_error(r) and "'workload_definitions.graph_mol' must be an integer >= 1" in r.stderr,
          f"a malformed field: {r.stderr!r}")

finish()
