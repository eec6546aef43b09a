// The training loop, evaluation of the bank, metrics, summary and progress display.
#include "wavg/train/runner.h"

#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "wavg/core/error.h"
#include "wavg/io/atomic_file.h"
#include "wavg/torch/model_averager.h"
#include "wavg/train/checkpoint.h"
#include "wavg/torch/optim.h"
#include "wavg/workloads/workload.h"

namespace wavg {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void make_dirs(const std::string& path) {
  std::string partial;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      if (!partial.empty() && ::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST)
        throw Error("cannot create directory " + partial + " (" + std::strerror(errno) + ")");
    }
    if (i < path.size()) partial += path[i];
  }
}

std::string format_duration(double s) {
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.0fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, int(s) % 3600 / 60);
  return buf;
}

bool reached(double value, double target, bool lower_is_better) {
  return lower_is_better ? value <= target : value >= target;
}

void record(RunSummary& s, size_t m, int64_t step, double value) {
  ModelSummary& ms = s.models[m];
  if (ms.best_step < 0 || (s.lower_is_better ? value < ms.best_value : value > ms.best_value)) {
    ms.best_value = value;
    ms.best_step = step;
  }
  if (!ms.steps_to_target && reached(value, s.target, s.lower_is_better)) ms.steps_to_target = step;
}

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) { g_signal.store(sig); }

// Installs SIGINT/SIGTERM handlers for the run's lifetime.
struct SignalScope {
  struct sigaction old_int, old_term;
  SignalScope() {
    g_signal.store(0);
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, &old_int);
    ::sigaction(SIGTERM, &sa, &old_term);
  }
  ~SignalScope() {
    ::sigaction(SIGINT, &old_int, nullptr);
    ::sigaction(SIGTERM, &old_term, nullptr);
  }
};

}  // namespace

std::string run_config_path(const std::string& run_dir) { return run_dir + "/config.toml"; }

RunSummary run_training(const RunConfig& c, const RunOptions& options) {
  const ThreadSettings threads = apply_threads(c.threads);
  make_dirs(c.out);
  const std::string metrics_path = c.out + "/metrics.jsonl";
  WAVG_CHECK(options.resume || options.overwrite || !file_exists(metrics_path), "run directory ",
             c.out, " already holds a run (metrics.jsonl); resume it with --resume ", c.out,
             ", or choose another 'out', or pass --overwrite");
  const std::string config_hash = std::to_string(crc32_of(c.resolved_toml));
  std::optional<FoundState> state;
  if (options.resume) {
    state = find_state(c.out, [&](const std::string& w) {
      std::fprintf(stderr, "wavg: warning: %s\n", w.c_str());
    });
    // Killed before its first state was written (or every state is damaged): the only intact
    // point to continue from is the start, and a deterministic rerun reproduces what was lost.
    if (!state && file_exists(metrics_path))
      std::fprintf(stderr,
                   "wavg: warning: resume: no intact state in %s/state: starting the run again "
                   "from step 0\n",
                   c.out.c_str());
  } else {
    if (options.overwrite) std::system(("rm -rf '" + c.out + "/state' '" + c.out + "/checkpoints'").c_str());
    // First thing in a new run directory, so that a run killed at any later moment can be resumed.
    write_file_atomic(run_config_path(c.out), c.resolved_toml + "\n");
  }

  WorkloadOptions wo;
  wo.seed = c.seed;
  wo.batch_size = c.batch_size;
  std::unique_ptr<Workload> workload = make_workload(c.workload, wo);
  std::shared_ptr<torch::nn::Module> model = workload->model();
  TrainOptimizer optimizer(c.optimizer, model->parameters());

  std::vector<AveragerSpec> specs;
  for (const AveragerEntry& e : c.averagers)
    specs.emplace_back(e.averager, parse_buffer_policy(e.buffers), e.recompute_batches);
  ModelAverager averager(model, specs);
  if (c.async_averaging) averager.set_async(*c.async_averaging);
  const ForwardBatch forward = [&](int64_t i) { workload->forward_train_batch(i); };

  RunSummary summary;
  summary.workload = c.workload;
  summary.metric = workload->metric();
  summary.lower_is_better = workload->lower_is_better();
  summary.target = c.target;
  summary.models.push_back({"raw", "the model being trained", std::nullopt, 0, -1});
  for (int i = 0; i < averager.size(); ++i)
    summary.models.push_back({averager.name(i),
                              describe(c.averagers[size_t(i)].averager, c.steps) + ", buffers " +
                                  c.averagers[size_t(i)].buffers,
                              std::nullopt, 0, -1});

  int64_t step = 0;
  double train_s = 0, eval_s = 0;
  if (state) {
    if (state->counters.config_hash != config_hash && !options.quiet)
      std::printf("resume: the configuration differs from the run's (forced)\n");
    load_state(*state, *model, optimizer.torch_optimizer(), averager);
    step = state->counters.step;
    train_s = state->counters.train_wall_s;
    eval_s = state->counters.eval_wall_s;
    // Keep the metrics written up to the state, and rebuild the summary from them.
    WAVG_CHECK(::truncate(metrics_path.c_str(), off_t(state->counters.metrics_bytes)) == 0,
               "resume: cannot truncate ", metrics_path, " (", std::strerror(errno), ")");
    std::ifstream in(metrics_path);
    std::string line;
    while (std::getline(in, line)) {
      const auto j = nlohmann::json::parse(line);
      for (size_t m = 0; m < summary.models.size(); ++m)
        if (summary.models[m].model == j.at("model").get<std::string>())
          record(summary, m, j.at("step").get<int64_t>(), j.at("value").get<double>());
    }
    if (!options.quiet) std::printf("resuming %s at step %lld\n", c.out.c_str(), (long long)step);
  }
  std::FILE* metrics = std::fopen(metrics_path.c_str(), state ? "a" : "w");
  WAVG_CHECK(metrics != nullptr, "cannot write ", metrics_path, " (", std::strerror(errno), ")");
  struct Closer {
    std::FILE* f;
    ~Closer() { std::fclose(f); }
  } closer{metrics};

  const bool tty = !options.quiet && ::isatty(STDOUT_FILENO);
  if (!options.quiet) {
    std::printf("wavg train: %s, %s lr=%g wd=%g, %s schedule (warmup %lld, final %.3g), T=%lld, "
                "seed %lld\n%s\n",
                c.workload.c_str(), c.optimizer.name.c_str(), c.optimizer.lr,
                c.optimizer.weight_decay, schedule_kind_name(c.schedule.kind),
                (long long)c.schedule.warmup_steps, c.schedule.final_fraction,
                (long long)c.steps, (long long)c.seed, describe(threads).c_str());
    for (size_t i = 1; i < summary.models.size(); ++i)
      std::printf("  averager %s\n", summary.models[i].description.c_str());
    std::printf("  target: validation %s %s %g\n", summary.metric.c_str(),
                summary.lower_is_better ? "<=" : ">=", c.target);
    std::fflush(stdout);
  }

  const std::map<std::string, std::string> ckpt_meta = {{"workload", c.workload},
                                                        {"config_hash", config_hash}};
  auto save_checkpoint = [&] {
    auto meta = ckpt_meta;
    meta["step"] = std::to_string(step);
    make_dirs(c.out + "/checkpoints");
    save_module(*model, model_checkpoint_path(c.out, step), meta);
  };
  auto write_state = [&] {
    std::fflush(metrics);
    ::fsync(::fileno(metrics));
    StateCounters sc;
    sc.step = step;
    sc.train_wall_s = train_s;
    sc.eval_wall_s = eval_s;
    sc.metrics_bytes = uint64_t(std::ftell(metrics));
    sc.config_hash = config_hash;
    save_state(c.out, sc, *model, optimizer.torch_optimizer(), averager);
    prune_states(c.out, c.keep_states);
  };
  SignalScope signals;

  if (!state) {
    averager.observe(0);  // the initial weights are step 0's sample
    if (c.ckpt_every > 0) save_checkpoint();
  }
  double loss_avg = NAN;
  std::vector<double> latest(summary.models.size(), NAN);
  const auto wall0 = Clock::now();
  const int64_t first_step = step;
  for (; step < c.steps;) {
    const auto t0 = Clock::now();
    const double lr = lr_at(c.schedule, step);
    optimizer.zero_grad();
    torch::Tensor loss = workload->train_loss(step);
    loss.backward();
    optimizer.step(lr);
    ++step;
    averager.observe(step);
    train_s += since(t0);
    const double l = loss.item<double>();
    WAVG_CHECK(std::isfinite(l), "training diverged: loss is ", l, " at step ", step,
               " (lower the learning rate?)");
    loss_avg = std::isnan(loss_avg) ? l : 0.95 * loss_avg + 0.05 * l;

    if (step % c.eval_every == 0 || step == c.steps) {
      const auto e0 = Clock::now();
      averager.wait();
      for (size_t m = 0; m < summary.models.size(); ++m) {
        Evaluation ev;
        if (m == 0) {
          ev = workload->evaluate(Split::kValidation);
        } else {
          const int i = int(m) - 1;
          if (averager.empty(i)) continue;
          EvalSwap swap = averager.swap_in(i, forward);
          ev = workload->evaluate(Split::kValidation);
        }
        const ModelSummary& ms = summary.models[m];
        latest[m] = ev.value;
        record(summary, m, step, ev.value);
        nlohmann::ordered_json line = {{"step", step},
                                       {"model", ms.model},
                                       {"metric", summary.metric},
                                       {"value", ev.value},
                                       {"loss", ev.loss},
                                       {"lr", lr},
                                       {"train_wall_s", train_s}};
        std::fprintf(metrics, "%s\n", line.dump().c_str());
      }
      std::fflush(metrics);
      eval_s += since(e0);
      if (!options.quiet) {
        const double eta = since(wall0) / double(step - first_step) * double(c.steps - step);
        std::string vals;
        for (size_t m = 0; m < summary.models.size() && m < 4; ++m) {
          char buf[64];
          std::snprintf(buf, sizeof buf, " %s %.4g", summary.models[m].model.c_str(), latest[m]);
          vals += buf;
        }
        if (tty) {
          const int width = 24, filled = int(double(width) * double(step) / double(c.steps));
          std::printf("\r[%s%s] %lld/%lld ETA %s loss %.4f |%s   ",
                      std::string(size_t(filled), '#').c_str(),
                      std::string(size_t(width - filled), '.').c_str(), (long long)step,
                      (long long)c.steps, format_duration(eta).c_str(), loss_avg, vals.c_str());
        } else {
          std::printf("step %lld/%lld  ETA %s  loss %.4f  val%s\n", (long long)step,
                      (long long)c.steps, format_duration(eta).c_str(), loss_avg, vals.c_str());
        }
        std::fflush(stdout);
      }
    }
    if (c.ckpt_every > 0 && step % c.ckpt_every == 0) save_checkpoint();
    if (g_signal.load() != 0) {
      write_state();
      if (tty) std::printf("\n");
      summary.interrupted_by = g_signal.load();
      summary.steps_done = step;
      summary.train_wall_s = train_s;
      summary.eval_wall_s = eval_s;
      return summary;
    }
    if (c.state_every > 0 && step % c.state_every == 0 && step < c.steps) write_state();
    if (c.early_stop && (step % c.eval_every == 0 || step == c.steps)) {
      bool all = true;
      for (const auto& ms : summary.models) all &= ms.steps_to_target.has_value();
      if (all) break;
    }
  }
  if (tty) std::printf("\n");
  averager.wait();
  if (c.state_every > 0 || c.ckpt_every > 0) write_state();  // resuming a finished run is a no-op
  summary.steps_done = step;
  summary.train_wall_s = train_s;
  summary.eval_wall_s = eval_s;

  // Final models: the raw one and every non-empty average, with state-dict names.
  const std::map<std::string, std::string> meta = {{"workload", c.workload},
                                                   {"step", std::to_string(step)}};
  save_module(*model, c.out + "/final_raw.safetensors", meta);
  for (int i = 0; i < averager.size(); ++i)
    if (!averager.empty(i))
      averager.save(i, c.out + "/final_" + averager.name(i) + ".safetensors", forward, meta);

  nlohmann::ordered_json js;
  js["workload"] = summary.workload;
  js["metric"] = summary.metric;
  js["lower_is_better"] = summary.lower_is_better;
  js["target"] = summary.target;
  js["steps"] = c.steps;
  js["steps_done"] = summary.steps_done;
  js["train_wall_s"] = summary.train_wall_s;
  js["eval_wall_s"] = summary.eval_wall_s;
  js["models"] = nlohmann::ordered_json::array();
  for (const auto& ms : summary.models) {
    nlohmann::ordered_json m;
    m["model"] = ms.model;
    m["description"] = ms.description;
    m["steps_to_target"] = ms.steps_to_target ? nlohmann::ordered_json(*ms.steps_to_target)
                                              : nlohmann::ordered_json(nullptr);
    m["best_value"] = ms.best_step >= 0 ? nlohmann::ordered_json(ms.best_value)
                                        : nlohmann::ordered_json(nullptr);
    m["best_step"] = ms.best_step;
    js["models"].push_back(m);
  }
  write_file_atomic(c.out + "/summary.json", js.dump(2) + "\n");
  return summary;
}

std::string format_summary(const RunSummary& s) {
  std::string out;
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-22s %16s %10s   best %s (step)\n", "model", "steps to target",
                "% of raw", s.metric.c_str());
  out += buf;
  const auto& raw = s.models.front();
  for (const auto& m : s.models) {
    std::string stt = m.steps_to_target ? std::to_string(*m.steps_to_target) : "not reached";
    std::string pct = "-";
    if (m.steps_to_target && raw.steps_to_target) {
      std::snprintf(buf, sizeof buf, "%.1f", 100.0 * double(*m.steps_to_target) /
                                                 double(*raw.steps_to_target));
      pct = buf;
    }
    std::string best = "-";
    if (m.best_step >= 0) {
      std::snprintf(buf, sizeof buf, "%.4f (%lld)", m.best_value, (long long)m.best_step);
      best = buf;
    }
    std::snprintf(buf, sizeof buf, "%-22s %16s %10s   %s\n", m.model.c_str(), stt.c_str(),
                  pct.c_str(), best.c_str());
    out += buf;
  }
  std::snprintf(buf, sizeof buf,
                "target: %s %s %g; %lld steps, %.1f s training + %.1f s evaluation\n",
                s.metric.c_str(), s.lower_is_better ? "<=" : ">=", s.target,
                (long long)s.steps_done, s.train_wall_s, s.eval_wall_s);
  out += buf;
  return out;
}

}  // namespace wavg
