// The analyses of issue 25 (results.json schema study-v4), computed from a part's entry alone (its
// per-seed curves of the raw model and the pre-registered averages, and the bank's per-seed steps
// to target), so that a committed study's results.json rebuilds from its committed parts without
// the run directories:
// - "intervals": each pre-registered average against the raw model on their shared grid (every
//   eval_every steps): paired per-seed ratios, the ratio of medians, its exact bootstrap 95 %
//   interval (a miss is ∞; hi = "inf": open above), a verdict, and a robustness column (the ratio
//   with the evaluations subsampled 2× and 4× and under a 3-point trailing mean);
// - "one_grid": every bank setting once against the raw model subsampled onto the bank's grid;
// - "horizon_fit_one_grid": analysis 2 on that one grid, each setting once, with the bootstrap
//   interval of the fitted optimum;
// - "tuned": the bank's best setting chosen leave-one-seed-out on the other seeds, scored on the
//   held-out one, all rotations;
// - "fixed_budget": best value and value at H of the raw model and each average, paired gains;
// - "regime_interval": the regime check's gain with its two-sample bootstrap interval.
#pragma once

#include <nlohmann/json.hpp>
#include <vector>

namespace wavg::study {

using json = nlohmann::ordered_json;

// The paper's (tuned) relative steps to target: AlgoPerf (Figs. 1–2) and the 124M LM (§7).
constexpr double kPaperAlgoPerfRatio = 0.82;
constexpr double kPaperLmRatio = 0.70;

// Runs added to a committed part without rerunning it (scripts/study_extra_runs.py, schema
// "study-v4-addition": {job, workload, runs: {NAME: {seed, steps, eval_every, curves}}}), read from
// STUDY_DIR/additions/: job "*_seeds" adds scoring seeds of the raw model and the pre-registered
// averages (runs seed_S): "intervals", "fixed_budget" and "regime_interval" (with the pre-registered
// check recomputed, "regime_check_all_seeds") then use every seed, the bank's analyses the part's
// own; job "*_schedules" adds analysis 6 on more seeds (runs DIR_seedS, DIR a schedule's run
// directory): "schedules_over_seeds"; job "lm_grid*" adds points to the LM grid: "grid_added";
// job "lm_bank" gives the LM protocol its bank (lm_bank.h): "settings", "bank_eval_every",
// "bank_reproduction", and from them "one_grid", "horizon_fit_one_grid" and "tuned".
// Adds the keys above to a workload's entry (schema study-v3-part's "entry"), and to each of its
// arms "intervals" and "fixed_budget". `lm`: the LM protocol's entry (no target-setting budget, no
// regime check). Throws wavg::Error naming the key if the entry or an addition lacks what an
// analysis needs, or if an addition's runs do not match the part (budget, evaluation interval).
void add_entry_analyses(json* entry, bool lm, const std::vector<json>& additions = {});

}  // namespace wavg::study
