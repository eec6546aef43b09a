// run_training: resolves the run, prepares its directory, restores a state when resuming, runs the
// training loop with its callbacks (run_loop.h), and writes the final models and summary.json.
#include "wavg/train/runner.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "wavg/core/error.h"
#include "wavg/io/atomic_file.h"
#include "wavg/io/metrics_log.h"
#include "wavg/torch/device.h"
#include "wavg/train/checkpoint.h"
#include "wavg/train/run_loop.h"

namespace wavg {

namespace {

using detail::RunContext;
using detail::StopReason;

int scheme_rank(Scheme s) {
  return s == Scheme::kLawa ? 0 : s == Scheme::kEma ? 1 : s == Scheme::kSwa ? 2 : 3;
}

// The run as it is recorded and trained: threads in force, the bank in its canonical order
// (lawa, ema, swa, phema), the schedule's peak equal to optimizer.lr, every averager named.
RunConfig resolve_for_run(const RunConfig& config) {
  validate(config);
  RunConfig c = config;
  c.threads = apply_threads(config.threads);
  std::stable_sort(c.averagers.begin(), c.averagers.end(),
                   [](const AveragerEntry& a, const AveragerEntry& b) {
                     return scheme_rank(a.averager.scheme) < scheme_rank(b.averager.scheme);
                   });
  for (AveragerEntry& e : c.averagers)
    if (e.averager.name.empty()) e.averager.name = default_name(e.averager);
  c.schedule.lr = c.optimizer.lr;
  return c;
}

// Whether RUN_DIR/config.toml is missing or a raw configuration (written by an older wavg).
bool recorded_config_is_raw(const std::string& out) {
  ConfigSource source;
  try {
    load_run_config(run_config_path(out), {}, &source);
  } catch (const Error&) {
    return true;
  }
  return !source.resolved;
}

RunSummary summary_skeleton(const RunConfig& c, const Workload& w, const std::string& hash) {
  RunSummary s;
  s.workload = c.workload;
  s.metric = w.metric();
  s.lower_is_better = w.lower_is_better();
  s.target = c.target;
  s.steps = c.steps;
  s.config_hash = hash;
  s.models.push_back({"raw", "the model being trained", std::nullopt, 0, -1});
  for (const AveragerEntry& e : c.averagers)
    s.models.push_back({e.averager.name,
                        describe(e.averager, c.steps) + ", buffers " + buffer_policy_name(e.buffers),
                        std::nullopt, 0, -1});
  return s;
}

// Resume: loads the newest intact state, cuts metrics.jsonl back to that state and rebuilds the
// curves from it (io/metrics_log). No state: the run starts again from step 0.
std::optional<FoundState> restore(RunContext& run, const std::string& metrics_path, bool quiet) {
  const std::string& out = run.config.out;
  std::optional<FoundState> state = find_state(out, [](const std::string& w) {
    std::fprintf(stderr, "wavg: warning: %s\n", w.c_str());
  });
  if (!state) {
    // Killed before its first state was written (or every state is damaged): the only intact
    // point to continue from is the start, and a deterministic rerun reproduces what was lost.
    if (file_exists(metrics_path))
      std::fprintf(stderr, "wavg: warning: resume: no intact state in %s/state: starting the run "
                   "again from step 0\n", out.c_str());
    return state;
  }
  if (state->counters.config_hash != run.hash && !quiet)
    std::fprintf(stderr, "wavg: warning: resume: the configuration differs from the one the state "
                 "was written with (forced)\n");
  load_state(*state, *run.model, run.optimizer.torch_optimizer(), run.averager);
  run.step = state->counters.step;
  run.train_s = state->counters.train_wall_s;
  run.eval_s = state->counters.eval_wall_s;
  run.resumed = true;
  WAVG_CHECK(file_exists(metrics_path), "resume: ", metrics_path, " is missing");
  std::error_code ec;
  std::filesystem::resize_file(metrics_path, state->counters.metrics_bytes, ec);
  WAVG_CHECK(!ec, "resume: cannot cut ", metrics_path, " back to its state (", ec.message(), ")");
  for (const MetricRecord& r : read_metrics(metrics_path))
    for (size_t m = 0; m < run.summary.models.size(); ++m)
      if (run.summary.models[m].model == r.model) {
        run.curves[m].push_back({r.step, r.value});
        run.latest[m] = r.value;
      }
  return state;
}

// The final models (raw and every non-empty average, state-dict names) and summary.json, last:
// its presence marks the run finished.
void finish(RunContext& run) {
  const RunConfig& c = run.config;
  const std::map<std::string, std::string> meta = {
      {"workload", c.workload}, {"step", std::to_string(run.step)}, {"config_hash", run.hash}};
  save_module(*run.model, c.out + "/final_raw.safetensors", meta);
  for (int i = 0; i < run.averager.size(); ++i)
    if (!run.averager.empty(i))
      run.averager.save(i, c.out + "/final_" + run.averager.name(i) + ".safetensors", run.forward,
                        meta);
  detail::write_summary(c.out, run.summary);
}

void train(RunContext& run, bool quiet) {
  std::vector<std::unique_ptr<detail::TrainCallback>> callbacks;
  callbacks.push_back(detail::make_evaluation());
  callbacks.push_back(detail::make_progress(quiet));
  callbacks.push_back(detail::make_checkpoints());
  callbacks.push_back(detail::make_interrupt());
  callbacks.push_back(detail::make_states());
  callbacks.push_back(detail::make_early_stop());
  std::vector<detail::TrainCallback*> ptrs;
  for (auto& cb : callbacks) ptrs.push_back(cb.get());
  detail::train_loop(run, ptrs);
}

}  // namespace

std::string run_config_path(const std::string& run_dir) { return run_dir + "/config.toml"; }

RunSummary run_training(const RunConfig& config, const RunOptions& options) {
  const RunConfig c = resolve_for_run(config);
  if (options.resume) {
    if (std::optional<RunSummary> done = finished_run(c.out)) {
      done->already_finished = true;  // nothing is written
      return *done;
    }
  }
  const torch::Device device = resolve_device(c.device);  // refused before anything is written
  WorkloadOptions wo;
  wo.seed = c.seed;
  wo.batch_size = c.batch_size;
  std::unique_ptr<Workload> workload = make_workload(c.workload, wo);
  std::shared_ptr<torch::nn::Module> model = workload->model();
  model->to(device);  // initialised on the CPU (same weights on every device); batches follow it
  TrainOptimizer optimizer(c.optimizer, model->parameters());
  std::vector<AveragerSpec> specs;
  for (const AveragerEntry& e : c.averagers)
    specs.emplace_back(e.averager, e.buffers, e.recompute_batches);
  ModelAverager averager(model, specs);
  averager.set_async(c.async_averaging);
  // The workload (its data) is ready: now the run directory. The config comes first in a new run
  // directory, so that a run killed at any later moment can be resumed.
  detail::prepare_run_dir(c.out, options);
  if (!options.resume || recorded_config_is_raw(c.out))
    write_file_atomic(run_config_path(c.out), resolved_toml(c));

  RunContext run(c, config_hash(c), *workload, model, optimizer, averager,
                 [&](int64_t i) { workload->forward_train_batch(i); });
  run.summary = summary_skeleton(c, *workload, run.hash);
  run.summary.averager_state_bytes_per_param = averager.bank().state_bytes_per_element();
  run.curves.resize(run.summary.models.size());
  run.latest.assign(run.summary.models.size(), NAN);
  const std::string metrics_path = c.out + "/metrics.jsonl";
  const std::optional<FoundState> state =
      options.resume ? restore(run, metrics_path, options.quiet) : std::nullopt;
  std::FILE* metrics = std::fopen(metrics_path.c_str(), state ? "a" : "w");
  WAVG_CHECK(metrics != nullptr, "cannot write ", metrics_path, " (", std::strerror(errno), ")");
  struct Closer {
    std::FILE* f;
    ~Closer() { std::fclose(f); }
  } closer{metrics};
  run.metrics = metrics;

  if (state && !state->counters.stop_reason.empty()) {
    // Stopped after its final state was written but before summary.json: only finishing is left.
    run.stop = detail::parse_stop_reason(state->counters.stop_reason);
  } else {
    if (!state) averager.observe(0);  // the initial weights are step 0's sample
    train(run, options.quiet);
  }
  detail::summarize(run);
  if (run.stop != StopReason::kSignal) finish(run);
  return run.summary;
}

}  // namespace wavg
