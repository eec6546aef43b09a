// The callbacks of the training loop (train_loop.cpp): evaluation, progress, checkpoints, states,
// interruption and early stop (see run_loop.h).
#include <torch/torch.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>

#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/io/metrics_log.h"
#include "wavg/train/checkpoint.h"
#include "wavg/train/run_loop.h"

namespace wavg::detail {

namespace {

bool eval_step(const RunContext& run, int64_t every) {
  return run.step % every == 0 || run.step == run.config.steps;
}

// Steps between evaluations of model m (0: the raw model; i + 1: averager i in bank order).
int64_t eval_interval(const RunContext& run, size_t m) {
  if (m == 0) return run.config.eval_every;
  const int64_t e = run.config.averagers[m - 1].eval_every;
  return e > 0 ? e : run.config.eval_every;
}

// The raw model and every non-empty average due at this step on the validation split; one metrics
// line each. Each model has its own interval (AveragerEntry::eval_every); run.evaluated says whether
// the raw model was evaluated.
class EvaluationCallback : public TrainCallback {
 public:
  void on_step(RunContext& run) override {
    run.evaluated = eval_step(run, eval_interval(run, 0));
    bool any = run.evaluated;
    for (size_t m = 1; m < run.summary.models.size() && !any; ++m)
      any = eval_step(run, eval_interval(run, m));
    if (!any) return;
    const auto e0 = Clock::now();
    run.averager.wait();
    for (size_t m = 0; m < run.summary.models.size(); ++m) {
      if (!eval_step(run, eval_interval(run, m))) continue;
      Evaluation ev;
      if (m == 0) {
        const std::optional<EvalSwap> swap = swap_in_eval_point(run);
        ev = evaluate(run);
      } else {
        const int i = int(m) - 1;
        if (run.averager.empty(i)) continue;
        EvalSwap swap = run.averager.swap_in(i, run.forward);
        ev = evaluate(run);
      }
      record(run, m, ev);
    }
    if (run.writer()) std::fflush(run.metrics);
    run.eval_s += since(e0);
  }

 private:
  // The validation metric; data parallel: each rank's sufficient statistics summed over ranks, and
  // for a metric that needs every row (average precision) the rows of all ranks, gathered.
  static Evaluation evaluate(RunContext& run) {
    Evaluation ev = run.workload.evaluate(Split::kValidation);
    if (!run.dist) return ev;
    std::vector<double> sums = {ev.metric_sum, ev.loss_sum, ev.count};
    run.dist->all_reduce(sums);
    WAVG_CHECK(sums[2] > 0, "data parallel: workload '", run.config.workload,
               "' reports no sufficient statistics for its validation metric");
    Evaluation all{sums[0] / sums[2], sums[1] / sums[2], sums[0], sums[1], sums[2], {}};
    if (run.workload.metric_needs_all_rows())
      all.value = run.workload.metric_of_rows(run.dist->all_gather_concat(ev.rows));
    return all;
  }

  // Every rank keeps the curves (the values are all-reduced: the same on every rank); rank 0 writes.
  static void record(RunContext& run, size_t m, const Evaluation& ev) {
    run.latest[m] = ev.value;
    run.curves[m].push_back({run.step, ev.value});
    if (!run.writer()) return;
    MetricRecord r;
    r.step = run.step;
    r.model = run.summary.models[m].model;
    r.metric = run.summary.metric;
    r.value = ev.value;
    r.loss = ev.loss;
    r.lr = run.lr;
    r.train_wall_s = run.train_s;
    std::fprintf(run.metrics, "%s\n", metrics_line(r).c_str());
  }
};

// The run's header, then one line (or a bar on a terminal) per evaluation.
class ProgressCallback : public TrainCallback {
 public:
  explicit ProgressCallback(bool quiet) : quiet_(quiet), tty_(!quiet && ::isatty(STDOUT_FILENO)) {}

  void on_begin(RunContext& run) override {
    wall0_ = Clock::now();
    first_step_ = run.step;
    if (quiet_) return;
    const RunConfig& c = run.config;
    std::printf("wavg train: %s, %s lr=%s wd=%s, %s schedule (warmup %lld, final %s), T=%lld, "
                "batch %lld, seed %lld\n%s\n",
                c.workload.c_str(), c.optimizer.name.c_str(), format_number(c.optimizer.lr).c_str(),
                format_number(c.optimizer.weight_decay).c_str(), schedule_kind_name(c.schedule.kind),
                (long long)c.schedule.warmup_steps, format_number(c.schedule.final_fraction, 3).c_str(),
                (long long)c.steps, (long long)c.batch_size, (long long)c.seed,
                describe(c.threads).c_str());
    for (size_t i = 1; i < run.summary.models.size(); ++i)
      std::printf("  averager %s\n", run.summary.models[i].description.c_str());
    std::printf("  target: validation %s %s %s\n", run.summary.metric.c_str(),
                run.summary.lower_is_better ? "<=" : ">=", format_number(c.target).c_str());
    if (run.resumed) std::printf("resuming %s at step %lld\n", c.out.c_str(), (long long)run.step);
    std::fflush(stdout);
  }

  void on_step(RunContext& run) override {
    if (quiet_ || !run.evaluated) return;
    const int64_t T = run.config.steps;
    const double eta = since(wall0_) / double(run.step - first_step_) * double(T - run.step);
    std::string vals;
    for (size_t m = 0; m < run.summary.models.size() && m < 4; ++m)
      vals += " " + run.summary.models[m].model + " " + format_number(run.latest[m]);
    if (tty_) {
      const int width = 24, filled = int(double(width) * double(run.step) / double(T));
      std::printf("\r[%s%s] %lld/%lld ETA %s loss %s |%s   ",
                  std::string(size_t(filled), '#').c_str(),
                  std::string(size_t(width - filled), '.').c_str(), (long long)run.step,
                  (long long)T, format_duration(eta).c_str(),
                  format_fixed(run.loss_avg, 4).c_str(), vals.c_str());
    } else {
      std::printf("step %lld/%lld  ETA %s  loss %s  val%s\n", (long long)run.step, (long long)T,
                  format_duration(eta).c_str(), format_fixed(run.loss_avg, 4).c_str(), vals.c_str());
    }
    std::fflush(stdout);
  }

  void on_end(RunContext&) override {
    if (tty_) std::printf("\n");
  }

 private:
  bool quiet_, tty_;
  Clock::time_point wall0_;
  int64_t first_step_ = 0;
};

// The model every ckpt_every steps (and the initial weights), for offline sweeps.
class CheckpointCallback : public TrainCallback {
 public:
  void on_begin(RunContext& run) override {
    if (!run.resumed && run.config.ckpt_every > 0 && run.writer()) save(run);
  }
  void on_step(RunContext& run) override {
    if (run.config.ckpt_every > 0 && run.step % run.config.ckpt_every == 0 && run.writer())
      save(run);
    save_phema_snapshots(run);
  }

 private:
  // Post-hoc EMA (EDM2): every snapshot_every steps, each profile of each phema averager as a
  // model file RUN_DIR/phema/NAME/NAME-STEP-SIGMA.safetensors (written atomically), its step and
  // σ_rel in the metadata, for `wavg phema`.
  static void save_phema_snapshots(RunContext& run) {
    for (int i = 0; i < run.averager.size(); ++i) {
      const AveragerEntry& e = run.config.averagers.at(size_t(i));
      const PhemaOptions* o = e.averager.as<PhemaOptions>();
      if (!o || run.step % e.snapshot_every != 0 || run.averager.empty(i)) continue;
      const std::string dir = run.config.out + "/phema/" + run.averager.name(i);
      if (run.writer()) std::filesystem::create_directories(dir);
      for (size_t p = 0; p < o->sigma_rels().size(); ++p) {
        if (!run.writer()) {  // data parallel: this rank's shard joins rank 0's all-gather
          run.averager.swap_in(i, run.forward, int(p));
          continue;
        }
        char step[32];
        std::snprintf(step, sizeof step, "%08lld", (long long)run.step);
        const std::string sigma = format_number(o->sigma_rels()[p], 6);
        run.averager.save(i, dir + "/" + run.averager.name(i) + "-" + step + "-" + sigma +
                                 ".safetensors",
                          run.forward,
                          {{"workload", run.config.workload},
                           {"config_hash", run.hash},
                           {"step", std::to_string(run.step)},
                           {"wavg.phema.averager", run.averager.name(i)},
                           {"wavg.phema.sigma_rel", format_exact(o->sigma_rels()[p])},
                           {"wavg.phema.every", std::to_string(o->every())}},
                          int(p));
      }
    }
  }

  static void save(RunContext& run) {
    const std::optional<EvalSwap> swap = swap_in_eval_point(run);
    std::filesystem::create_directories(run.config.out + "/checkpoints");
    save_module(*run.model, model_checkpoint_path(run.config.out, run.step),
                {{"workload", run.config.workload},
                 {"config_hash", run.hash},
                 {"step", std::to_string(run.step)}});
  }
};

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) { g_signal.store(sig); }

// SIGINT and SIGTERM, while the loop runs, stop it after the current step.
class InterruptCallback : public TrainCallback {
 public:
  void on_begin(RunContext&) override {
    g_signal.store(0);
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, &old_int_);
    ::sigaction(SIGTERM, &sa, &old_term_);
    installed_ = true;
  }
  StopReason wants_stop(RunContext& run) override {
    run.signal = g_signal.load();  // data parallel: agree_stop tells every rank
    return run.signal != 0 ? StopReason::kSignal : StopReason::kNone;
  }
  void on_end(RunContext&) override { restore(); }
  ~InterruptCallback() override { restore(); }

 private:
  void restore() {
    if (!installed_) return;
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
    installed_ = false;
  }
  struct sigaction old_int_ {}, old_term_ {};
  bool installed_ = false;
};

// Full training states: every state_every steps before T, at a signal, and at the end (recording
// why the run stopped, so that a resume knows it finished).
class StateCallback : public TrainCallback {
 public:
  void on_step(RunContext& run) override {
    const RunConfig& c = run.config;
    if (c.state_every > 0 && run.step % c.state_every == 0 && run.step < c.steps) write(run);
  }
  void on_end(RunContext& run) override {
    if (run.stop == StopReason::kSignal) {
      if (written_step_ != run.step) write(run);
    } else if (run.config.state_every > 0 || run.config.ckpt_every > 0) {
      write(run);
    }
  }

 private:
  void write(RunContext& run) {
    run.averager.wait();
    StateCounters sc;
    if (run.writer()) {
      std::fflush(run.metrics);
      ::fsync(::fileno(run.metrics));
      sc.metrics_bytes = uint64_t(std::ftell(run.metrics));
    }
    sc.step = run.step;
    sc.train_wall_s = run.train_s;
    sc.eval_wall_s = run.eval_s;
    sc.config_hash = run.hash;
    if (run.stop == StopReason::kBudget || run.stop == StopReason::kEarlyStop)
      sc.stop_reason = stop_reason_name(run.stop);
    save_state(run.config.out, sc, *run.model, run.optimizer.torch_optimizer(), run.averager,
               run.state_group());
    if (run.writer()) prune_states(run.config.out, run.config.keep_states);
    written_step_ = run.step;
  }
  int64_t written_step_ = -1;
};

// With early_stop: stops before T once every model has reached the target.
class EarlyStopCallback : public TrainCallback {
 public:
  StopReason wants_stop(RunContext& run) override {
    if (!run.config.early_stop || !run.evaluated || run.step >= run.config.steps)
      return StopReason::kNone;
    const bool lower = run.summary.lower_is_better;
    for (const auto& curve : run.curves)
      if (!steps_to_target(curve, run.config.target, lower)) return StopReason::kNone;
    return StopReason::kEarlyStop;
  }
};

}  // namespace

std::unique_ptr<TrainCallback> make_evaluation() { return std::make_unique<EvaluationCallback>(); }
std::unique_ptr<TrainCallback> make_progress(bool quiet) {
  return std::make_unique<ProgressCallback>(quiet);
}
std::unique_ptr<TrainCallback> make_checkpoints() { return std::make_unique<CheckpointCallback>(); }
std::unique_ptr<TrainCallback> make_interrupt() { return std::make_unique<InterruptCallback>(); }
std::unique_ptr<TrainCallback> make_states() { return std::make_unique<StateCallback>(); }
std::unique_ptr<TrainCallback> make_early_stop() { return std::make_unique<EarlyStopCallback>(); }

}  // namespace wavg::detail
