// Pieces shared by the run report and the study report: HTML escaping, table cells of numbers,
// the direction's wording, and the two report bodies.
#pragma once

#include <string>

namespace wavg::report {

// HTML-escapes text (&, <, >, ").
std::string html_escape(const std::string& s);

// A number for a table cell: format_number(v, digits) (%.{digits}g); "&ndash;" for NaN or ±∞.
std::string cell(double v, int digits = 4);
// format_fixed(v, decimals); "&ndash;" for NaN or ±∞.
std::string cell_fixed(double v, int decimals);
// Steps to target: the integer, or a red ✗ for a miss (NaN, null or ∞).
std::string steps_cell(double steps);

// "&le;" (lower is better: a value reaches the target at or below it) or "&ge;".
const char* target_relation(bool lower_is_better);
// "lower" or "higher".
const char* better_word(bool lower_is_better);
// The improvement of `value` over `base` in percent of |base|, positive when `value` is better in
// the direction: 100·(base − value)/|base| (lower is better) or 100·(value − base)/|base|.
double improvement_percent(double value, double base, bool lower_is_better);

// The body of the report of a run directory (summary.json, metrics.jsonl, sweep files).
std::string run_report_body(const std::string& dir);
// The body of the report of a study directory, from STUDY_DIR/results.json alone.
std::string study_report_body(const std::string& dir);

}  // namespace wavg::report
