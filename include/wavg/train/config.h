// Run configuration: a TOML file (toml++) plus `--set key=value` overrides, validated into a
// RunConfig. Unknown keys and ill-typed values are errors naming the key and the value.
//
//   workload = "fmnist_cnn"        seed = 0        steps = 1500        eval_every = 50
//   target = 0.105                 out = "runs/demo"                   threads = 0
//   [optimizer]  name = "nadamw"  lr = 2e-3  beta1 = 0.9  beta2 = 0.999  eps = 1e-8  weight_decay = 0.05
//   [schedule]   kind = "cosine"  warmup = 0.05 (float: fraction of T; integer: steps)  final_fraction = 0
//   lawa = [{window = 20, every = 16}, {horizon = 0.01}]          # horizon = ν·L/T
//   ema  = [{beta = 0.9, every = 64}, {half_life = 200}]          # β = 0.5^(ν/h)
//   swa  = [{start = 0.5}]                                         # float start: fraction of T
// Each averager may also set `name`, `buffers` ("copy", "average", "recompute") and
// `recompute_batches`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "wavg/core/averager.h"
#include "wavg/core/schedule.h"
#include "wavg/torch/optim_config.h"
#include "wavg/torch/threads.h"

namespace wavg {

struct AveragerEntry {
  AveragerOptions averager;
  std::string buffers = "copy";  // copy | average | recompute
  int64_t recompute_batches = 20;
};

struct RunConfig {
  std::string workload;
  int64_t seed = 0;
  int64_t steps = 0;       // T, the step budget
  int64_t eval_every = 0;  // steps
  double target = 0;       // validation target of the workload's metric
  std::string out;         // run directory
  int64_t batch_size = 0;  // 0: the workload's default
  bool early_stop = false;  // stop once every model has reached the target
  int64_t ckpt_every = 0;   // steps between model checkpoints (for sweeps); 0 disables
  int64_t state_every = 0;  // steps between full training states (for resume); 0 disables
  int64_t keep_states = 2;  // newest full states kept
  std::optional<bool> async_averaging;  // unset: ModelAverager's default (off on CPU)
  ThreadSettings threads;
  OptimizerConfig optimizer;
  Schedule schedule;
  std::vector<AveragerEntry> averagers;
  std::string resolved_toml;  // the effective configuration, written to the run directory
};

// Keys whose values differ between two configurations, as "key (run: A, now: B)".
std::vector<std::string> config_differences(const RunConfig& run, const RunConfig& now);

// A configuration with every field at its default for `workload` (its learning rate, budget, target,
// schedule): code that builds runs (the study) starts here and sets fields, never concatenates TOML.
RunConfig default_run_config(const std::string& workload);

// Reads `path` (may be empty: defaults only), applies `sets` ("key=value", TOML values; bare words
// are taken as strings), fills workload defaults, and validates.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& sets);

}  // namespace wavg
