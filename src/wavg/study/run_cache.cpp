// The study's run cache (see run_cache.h).
#include "wavg/study/run_cache.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/io/atomic_file.h"
#include "wavg/io/metrics_log.h"
#include "wavg/train/runner.h"

namespace wavg::study {

namespace {

struct SummaryFields {
  std::string metric;
  bool lower_is_better = true;
  int64_t steps_done = 0;
  double train_wall_s = 0;
  double eval_wall_s = 0;
};

SummaryFields read_summary(const std::string& path) {
  std::ifstream f(path);
  WAVG_CHECK(f.good(), "study: cannot read ", path);
  try {
    const nlohmann::json j = nlohmann::json::parse(f);
    return {j.at("metric").get<std::string>(), j.at("lower_is_better").get<bool>(),
            j.at("steps_done").get<int64_t>(), j.at("train_wall_s").get<double>(),
            j.value("eval_wall_s", 0.0)};
  } catch (const nlohmann::json::exception&) {
    throw Error("study: " + path + " is not a run summary (metric, lower_is_better, steps_done, " +
                "train_wall_s)");
  }
}

}  // namespace

RunRecord read_run_record(const std::string& run_dir) {
  const SummaryFields s = read_summary(run_dir + "/summary.json");
  RunRecord r;
  r.metric = s.metric;
  r.lower_is_better = s.lower_is_better;
  r.steps_done = s.steps_done;
  r.train_wall_s = s.train_wall_s;
  r.eval_wall_s = s.eval_wall_s;
  for (ModelCurve& c : curves_by_model(read_metrics(run_dir + "/metrics.jsonl")))
    r.curves[c.model] = std::move(c.points);
  return r;
}

RunStatus run_status(const RunConfig& planned) {
  const std::string dir = planned.out;
  if (!file_exists(run_config_path(dir))) return RunStatus::kAbsent;
  // A run left by an earlier invocation is reused only if it was planned identically. Its
  // directory is this one wherever the study has moved; differences that may change on resume
  // (threads: they change the time, not the result) are the runner's rule, not refused here.
  RunConfig recorded = load_run_config(run_config_path(dir), {});
  recorded.out = planned.out;
  std::string diffs;
  for (const ConfigChange& c : refused_changes(recorded, planned))
    diffs += (diffs.empty() ? "" : ", ") + describe(c);
  WAVG_CHECK(diffs.empty(), "study: ", dir, " was made with another configuration (", diffs,
             "); use a new --out or remove that run");
  if (!file_exists(dir + "/summary.json")) return RunStatus::kInterrupted;
  try {
    return read_summary(dir + "/summary.json").steps_done == planned.steps ? RunStatus::kFinished
                                                                            : RunStatus::kInterrupted;
  } catch (const Error&) {  // a summary torn by a crash: the run is redone from its state
    return RunStatus::kInterrupted;
  }
}

RunRecord RunCache::ensure(const std::string& label, const RunConfig& config) {
  ++index_;
  const RunStatus status = run_status(config);
  if (status != RunStatus::kFinished) {
    const auto t0 = std::chrono::steady_clock::now();
    RunOptions o;
    o.quiet = true;
    o.resume = status == RunStatus::kInterrupted && file_exists(config.out + "/state");
    o.overwrite = !o.resume;  // absent, or started without a state yet: start it from step 0
    const RunSummary s = run_training(config, o);
    WAVG_CHECK(!s.interrupted_by, "study: interrupted; run the same command again to continue");
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    seconds_per_step_[config.workload] = seconds / double(config.steps);
  }
  remaining_[config.workload] -= config.steps;
  progress(config.workload, label, status == RunStatus::kFinished);
  return read_run_record(config.out);
}

void RunCache::progress(const std::string& workload, const std::string& label, bool done_before) {
  if (quiet_) return;
  double eta = 0;  // seconds; 0.05 s per step for a workload not measured yet
  for (const auto& [w, steps] : remaining_) {
    const auto it = seconds_per_step_.find(w);
    eta += double(steps) * (it == seconds_per_step_.end() ? 0.05 : it->second);
  }
  std::printf("[%3d] %-10s %-28s %s   ETA %s\n", index_, workload.c_str(), label.c_str(),
              done_before ? "(done before)" : "done", format_duration(eta).c_str());
  std::fflush(stdout);
}

}  // namespace wavg::study
