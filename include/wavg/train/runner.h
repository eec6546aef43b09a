// The training runner (DESIGN.md §3): trains one workload with one optimizer and schedule, a bank
// of averagers riding the trajectory; every eval_every steps evaluates the raw model and every
// averager on the validation split, appends one line per (step, model) to metrics.jsonl, and at
// the end writes the final models and summary.json (steps to target, best value, why it stopped),
// which marks the run finished: resuming a finished run changes nothing.
//
// A run directory holds only what wavg writes there (run_dir_entry_is_wavg): config.toml (the
// resolved run), metrics.jsonl, summary.json, final_*.safetensors, state/, checkpoints/, and what
// `wavg sweep` and `wavg report` add (sweep.jsonl, sweep_summary.csv, sweep_*.safetensors,
// report.html).
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
  int64_t steps = 0;        // T, the budget
  int64_t steps_done = 0;
  double train_wall_s = 0;  // training time, evaluation excluded
  double eval_wall_s = 0;
  std::vector<ModelSummary> models;  // raw first
  std::string stop_reason;  // "budget", "early_stop"; "" when interrupted
  std::string config_hash;  // config_hash() of the run
  double averager_state_bytes_per_param = 0;  // the bank's state (averages, sums, rings) / numel
  // Every value changed on a resume (--force, threads, device, dist_timeout, the number of ranks),
  // in the order made, as RUN_DIR/config_changes.jsonl holds them.
  std::vector<ConfigChange> config_changes;
  int interrupted_by = 0;   // signal that stopped the run after writing a state (SIGINT, SIGTERM)
  bool already_finished = false;  // resume found a finished run and changed nothing
};

struct RunOptions {
  bool overwrite = false;  // remove a previous run from the run directory first
  bool resume = false;     // continue from the newest intact state in the run directory
  bool quiet = false;      // no progress output
};

// Trains (or, with options.resume, continues) the run. The run directory gets resolved_toml(config)
// (threads as in force) as config.toml. A resume whose configuration differs from the recorded one
// (the caller decides what may differ: --force) or that runs on another number of ranks than its
// state was written by warns once on stderr (also when quiet), appends each change with the step
// it takes effect at to RUN_DIR/config_changes.jsonl, and rewrites config.toml to the configuration
// now in force, so that the next plain resume continues with it. A resumed run that had finished (summary.json) is returned
// as it was, with already_finished set, and nothing is written. SIGINT and SIGTERM finish the
// current step, write a state and return with interrupted_by set. A directory that already holds a
// run is refused unless resume or overwrite; overwrite refuses a directory holding anything wavg
// did not write (naming it).
RunSummary run_training(const RunConfig& config, const RunOptions& options = {});

// The configuration a run directory was started with (RUN_DIR/config.toml).
std::string run_config_path(const std::string& run_dir);

// The resolved configuration recorded in RUN_DIR/config.toml (sweep, eval and resume rebuild the run
// from it). A raw configuration (written by an older wavg, without the `[wavg] resolved` marker) is
// refused with a message starting with `what`, unless `force`: then it is resolved with today's
// defaults and a warning on stderr names every value taken from a default.
RunConfig recorded_run_config(const std::string& run_dir, bool force, const std::string& what);

// The summary of a finished run (RUN_DIR/summary.json); nullopt if it has not finished.
std::optional<RunSummary> finished_run(const std::string& run_dir);

// Whether an entry (file or directory name) of a run directory is one wavg writes there.
bool run_dir_entry_is_wavg(const std::string& name);

// The summary as an aligned text table (steps to target as % of raw, best value and its step).
std::string format_summary(const RunSummary& s);

}  // namespace wavg
