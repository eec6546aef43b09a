// The training runner (DESIGN.md §3): trains one workload with one optimizer and schedule, a bank
// of averagers riding the trajectory; every eval_every steps evaluates the raw model and every
// averager on the validation split, appends one JSON line per (step, model) to metrics.jsonl, and
// at the end writes summary.json (steps to target, best value) and the final models.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "wavg/train/config.h"

namespace wavg {

struct ModelSummary {
  std::string model;  // "raw" or the averager's name
  std::string description;
  std::optional<int64_t> steps_to_target;  // first evaluated step reaching the target
  double best_value = 0;
  int64_t best_step = -1;  // -1: never evaluated
};

struct RunSummary {
  std::string workload, metric;
  bool lower_is_better = true;
  double target = 0;
  int64_t steps_done = 0;
  double train_wall_s = 0;  // training time, evaluation excluded
  double eval_wall_s = 0;
  std::vector<ModelSummary> models;  // raw first
  int interrupted_by = 0;  // signal that stopped the run after writing a state (SIGINT, SIGTERM)
};

struct RunOptions {
  bool overwrite = false;  // replace an existing run in the run directory
  bool resume = false;     // continue from the newest intact state in the run directory
  bool quiet = false;      // no progress output
};

// Trains (or, with options.resume, continues) the run. SIGINT and SIGTERM finish the current
// step, write a state and return with interrupted_by set.
RunSummary run_training(const RunConfig& config, const RunOptions& options = {});

// The configuration a run directory was started with (RUN_DIR/config.toml).
std::string run_config_path(const std::string& run_dir);

// The summary as an aligned text table (steps to target as % of raw, best value and its step).
std::string format_summary(const RunSummary& s);

}  // namespace wavg
