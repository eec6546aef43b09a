// Internals of the runner: the state of a run while it trains (RunContext), the training loop, and
// the callbacks that ride it in the manner of ensmallen's callbacks (evaluation, progress,
// checkpoints, states, interruption, early stop), each with the same small interface.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "wavg/core/target.h"
#include "wavg/torch/model_averager.h"
#include "wavg/torch/optim.h"
#include "wavg/train/checkpoint.h"
#include "wavg/train/distributed.h"
#include "wavg/train/runner.h"
#include "wavg/workloads/workload.h"

namespace wavg::detail {

using Clock = std::chrono::steady_clock;
// Seconds since t0.
inline double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

enum class StopReason { kNone, kBudget, kEarlyStop, kSignal };
const char* stop_reason_name(StopReason r);  // "", "budget", "early_stop", "signal"
StopReason parse_stop_reason(const std::string& s);

// Everything a callback may read or update while the run trains.
struct RunContext {
  RunContext(const RunConfig& c, std::string h, Workload& w, std::shared_ptr<torch::nn::Module> m,
             TrainOptimizer& o, ModelAverager& a, ForwardBatch f)
      : config(c), hash(std::move(h)), workload(w), model(std::move(m)), optimizer(o), averager(a),
        forward(std::move(f)) {}
  const RunConfig& config;  // resolved: threads in force, averagers in bank order
  std::string hash;         // config_hash(config)
  Workload& workload;
  std::shared_ptr<torch::nn::Module> model;
  TrainOptimizer& optimizer;
  ModelAverager& averager;
  ForwardBatch forward;
  RunSummary summary;                           // models (raw first) with their descriptions
  std::vector<std::vector<CurvePoint>> curves;  // per model of summary.models, in step order
  std::vector<double> latest;                   // the newest value of each model (NaN: none yet)
  std::FILE* metrics = nullptr;                 // metrics.jsonl, open for appending
  int64_t step = 0;                             // updates done
  double lr = 0;                                // learning rate of the newest update
  double loss_avg = std::numeric_limits<double>::quiet_NaN();  // smoothed training loss
  double train_s = 0, eval_s = 0;               // seconds
  bool resumed = false;                         // continued from a state
  bool evaluated = false;                       // this step was evaluated
  StopReason stop = StopReason::kNone;
  int signal = 0;                               // the signal that stopped the run
  // Data parallel (null: one process): every rank trains on its rows of the global batch and
  // evaluates its rows of the split; only rank 0 prints and writes the run's shared files.
  Distributed* dist = nullptr;
  bool writer() const { return dist == nullptr || dist->rank() == 0; }
  StateGroup state_group() const;
};

class TrainCallback {
 public:
  virtual ~TrainCallback() = default;
  virtual void on_begin(RunContext& run) {}  // before the first update of this session
  virtual void on_step(RunContext& run) {}   // after the update that produced run.step
  // Asked after every step, every callback in order; the first reason other than kNone stops the
  // loop (data parallel: rank 0's reason, or a signal any rank got, on every rank).
  virtual StopReason wants_stop(RunContext& run) { return StopReason::kNone; }
  virtual void on_end(RunContext& run) {}    // the loop ended; run.stop says why
};

// The optimizer's evaluation point (Schedule-Free's x) in the module until the result dies, with
// BatchNorm statistics recomputed there; nullopt when the optimizer evaluates its parameters.
std::optional<EvalSwap> swap_in_eval_point(RunContext& run);

// Runs updates until the budget or a callback stops the run.
void train_loop(RunContext& run, const std::vector<TrainCallback*>& callbacks);

// Fills summary.models' steps to target and best values from the curves (core/target.h).
void summarize(RunContext& run);

// The callbacks of a run, in the order the runner calls them.
std::unique_ptr<TrainCallback> make_evaluation();   // every eval_every steps and at T
std::unique_ptr<TrainCallback> make_progress(bool quiet);
std::unique_ptr<TrainCallback> make_checkpoints();  // every ckpt_every steps (and step 0)
std::unique_ptr<TrainCallback> make_interrupt();    // SIGINT / SIGTERM stop after the step
std::unique_ptr<TrainCallback> make_states();       // every state_every steps, at a signal, at the end
std::unique_ptr<TrainCallback> make_early_stop();   // once every model has reached the target

// Run directory (run_dir.cpp): creates it; with overwrite, removes every entry wavg writes there
// and refuses (naming it) anything else; without resume or overwrite refuses a directory that
// already holds a run.
void prepare_run_dir(const std::string& dir, const RunOptions& options);

// summary.json (summary.cpp).
void write_summary(const std::string& run_dir, const RunSummary& s);
RunSummary read_summary(const std::string& path);
// RUN_DIR/config_changes.jsonl (summary.cpp): one JSON line per changed value {step, key, old, new},
// in the order made; appending rewrites the file atomically.
std::vector<ConfigChange> read_config_changes(const std::string& run_dir);
void append_config_changes(const std::string& run_dir, const std::vector<ConfigChange>& changes);

}  // namespace wavg::detail
