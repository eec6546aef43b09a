// `wavg train`: runs a training configuration (TOML + --set overrides), or resumes the run of a
// run directory from its resolved config.toml, and prints the summary.
#include <cstdio>
#include <memory>

#include "wavg/cli/commands.h"
#include "wavg/core/error.h"
#include "wavg/train/runner.h"

namespace wavg::cli {

namespace {
struct TrainArgs {
  std::string config;
  std::vector<std::string> sets;
  std::string resume;
  bool overwrite = false;
  bool force = false;
  bool quiet = false;
};

void warn(const std::string& s) { std::fprintf(stderr, "wavg: warning: %s\n", s.c_str()); }

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// The configuration to continue the run with: the recorded (resolved) one, with --config/--set
// applied. A difference is refused unless --force; threads may differ (warned).
RunConfig resume_config(const TrainArgs& a) {
  RunConfig run = recorded_run_config(a.resume, a.force, "resume");
  RunConfig now = load_run_config(a.config.empty() ? run_config_path(a.resume) : a.config, a.sets);
  now.out = run.out;
  std::vector<std::string> changed, refused;
  for (const auto& d : config_differences(run, now))
    (may_change_on_resume(d) ? changed : refused).push_back(d);
  if (!changed.empty()) warn("resume: " + join(changed));
  WAVG_CHECK(refused.empty() || a.force, "resume: the configuration differs from the run's: ",
             join(refused), "; pass --force to resume anyway");
  if (!refused.empty()) warn("resume --force: continuing with " + join(refused));
  now.out = a.resume;
  return now;
}

int run_train(const TrainArgs& a) {
  WAVG_CHECK(!a.config.empty() || !a.resume.empty(),
             "train: give --config FILE (or --resume RUN_DIR)");
  WAVG_CHECK(a.resume.empty() || !a.overwrite, "train: --resume and --overwrite exclude each other");
  if (!a.resume.empty()) {
    if (const auto done = finished_run(a.resume)) {
      std::printf("%s is finished (%s after %lld of %lld steps); nothing to do\n\n%s",
                  a.resume.c_str(), done->stop_reason == "early_stop" ? "early stop" : "budget",
                  (long long)done->steps_done, (long long)done->steps, format_summary(*done).c_str());
      return 0;
    }
  }
  const RunConfig c = a.resume.empty() ? load_run_config(a.config, a.sets) : resume_config(a);
  RunOptions o;
  o.overwrite = a.overwrite;
  o.resume = !a.resume.empty();
  o.quiet = a.quiet;
  const RunSummary s = run_training(c, o);
  if (s.interrupted_by) {
    std::printf("\ninterrupted at step %lld; state saved. Continue with: wavg train --resume %s\n",
                (long long)s.steps_done, c.out.c_str());
    return 128 + s.interrupted_by;
  }
  std::printf("\n%s", format_summary(s).c_str());
  std::printf("run directory: %s (config.toml, metrics.jsonl, summary.json, final_*.safetensors)\n",
              c.out.c_str());
  return 0;
}
}  // namespace

Command register_train(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* sub = app.add_subcommand("train", "Train a workload with a bank of averagers");
  sub->add_option("--config", a->config, "TOML configuration file (see configs/)");
  sub->add_option("--set", a->sets, "Override a key: --set optimizer.lr=3e-3 (repeatable)");
  sub->add_option("--resume", a->resume,
                  "Continue the run in RUN_DIR from its newest intact state");
  sub->add_flag("--force", a->force,
                "With --resume: accept a configuration that differs, or a raw (old) config.toml");
  sub->add_flag("--overwrite", a->overwrite,
                "Remove the previous run from the run directory (only files wavg wrote there)");
  sub->add_flag("--quiet", a->quiet, "No progress output");
  return {sub, [a] { return run_train(*a); }};
}

}  // namespace wavg::cli
