// `wavg train`: runs a training configuration (TOML + --set overrides) and prints the summary.
#include <cstdio>
#include <memory>

#include "wavg/cli/commands.h"
#include "wavg/train/runner.h"

namespace wavg::cli {

namespace {
struct TrainArgs {
  std::string config;
  std::vector<std::string> sets;
  bool overwrite = false;
  bool quiet = false;
};
}  // namespace

Command register_train(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* sub = app.add_subcommand("train", "Train a workload with a bank of averagers");
  sub->add_option("--config", a->config, "TOML configuration file (see configs/)");
  sub->add_option("--set", a->sets, "Override a key: --set optimizer.lr=3e-3 (repeatable)");
  sub->add_flag("--overwrite", a->overwrite, "Replace an existing run in the run directory");
  sub->add_flag("--quiet", a->quiet, "No progress output");
  return {sub, [a] {
            const RunConfig c = load_run_config(a->config, a->sets);
            RunOptions o;
            o.overwrite = a->overwrite;
            o.quiet = a->quiet;
            const RunSummary s = run_training(c, o);
            std::printf("\n%s", format_summary(s).c_str());
            std::printf("run directory: %s (metrics.jsonl, summary.json, final_*.safetensors)\n",
                        c.out.c_str());
            return 0;
          }};
}

}  // namespace wavg::cli
