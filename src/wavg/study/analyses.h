// The study's analyses (DESIGN.md §4, analyses 1–7; issue 12) as pure functions from one
// workload's curves and the metric's direction to its entry of a part (schema study-v3-part):
// target from the target-setting runs, the regime check, steps to target (AlgoPerf's first
// evaluation at or past the target, and interpolated) of the pre-registered methods and of the
// bank setting selected after the fact, and the AlgoPerf scoring over workloads. The LM protocol's
// entry likewise. The runs are made elsewhere (run_cache.h); nothing here reads a file.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "wavg/core/averager.h"
#include "wavg/study/scoring.h"

namespace wavg::study {

using json = nlohmann::ordered_json;

// The methods the study scores and the model of a run that stands for each.
struct Method {
  const char* name;   // "nadamw", "nadamw+lawa", "nadamw+ema"
  const char* model;  // "raw", "lawa_rec", "ema_rec"
};
const std::vector<Method>& study_methods();
// The models whose per-seed curves results.json keeps (the ones the report draws).
const std::vector<std::string>& plotted_models();

// One averager of the bank riding the hard-budget runs.
struct BankSetting {
  SchemeOptions options;  // scheme, window or beta, every; name set
  double horizon = 0;       // fraction of the hard budget H: ν·L/H (LAWA), ν/(1−β)/H (EMA)
  int64_t eval_every = 0;   // steps between its evaluations in the scoring runs
};

// One run of the baseline grid (budget T, seed 0).
struct GridRun {
  double lr = 0, weight_decay = 0, warmup = 0;  // warmup: fraction of T
  ModelCurves curves;
};

// One run of analysis 6 (seed 0, hard budget): a schedule variant.
struct ScheduleRun {
  std::string label;
  std::string dir;              // relative to the study directory
  double final_fraction = 0;    // of the peak learning rate, at the end of the decay
  double decay_fraction = 1;    // of the hard budget, over which the schedule runs
  ModelCurves curves;
};

// An optimizer arm's runs on a workload (issue 13): its grid at T and its scoring runs at H with
// lawa_rec and ema_rec riding.
struct ArmRuns {
  std::string name, optimizer;
  bool decay = true;
  int64_t lookahead_k = 0;
  double lookahead_alpha = 0;
  std::vector<GridRun> grid;
  size_t chosen = 0;
  std::vector<ModelCurves> seeds;  // by scoring seed
};

// Everything the analyses of one workload use.
struct WorkloadData {
  std::string name, metric;
  bool lower_is_better = true;
  int64_t T = 0;                 // budget of the grid and the target-setting runs (steps)
  int64_t H = 0;                 // hard budget of the scoring runs, ⌈4/3·T⌉ (steps)
  int64_t eval_every = 0;        // raw and pre-registered averages (steps)
  int64_t bank_eval_every = 0;   // the rest of the bank (steps)
  double train_s_per_step = 0;   // mean over the scoring runs, evaluation excluded (seconds)
  double eval_s = 0, train_s = 0;  // over every run of the workload (seconds)
  std::vector<GridRun> grid;
  size_t chosen = 0;             // index into grid: best_index of the raw best values
  std::vector<BankSetting> bank;      // pre-registered settings first
  std::vector<int64_t> target_seeds, scoring_seeds;
  std::vector<Curve> target_runs;     // raw curves of the target-setting runs (budget T)
  std::vector<ModelCurves> seeds;     // the scoring runs (budget H), by scoring seed
  std::vector<ScheduleRun> schedules; // empty unless analysis 6 ran on this workload
  std::vector<ArmRuns> arms;          // further optimizers (empty in the default study)
};

// The grid point to rerun with every seed: the best raw value over the run, in the direction.
size_t choose_grid_point(const std::vector<GridRun>& grid, bool lower_is_better);

// results.json's entry of one workload, and the median steps to target (AlgoPerf) of each method.
struct WorkloadAnalysis {
  json results;
  std::map<std::string, double> method_time;  // method -> median steps to target (kMiss)
};
WorkloadAnalysis analyse_workload(const WorkloadData& d);

// Steps to target of one model over the scoring runs: {"model", "pre_registered", "eval_every",
// "per_seed", "interpolated_per_seed", "median", "interpolated_median"}, a miss as "inf".
json steps_entry(const std::vector<ModelCurves>& seeds, const std::string& model, double target,
                 bool lower_is_better, bool pre_registered, int64_t eval_every);
// The bank setting with the smallest interpolated median steps to target, every setting on the
// bank's grid (the coarsest eval_every; the first on ties; if none reaches the target, the best
// mean best value): "selected after the fact".
size_t select_setting(const WorkloadData& d, double target);

// One function per analysis (each a part of analyse_workload's entry).
json lr_sensitivity_rows(const WorkloadData& d, double target);           // analysis 4
json method_rows(const WorkloadData& d, double target,                    // analyses 1, 5, 7
                 std::map<std::string, double>* method_time);
// Analysis 3's rows (per-seed steps of every bank setting on its own grid); their ratios to the raw
// model on the same grid and analysis 2's fit are added at merge (entry_analyses.h).
json bank_rows(const WorkloadData& d, double target);
json schedule_rows(const WorkloadData& d, double target);                 // analysis 6
// The arms: per arm its grid, its chosen learning rate and its methods NAME, NAME+lawa, NAME+ema
// (steps_entry fields, best values), relative to NAdamW's raw model and to the arm's own.
json arm_rows(const WorkloadData& d, double target);
// {seed -> {model -> [[step, value], ...]}} for `models` (NaN values as null).
json curves_json(const std::vector<ModelCurves>& seeds, const std::vector<int64_t>& seed_ids,
                 const std::vector<std::string>& models);

// The LM protocol (paper §7): AdamW grid runs at H (raw), target runs and scoring runs.
struct LmGridRun {
  double lr = 0, final_fraction = 0, warmup = 0, weight_decay = 0, clip_norm = 0;
  Curve raw;
};
struct LmData {
  std::string name, metric;
  bool lower_is_better = true;
  int64_t H = 0, eval_every = 0, target_step = 0;
  std::vector<LmGridRun> grid;
  size_t chosen = 0;
  std::vector<BankSetting> bank;  // the pre-registered averagers
  std::vector<int64_t> target_seeds, scoring_seeds;
  std::vector<Curve> target_runs;
  std::vector<ModelCurves> seeds;
};
// The grid point with the best raw value within H (the first on ties).
size_t choose_lm_point(const std::vector<LmGridRun>& grid, bool lower_is_better);
// results.json's "lm_protocol" and the method times.
WorkloadAnalysis analyse_lm(const LmData& d);

// results.json's "scoring": ratios, profile (every 10th τ), score per method.
json scoring_json(const std::map<std::string, std::map<std::string, double>>& times);

// A finite number, or null (a miss, or no value).
json number_or_null(double v);
// A finite number, or the string "inf" (a missed target, in steps_to_target).
json steps_or_inf(double v);

}  // namespace wavg::study
