// Run configuration: a TOML file (toml++) plus `--set key=value` overrides, validated into a
// RunConfig. Unknown keys and ill-typed values are errors naming the key and the value.
//
//   workload = "fmnist_cnn"   seed = 0   steps = 1500   eval_every = 50   target = 0.105
//   out = "runs/demo"   batch_size = 128   early_stop = false   async_averaging = false
//   device = "cpu" ("cuda", "cuda:N"; with several ranks "cuda" is cuda:LOCAL_RANK)
//   ckpt_every = 50 (0 disables)   state_every = 200 (0 disables)   keep_states = 2
//   dist_timeout = 300 (seconds: data-parallel rendezvous and collectives)
//   threads = 2  (or [threads] intra_op = 2  blas = 1  averaging = 2; 0: the default)
//   [optimizer]  name = "nadamw"  lr = 2e-3  beta1 = 0.9  beta2 = 0.999  eps = 1e-8
//                weight_decay = 0.05  nesterov = true  clip_norm = 1.0 (0: no clipping)
//   [schedule]   kind = "cosine"  warmup = 0.05 (float: fraction of T; integer: steps)
//                final_fraction = 0  decay_fraction = 0.2  total_steps = 1.0 (fraction or steps)
//   lawa = [{window = 20, every = 16}, {horizon = 0.01}]          # horizon = ν·L/T
//   ema  = [{beta = 0.9, every = 64}, {half_life = 200}]          # β = 0.5^(ν/h)
//   swa  = [{start = 0.5}]                                         # float start: fraction of T
//   phema = [{sigma_rel = [0.05, 0.10], snapshot_every = 500}]    # post-hoc EMA (EDM2)
// Each averager may also set `name`, `buffers` ("copy", "average", "recompute") and
// `recompute_batches` and `eval_every` (steps; 0 or left out: the run's). Keys left out take the
// workload's defaults (workloads/defaults.h).
//
// A run directory records the RESOLVED run (resolved_toml): every effective field, horizons as the
// ν, L, β used, fractions as steps, the threads in force, under a `[wavg] resolved = true` marker,
// so that resume, sweep and eval rebuild exactly that run whatever today's defaults are.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "wavg/core/averager.h"
#include "wavg/core/schedule.h"
#include "wavg/torch/optim_config.h"
#include "wavg/torch/threads.h"

namespace wavg {

// The bank's canonical order, by scheme: the config is read, resolved_toml writes the averagers and
// run_training builds the bank in this order (each scheme's averagers in their listed order).
inline constexpr Scheme kBankOrder[] = {Scheme::kLawa, Scheme::kEma, Scheme::kSwa, Scheme::kPhema,
                                        Scheme::kLawaExp};
// The position of `s` in kBankOrder.
int bank_rank(Scheme s);

struct AveragerEntry {
  SchemeOptions averager;  // name empty: default_name()
  BufferPolicy buffers = BufferPolicy::kCopy;
  int64_t recompute_batches = 20;  // BufferPolicy::kRecompute: forward passes
  int64_t snapshot_every = 0;      // phema: steps between snapshots of its profiles
  // Steps between this average's evaluations (0: the run's eval_every). Every average is also
  // evaluated at the last step. The study evaluates the raw model and the recommended averages
  // every 1 % of the budget and the rest of the bank at ~20 points (DESIGN.md §4).
  int64_t eval_every = 0;
};

struct RunConfig {
  std::string workload;
  // The workload's definition (WorkloadDefaults::definition) the run was made under: today's for a
  // new configuration, the recorded one for a resolved file (1 where it is not written).
  int64_t workload_version = 1;
  int64_t seed = 0;
  int64_t steps = 0;        // T, the step budget
  int64_t eval_every = 0;   // steps
  double target = 0;        // validation target of the workload's metric
  std::string out;          // run directory
  int64_t batch_size = 0;   // training batch; default_run_config/load_run_config fill the default
  bool early_stop = false;  // stop once every model has reached the target
  int64_t ckpt_every = 0;   // steps between model checkpoints (for sweeps); 0 disables
  int64_t state_every = 0;  // steps between full training states (for resume); 0 disables
  int64_t keep_states = 2;  // newest full states kept
  bool async_averaging = false;  // update the bank on a worker thread (pays off off-CPU only);
                                 // default: on when device is a GPU
  std::string device = "cpu";    // "cpu", "cuda", "cuda:N" (torch/device.h); may change on resume
  // Data parallel: seconds a rank waits for the rendezvous or for a collective before it fails
  // naming the lost rank (a dead rank is usually noticed at once: its connections close).
  double dist_timeout = 300;
  ThreadSettings threads;        // 0 fields: default_threads(); the run directory records those in force
  OptimizerConfig optimizer;     // optimizer.lr is the schedule's peak (schedule.lr is not used)
  Schedule schedule;             // total_steps and warmup_steps in steps
  // The bank: resolved_toml writes it and run_training builds it in kBankOrder, whatever order
  // this vector has.
  std::vector<AveragerEntry> averagers;
};

// What load_run_config learned about where the values came from.
struct ConfigSource {
  bool resolved = false;               // the file is a resolved config ([wavg] resolved = true)
  std::vector<std::string> defaulted;  // "key = value" for every value taken from a default
};

// A configuration with every field at its default for `workload` (its learning rate, budget, target,
// batch size, schedule): code that builds runs (the study) starts here and sets fields, never
// concatenates TOML. Changing `steps` afterwards does not move schedule.total_steps/warmup_steps.
RunConfig default_run_config(const std::string& workload);

// Reads `path` (may be empty: defaults only), applies `sets` ("key=value", TOML values; bare words
// are taken as strings), fills workload defaults, and validates. `source` (optional) hears whether
// the file was resolved and which values came from defaults.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& sets,
                          ConfigSource* source = nullptr);

// Throws wavg::Error naming the key and the value of the first invalid field, or the key of a setting
// whose memory estimate does not fit in the memory available (resource_check.h) ("config:
// 'optimizer.lr' must be a finite number > 0, got nan").
void validate(const RunConfig& c);

// Throws wavg::Error unless c was made under its workload's definition of today ("config: workload
// 'mri_recon' is definition 2 in this wavg, the configuration was made under definition 1").
void check_workload_definition(const RunConfig& c);

// The resolved configuration as TOML: every effective field, `[wavg] resolved = true` and the format
// version first. load_run_config(file holding it, {}) gives back an equal configuration (same
// resolved_toml). Threads are written as given (run_training records the ones in force).
std::string resolved_toml(const RunConfig& c);

// A hash (16 hex digits, FNV-1a 64) of the resolved configuration without the keys that may change
// on resume without changing the run: threads, device and out.
std::string config_hash(const RunConfig& c);

// A value of a run that changed when it was resumed (recorded in RUN_DIR/config_changes.jsonl and
// summary.json): at `step`, `key` went from old_value to new_value (resolved TOML values as text;
// "unset" where one side lacks the key). The number of data-parallel ranks, not a config key, is
// recorded as "world_size".
struct ConfigChange {
  int64_t step = 0;
  std::string key, old_value, new_value;
};

// Keys whose resolved values differ between two configurations (step 0), compared as typed values
// key by key, in key order. Thread counts of 0 compare as the defaults they stand for
// (default_threads()).
std::vector<ConfigChange> config_changes(const RunConfig& run, const RunConfig& now);
// Whether the change's key may differ on resume (warned about and recorded, not refused), by the
// one table of config keys (src/wavg/train/config_keys.cpp): the thread counts, device (a run
// continues on another device within floating-point tolerance, not bit-identically) and
// dist_timeout.
bool may_change_on_resume(const ConfigChange& change);
// config_changes without those that may change on resume: what a resume refuses unless forced.
std::vector<ConfigChange> refused_changes(const RunConfig& run, const RunConfig& now);
// "key (run: A, now: B)"
std::string describe(const ConfigChange& change);

}  // namespace wavg
