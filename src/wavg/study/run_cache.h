// The study's run cache: each planned run lives in its own directory; a finished one is read back
// instead of trained again, an interrupted one is resumed, and one made with another configuration
// is refused by name (never silently reused). Prints one progress line per run with an ETA.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "wavg/study/scoring.h"
#include "wavg/train/config.h"

namespace wavg::study {

// What the study reads back from a finished run directory.
struct RunRecord {
  ModelCurves curves;           // metrics.jsonl, by model
  std::string metric;           // summary.json
  bool lower_is_better = true;  // summary.json: the workload's direction
  int64_t steps_done = 0;
  double train_wall_s = 0;      // seconds of training, evaluation excluded
  double eval_wall_s = 0;       // seconds of evaluation
};

// Reads RUN_DIR/summary.json and RUN_DIR/metrics.jsonl; wavg::Error naming the file otherwise.
RunRecord read_run_record(const std::string& run_dir);

// Where a planned run stands in its directory.
enum class RunStatus {
  kAbsent,       // nothing recorded yet (or killed before its configuration was written)
  kInterrupted,  // started with this configuration, not finished
  kFinished,     // summary.json records every planned step
};
// Throws wavg::Error naming the directory and every differing key if the directory holds a run
// made with another configuration.
RunStatus run_status(const RunConfig& planned);

class RunCache {
 public:
  explicit RunCache(bool quiet) : quiet_(quiet) {}

  // Adds planned training steps of a workload (for the ETA).
  void plan(const std::string& workload, int64_t steps) { remaining_[workload] += steps; }
  // Makes sure the run of `config` is finished in config.out (training or resuming it if not)
  // and returns its record. `label` names it on the progress line.
  RunRecord ensure(const std::string& label, const RunConfig& config);

 private:
  void progress(const std::string& workload, const std::string& label, bool done_before);

  bool quiet_;
  int index_ = 0;
  std::map<std::string, double> seconds_per_step_;  // measured, by workload
  std::map<std::string, int64_t> remaining_;         // planned steps not yet done, by workload
};

}  // namespace wavg::study
