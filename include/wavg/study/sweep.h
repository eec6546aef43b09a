// Offline sweeps (DESIGN.md §2 "Offline", issue: sweeps): the model checkpoints a run stored every
// ν0 steps are replayed, in step order, through a grid of averagers riding one bank, and every
// average is evaluated on the validation split at the run's evaluation steps. Because the replay
// goes through the same ModelAverager as training, the sweep of a setting agrees exactly with the
// online average of the same setting.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "wavg/core/averager.h"

namespace wavg {

// Expands "window=2,5,10 every=1,4" (LAWA), "beta=0.9,0.99 every=1,4" (EMA), "every=1 start=100"
// (SWA) into the cartesian product of settings. Errors name the bad token.
std::vector<SchemeOptions> parse_grid(Scheme scheme, const std::vector<std::string>& tokens);

struct SweepOptions {
  std::vector<SchemeOptions> grid;
  BufferPolicy buffers = BufferPolicy::kAverage;
  std::vector<std::string> save;  // averager names whose final average is saved; "all"
  bool quiet = false;
  bool force = false;  // accept a raw (old) config.toml, resolved with today's defaults
};

struct SweepRow {
  SchemeOptions averager;
  double horizon = 0;  // ν·L/T (LAWA) or ν/(1−β)/T (EMA); 0 for SWA
  std::optional<int64_t> steps_to_target;
  double best_value = 0;
  int64_t best_step = -1;
};

struct SweepResult {
  std::string metric;
  double target = 0;
  std::vector<SweepRow> rows;
  double averaging_s = 0;   // reading checkpoints and updating the bank
  double evaluation_s = 0;  // swapping averages in and evaluating them
  int64_t checkpoints = 0;
};

// Rebuilds the run from RUN_DIR's resolved config.toml (train/runner.h recorded_run_config).
// Writes RUN_DIR/sweep.jsonl (the schema of metrics.jsonl) and RUN_DIR/sweep_summary.csv.
SweepResult run_sweep(const std::string& run_dir, const SweepOptions& options);

}  // namespace wavg
