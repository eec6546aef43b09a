// run_training: resolves the run, prepares its directory, restores a state when resuming, runs the
// training loop with its callbacks (run_loop.h), and writes the final models and summary.json.
#include "wavg/train/runner.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <thread>

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

// The run as it is recorded and trained: threads in force, the bank in its canonical order
// (kBankOrder), the schedule's peak equal to optimizer.lr, every averager named.
RunConfig resolve_for_run(const RunConfig& config, const detail::LaunchEnv& env) {
  validate(config);
  check_workload_definition(config);
  WAVG_CHECK(config.batch_size % env.world == 0, "data parallel: batch_size ", config.batch_size,
             " (the global batch) does not split evenly across WORLD_SIZE=", env.world,
             " ranks; give a multiple of ", env.world);
  RunConfig c = config;
  ThreadSettings t = config.threads;
  if (env.world > 1) {  // several ranks on one host share its cores: by default 1 thread each
    const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
    const int each = std::max(1, cores / env.local_world);
    if (t.intra_op <= 0) t.intra_op = each;
    if (t.blas <= 0) t.blas = 1;
    if (t.averaging <= 0) t.averaging = each;
  }
  c.threads = apply_threads(t);
  std::stable_sort(c.averagers.begin(), c.averagers.end(),
                   [](const AveragerEntry& a, const AveragerEntry& b) {
                     return bank_rank(a.averager.scheme()) < bank_rank(b.averager.scheme());
                   });
  for (AveragerEntry& e : c.averagers)
    if (e.averager.name().empty()) e.averager.name(default_name(e.averager));
  c.schedule.lr = c.optimizer.lr;
  return c;
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
    s.models.push_back({e.averager.name(),
                        describe(e.averager, c.steps) + ", buffers " + buffer_policy_name(e.buffers),
                        std::nullopt, 0, -1});
  return s;
}

// Data parallel: whether any rank's part of the state `s` failed its checks. Every rank must have
// found the same state (one shared run directory); the decision is the same on every rank.
bool any_rank_failed(RunContext& run, const std::optional<FoundState>& s, bool failed) {
  if (run.dist == nullptr) return failed;
  const double step = s ? double(s->counters.step) : 0.0, world = double(run.dist->world());
  std::vector<double> v = {s ? 1.0 : 0.0, step, failed ? 1.0 : 0.0};
  run.dist->all_reduce(v);
  WAVG_CHECK((v[0] == 0 || v[0] == world) && v[1] == step * v[0], "resume: the ranks find ",
             "different states in ", run.config.out, "/state (is it one directory shared by all?)");
  return v[2] > 0;
}

// Resume: the newest state that is intact and fits the run on every rank (check_state). One that
// does not fit is reported and an older one tried, as for a damaged one.
std::optional<FoundState> choose_state(RunContext& run) {
  auto warn = [&](const std::string& w) {
    if (run.writer()) std::fprintf(stderr, "wavg: warning: %s\n", w.c_str());
  };
  for (int64_t before = std::numeric_limits<int64_t>::max();;) {
    std::optional<FoundState> s = find_state(run.config.out, warn, before);
    std::string why;
    try {
      if (s) check_state(*s, *run.model, run.optimizer.torch_optimizer(), run.averager,
                         run.state_group());
    } catch (const std::exception& e) {
      why = e.what();
    }
    if (!why.empty() && !run.writer())
      std::fprintf(stderr, "wavg: warning: rank %d: %s\n", run.dist->rank(), why.c_str());
    const bool failed = any_rank_failed(run, s, !why.empty());
    if (!s || !failed) return s;
    warn("state " + s->dir + " does not fit this run (" +
         (why.empty() ? "another rank's part of it" : why) + "); falling back to an older one");
    before = s->counters.step;
  }
}

// Resume: loads the chosen state, cuts metrics.jsonl back to that state and rebuilds the curves from
// it (io/metrics_log). No state: the run starts again from step 0.
std::optional<FoundState> restore(RunContext& run, const std::string& metrics_path) {
  const std::string& out = run.config.out;
  std::optional<FoundState> state = choose_state(run);
  if (!state) {
    // Killed before its first state was written (or every state is damaged): the only intact
    // point to continue from is the start, and a deterministic rerun reproduces what was lost.
    if (file_exists(metrics_path) && run.writer())
      std::fprintf(stderr, "wavg: warning: resume: no intact state in %s/state: starting the run "
                   "again from step 0\n", out.c_str());
    return state;
  }
  load_state(*state, *run.model, run.optimizer.torch_optimizer(), run.averager,
             run.state_group());
  run.step = state->counters.step;
  run.train_s = state->counters.train_wall_s;
  run.eval_s = state->counters.eval_wall_s;
  run.resumed = true;
  WAVG_CHECK(file_exists(metrics_path), "resume: ", metrics_path, " is missing");
  if (run.writer()) {
    std::error_code ec;
    std::filesystem::resize_file(metrics_path, state->counters.metrics_bytes, ec);
    WAVG_CHECK(!ec, "resume: cannot cut ", metrics_path, " back to its state (", ec.message(), ")");
  }
  if (run.dist) run.dist->barrier();  // metrics.jsonl is cut before any rank reads it
  for (const MetricRecord& r : read_metrics(metrics_path))
    for (size_t m = 0; m < run.summary.models.size(); ++m)
      if (run.summary.models[m].model == r.model) {
        run.curves[m].push_back({r.step, r.value});
        run.latest[m] = r.value;
      }
  return state;
}

// Resume (rank 0): every value that differs from the recorded run (config.toml), and the number of
// ranks where it differs from the state's, at the step the run continues from: warned about once
// (also when quiet), appended to RUN_DIR/config_changes.jsonl, and config.toml rewritten to the
// configuration in force, so that the next plain resume continues with it.
void record_changes(RunContext& run, const std::optional<FoundState>& state, int world) {
  if (!run.writer()) return;
  const std::string& out = run.config.out;
  ConfigSource source;
  std::vector<ConfigChange> changes;
  try {
    RunConfig recorded = load_run_config(run_config_path(out), {}, &source);
    recorded.out = out;
    changes = config_changes(recorded, run.config);
  } catch (const Error&) {
    source.resolved = false;  // unreadable: written anew below
  }
  const int64_t step = state ? state->counters.step : 0;
  if (state && state->counters.world_size != world)
    changes.push_back({0, "world_size", std::to_string(state->counters.world_size),
                       std::to_string(world)});
  std::string list;
  for (ConfigChange& c : changes) {
    c.step = step;
    list += (list.empty() ? "" : ", ") + describe(c);
  }
  if (!changes.empty()) {
    std::fprintf(stderr, "wavg: warning: resume at step %lld: %s; recorded in %s\n",
                 (long long)step, list.c_str(), (out + "/config_changes.jsonl").c_str());
    detail::append_config_changes(out, changes);
  }
  if (!source.resolved || !changes.empty())
    write_file_atomic(run_config_path(out), resolved_toml(run.config));
  run.summary.config_changes = detail::read_config_changes(out);
}

// The final models (raw and every non-empty average, state-dict names) and summary.json, last:
// its presence marks the run finished.
void finish(RunContext& run) {
  const RunConfig& c = run.config;
  const std::map<std::string, std::string> meta = {
      {"workload", c.workload}, {"step", std::to_string(run.step)}, {"config_hash", run.hash}};
  if (run.writer()) {
    const std::optional<EvalSwap> swap = detail::swap_in_eval_point(run);  // Schedule-Free: x
    save_module(*run.model, c.out + "/final_raw.safetensors", meta);
  }
  for (int i = 0; i < run.averager.size(); ++i) {
    if (run.averager.empty(i)) continue;
    if (run.writer())
      run.averager.save(i, c.out + "/final_" + run.averager.name(i) + ".safetensors", run.forward,
                        meta);
    else
      run.averager.swap_in(i, run.forward);  // its shard joins rank 0's all-gather
  }
  if (run.dist) run.dist->barrier();  // every rank has finished before summary.json marks the run
  if (run.writer()) detail::write_summary(c.out, run.summary);
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


// Data parallel: the same initial model on every rank (rank 0's), and each rank's bank holding its
// contiguous shard of the flat sample (DESIGN.md §8).
void join_group(detail::Distributed& dist, torch::nn::Module& model, ModelAverager& averager) {
  std::vector<torch::Tensor> state;
  for (const auto& p : model.parameters()) state.push_back(p);
  for (const auto& b : model.buffers()) state.push_back(b);
  dist.broadcast(state);
  const auto [first, count] = detail::rank_rows(averager.bank().numel(), dist.rank(), dist.world());
  averager.set_shard(first, count, [&dist](void* whole, int64_t numel, size_t elem_bytes) {
    dist.all_gather(whole, numel, elem_bytes);
  });
}

// This rank's workload: its seed, global batch size and place among the ranks.
std::unique_ptr<Workload> rank_workload(const RunConfig& c, const detail::LaunchEnv& env) {
  WorkloadOptions wo;
  wo.seed = c.seed;
  wo.batch_size = c.batch_size;
  wo.rank = env.rank;
  wo.world = env.world;
  return make_workload(c.workload, wo);
}

std::vector<AveragerSpec> averager_specs(const RunConfig& c) {
  std::vector<AveragerSpec> specs;
  for (const AveragerEntry& e : c.averagers)
    specs.emplace_back(e.averager, e.buffers, e.recompute_batches);
  return specs;
}

// metrics.jsonl, appended to on resume; the writer rank's only (others get none).
using MetricsFile = std::unique_ptr<std::FILE, int (*)(std::FILE*)>;
MetricsFile open_metrics(const std::string& path, bool writer, bool append) {
  if (!writer) return MetricsFile(nullptr, &std::fclose);
  std::FILE* f = std::fopen(path.c_str(), append ? "a" : "w");
  WAVG_CHECK(f != nullptr, "cannot write ", path, " (", std::strerror(errno), ")");
  return MetricsFile(f, &std::fclose);
}

}  // namespace

std::string run_config_path(const std::string& run_dir) { return run_dir + "/config.toml"; }

RunSummary run_training(const RunConfig& config, const RunOptions& options) {
  const detail::LaunchEnv env = detail::launch_env_from_environment();
  const RunConfig c = resolve_for_run(config, env);
  if (options.resume) {
    if (std::optional<RunSummary> done = finished_run(c.out)) {
      done->already_finished = true;  // nothing is written
      return *done;
    }
  }
  const torch::Device device = resolve_device(c.device);  // refused before anything is written
  std::unique_ptr<detail::Distributed> dist;
  if (env.world > 1) dist = std::make_unique<detail::Distributed>(env, c.dist_timeout);
  const bool writer = env.rank == 0;
  std::unique_ptr<Workload> workload = rank_workload(c, env);
  std::shared_ptr<torch::nn::Module> model = workload->model();
  model->to(device);  // initialised on the CPU (same weights on every device); batches follow it
  TrainOptimizer optimizer(c.optimizer, model->parameters());
  ModelAverager averager(model, averager_specs(c));
  averager.set_async(c.async_averaging);
  // Schedule-Free: the averagers sample its evaluation point x, from the optimizer's state.
  if (optimizer.has_eval_point())
    averager.set_sample_source([&optimizer] { return optimizer.eval_params(); });
  if (dist) join_group(*dist, *model, averager);
  // The workload (its data) is ready: now the run directory. The config comes first in a new run
  // directory, so that a run killed at any later moment can be resumed.
  if (writer) {
    detail::prepare_run_dir(c.out, options);
    if (!options.resume) write_file_atomic(run_config_path(c.out), resolved_toml(c));
  }
  if (dist) dist->barrier();  // the run directory is ready

  RunContext run(c, config_hash(c), *workload, model, optimizer, averager,
                 [&](int64_t i) { workload->forward_train_batch(i); });
  run.dist = dist.get();
  run.summary = summary_skeleton(c, *workload, run.hash);
  run.summary.averager_state_bytes_per_param = averager.bank().state_bytes_per_element();
  run.curves.resize(run.summary.models.size());
  run.latest.assign(run.summary.models.size(), NAN);
  const std::string metrics_path = c.out + "/metrics.jsonl";
  const bool quiet = options.quiet || !writer;
  const std::optional<FoundState> state =
      options.resume ? restore(run, metrics_path) : std::nullopt;
  if (options.resume) record_changes(run, state, env.world);
  const MetricsFile metrics = open_metrics(metrics_path, writer, state.has_value());
  run.metrics = metrics.get();

  if (state && !state->counters.stop_reason.empty()) {
    // Stopped after its final state was written but before summary.json: only finishing is left.
    run.stop = detail::parse_stop_reason(state->counters.stop_reason);
  } else {
    if (!state) averager.observe(0);  // the initial weights are step 0's sample
    train(run, quiet);
  }
  detail::summarize(run);
  if (run.stop != StopReason::kSignal) finish(run);
  return run.summary;
}

}  // namespace wavg
