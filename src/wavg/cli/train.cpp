// `wavg train`: runs a training configuration (TOML + --set overrides) and prints the summary.
#include <cstdio>
#include <memory>

#include "wavg/cli/commands.h"
#include "wavg/core/error.h"
#include "wavg/io/atomic_file.h"
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

RunConfig resume_config(const TrainArgs& a) {
  const std::string path = run_config_path(a.resume);
  WAVG_CHECK(file_exists(path), "resume: ", a.resume,
             " holds no run (no config.toml): it was stopped before it started; start it with "
             "wavg train --config FILE --set out=",
             a.resume);
  const RunConfig run = load_run_config(path, {});
  RunConfig now = load_run_config(a.config.empty() ? path : a.config, a.sets);
  now.out = run.out;
  std::vector<std::string> diffs;
  for (const auto& d : config_differences(run, now))
    if (d.rfind("out ", 0) != 0) diffs.push_back(d);
  if (!diffs.empty() && !a.force) {
    std::string list;
    for (const auto& d : diffs) list += (list.empty() ? "" : ", ") + d;
    throw Error("resume: the configuration differs from the run's: " + list +
                "; pass --force to resume anyway");
  }
  now.out = a.resume;
  return now;
}
}  // namespace

Command register_train(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* sub = app.add_subcommand("train", "Train a workload with a bank of averagers");
  sub->add_option("--config", a->config, "TOML configuration file (see configs/)");
  sub->add_option("--set", a->sets, "Override a key: --set optimizer.lr=3e-3 (repeatable)");
  sub->add_option("--resume", a->resume,
                  "Continue the run in RUN_DIR from its newest intact state");
  sub->add_flag("--force", a->force, "With --resume: accept a configuration that differs");
  sub->add_flag("--overwrite", a->overwrite, "Replace an existing run in the run directory");
  sub->add_flag("--quiet", a->quiet, "No progress output");
  return {sub, [a] {
            WAVG_CHECK(!a->config.empty() || !a->resume.empty(),
                       "train: give --config FILE (or --resume RUN_DIR)");
            WAVG_CHECK(a->resume.empty() || !a->overwrite,
                       "train: --resume and --overwrite exclude each other");
            const RunConfig c = a->resume.empty() ? load_run_config(a->config, a->sets)
                                                  : resume_config(*a);
            RunOptions o;
            o.overwrite = a->overwrite;
            o.resume = !a->resume.empty();
            o.quiet = a->quiet;
            const RunSummary s = run_training(c, o);
            if (s.interrupted_by) {
              std::printf("\ninterrupted at step %lld; state saved. Continue with: wavg train "
                          "--resume %s\n",
                          (long long)s.steps_done, c.out.c_str());
              return 128 + s.interrupted_by;
            }
            std::printf("\n%s", format_summary(s).c_str());
            std::printf("run directory: %s (metrics.jsonl, summary.json, final_*.safetensors)\n",
                        c.out.c_str());
            return 0;
          }};
}

}  // namespace wavg::cli
