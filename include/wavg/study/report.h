// `wavg report`: one self-contained HTML file with the findings, tables, and gnuplot figures
// (embedded SVG) for a run directory (metrics.jsonl, summary.json, sweep files) or a study
// directory (results.json). Reads files only; no LibTorch.
#pragma once

#include <string>

namespace wavg {

// Writes the report of `dir` to `out_html` atomically. Throws wavg::Error if `dir` holds neither a
// run nor a study, or if gnuplot is missing.
void write_report(const std::string& dir, const std::string& out_html);

// Renders a gnuplot script (without terminal/output lines) to an SVG string.
std::string gnuplot_svg(const std::string& script, int width = 760, int height = 420);

// The study section (results.json and seed-0 curves of STUDY_DIR/runs).
std::string study_report(const std::string& dir);

// HTML-escapes text.
std::string html_escape(const std::string& s);

}  // namespace wavg
