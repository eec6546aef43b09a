// The study's analyses (DESIGN.md §4, analyses 1–7) as pure functions from one workload's curves
// and the metric's direction to its entry of results.json (schema study-v2), and the AlgoPerf
// scoring over workloads. The runs are made elsewhere (run_cache.h); nothing here reads a file.
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
  AveragerOptions options;  // scheme, window or beta, every; name set
  double horizon = 0;       // fraction of the hard budget H: ν·L/H (LAWA), ν/(1−β)/H (EMA)
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

// Everything the analyses of one workload use.
struct WorkloadData {
  std::string name, metric;
  bool lower_is_better = true;
  int64_t T = 0;                 // budget of the grid (steps)
  int64_t H = 0;                 // hard budget of the seed runs, ⌈4/3·T⌉ (steps)
  int64_t eval_every = 0;        // steps
  double train_s_per_step = 0;   // mean over the seed runs, evaluation excluded (seconds)
  std::vector<GridRun> grid;
  size_t chosen = 0;             // index into grid: best_index of the raw best values
  std::vector<BankSetting> bank;      // recommended settings first
  std::vector<ModelCurves> seeds;     // the hard-budget runs, by seed
  std::vector<ScheduleRun> schedules; // empty unless analysis 6 ran on this workload
};

// The grid point to rerun with every seed: the best raw value over the run, in the direction.
size_t choose_grid_point(const std::vector<GridRun>& grid, bool lower_is_better);

// results.json's entry of one workload, and the median steps to target of each method.
struct WorkloadAnalysis {
  json results;
  std::map<std::string, double> method_time;  // method -> median steps to target (kMiss)
};
WorkloadAnalysis analyse_workload(const WorkloadData& d);

// One function per analysis (each a part of analyse_workload's entry).
json lr_sensitivity_rows(const WorkloadData& d, double target);           // analysis 4
json method_rows(const WorkloadData& d, double target,                    // analyses 1, 5, 7
                 std::map<std::string, double>* method_time);
json bank_rows(const WorkloadData& d, double target, double raw_time);   // analyses 2, 3
json horizon_fits(const json& bank_rows);                                // analysis 2
json schedule_rows(const WorkloadData& d, double target);                 // analysis 6
// {seed -> {model -> [[step, value], ...]}} for `models` (NaN values as null).
json curves_json(const std::vector<ModelCurves>& seeds, const std::vector<std::string>& models);

// results.json's "scoring": ratios, profile (every 10th τ), score per method.
json scoring_json(const std::map<std::string, std::map<std::string, double>>& times);

// A finite number, or null (a miss, or no value).
json number_or_null(double v);

}  // namespace wavg::study
