#!/usr/bin/env python3
"""Prints a study's conclusions (results.json "conclusions", marked by src/wavg/study/conclusions.cpp)
as the Markdown table the README quotes.

  conclusions_markdown.py STUDY_DIR[:arms] ...   one table over every study given (":arms": only
                                                 the claims of its optimizer arms)
"""
import json
import os
import sys


def rows(study_dir, prefix, arms_only):
    with open(os.path.join(study_dir, "results.json")) as f:
        doc = json.load(f)
    if "conclusions" not in doc:
        sys.exit(f"wavg: error: {study_dir}/results.json has no conclusions (merge it again)")
    for c in doc["conclusions"]:
        if arms_only and not c["claim"].startswith("speed-up with "):
            continue
        parts = "; ".join(f"{p['part']}{' (' + p['regime'] + ')' if p['regime'] else ''}: "
                          f"{p['evidence']} → {p['mark']}" for p in c["parts"])
        yield f"| **{prefix}{c['claim']}**: {c['paper']} | {parts} | **{c['mark']}** |"


def main(argv):
    if len(argv) < 2:
        sys.exit("usage: conclusions_markdown.py STUDY_DIR [STUDY_DIR ...]")
    print("| paper's claim | per part (95 % intervals) → mark | overall |")
    print("|---|---|---|")
    for arg in argv[1:]:
        d, _, only = arg.partition(":")
        prefix = os.path.basename(os.path.normpath(d)) + ": " if len(argv) > 2 else ""
        for r in rows(d, prefix, only == "arms"):
            print(r)


if __name__ == "__main__":
    main(sys.argv)
