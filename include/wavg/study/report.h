// `wavg report`: one self-contained HTML file with the findings, tables, and gnuplot figures
// (embedded SVG) of a run directory (metrics.jsonl, summary.json, sweep files) or a study
// directory (results.json alone: a study's report rebuilds without its run directories). Reads
// files only; no LibTorch.
#pragma once

#include <string>

namespace wavg {

// Writes the report of `dir` to `out_html` atomically. A partial study (a results.json written
// before the scoring, or of an older schema) gives the report of what it holds, with a note per
// part that is missing. Throws wavg::Error if `dir` holds neither a run nor a study, if a file is
// malformed (naming the file and the key), or if gnuplot is missing or fails on a figure.
void write_report(const std::string& dir, const std::string& out_html);

// The study part of the report (the HTML body) of STUDY_DIR/results.json.
std::string study_report(const std::string& dir);

}  // namespace wavg
