// The study report's model of results.json: the workloads it holds, each with its direction, and
// one function per section. A section renders what results.json holds and says in a note what it
// lacks (a partial study, or an older schema), so that no section reads a key that is not there.
#pragma once

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "wavg/study/json_view.h"

namespace wavg::report {

struct StudyWorkload {
  std::string name;
  JsonView w;             // results.json's workloads.NAME
  bool lower_is_better;   // "direction" ("min"/"max"), or an older file's "lower_is_better"
  std::string metric;
  double target;
};

struct StudyResults {
  JsonView root;
  std::vector<StudyWorkload> workloads;  // those with a metric, a direction and a target
  std::string skipped;                   // notes on the workloads left out
};

// Reads the workloads of results.json; throws wavg::Error naming the file if it has none, or if its
// schema is not study-v4 (an older study must be merged again or rerun).
StudyResults study_results(const JsonView& root);

// "<p class="note">TEXT</p>".
std::string note(const std::string& text);
// True if `v` holds every key; otherwise appends a note "WHO: no WHAT ('k' not in results.json:
// ...)" to *html and returns false.
bool need(const JsonView& v, std::initializer_list<const char*> keys, const std::string& who,
          const std::string& what, std::string* html);

// Steps to target as results.json writes them: a number, or "inf" for a miss (null reads as NaN).
double steps_value(const JsonView& v);

// The sections, in the order of the report.
std::string study_intro(const StudyResults& r);
std::string study_findings(const StudyResults& r);
std::string regime_section(const StudyResults& r);       // issue 12 §5
std::string steps_section(const StudyResults& r);        // both counts, pre-registered vs selected
std::string speedup_section(const StudyResults& r);      // analyses 1 and 7
std::string horizon_section(const StudyResults& r);      // analysis 2
std::string grids_section(const StudyResults& r);        // analysis 3
std::string lr_section(const StudyResults& r);           // analysis 4
std::string best_value_section(const StudyResults& r);   // analysis 5
std::string schedules_section(const StudyResults& r);    // analysis 6
std::string lm_section(const StudyResults& r);           // the paper's §7 protocol
std::string arms_section(const StudyResults& r);         // issue 13's optimizers and EXP (if any)
std::string scoring_section(const StudyResults& r);
// Issue 25 (report_study_claims.cpp).
std::string intervals_section(const StudyResults& r);     // ratios with intervals, tuned rows
std::string one_grid_section(const StudyResults& r);      // the bank against raw on its grid
std::string fixed_budget_section(const StudyResults& r);  // best value and value at H
std::string conclusions_section(const StudyResults& r);   // the paper's claims, marked

// Cells of issue 25's entries: a ratio as a percentage ("inf": ∞), a ratio with its interval
// ("91.0% [84.2%, 103.1%]"), a verdict (bold where the interval excludes no effect).
std::string percent_value(const JsonView& v);
std::string ratio_with_interval(const JsonView& e);
std::string verdict_cell(const JsonView& e);
// The parts with analyses: the workloads, then lm_protocol if present.
std::vector<std::pair<std::string, JsonView>> study_parts_of(const StudyResults& r);
// A fixed-budget table's header and its rows for one "fixed_budget" object.
std::string fixed_budget_header();
std::string fixed_budget_rows(const std::string& part, const JsonView& fb);

}  // namespace wavg::report
