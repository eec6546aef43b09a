// `wavg soup`: the uniform or greedy model soup (Wortsman et al. 2022) of a workload's checkpoints,
// with a table of the ingredients on stdout.
#include "wavg/study/soup.h"

#include <cmath>
#include <cstdio>
#include <memory>

#include "wavg/cli/commands.h"
#include "wavg/cli/int_flag.h"
#include "wavg/core/format.h"
#include "wavg/io/atomic_file.h"
#include "wavg/torch/threads.h"

namespace wavg::cli {

namespace {

struct SoupArgs {
  SoupOptions options;
  std::string out;
  std::vector<std::string> inputs;
};

std::string shown(double v) { return std::isnan(v) ? "-" : format_number(v, 6); }

void print_soup(const SoupResult& r, bool greedy, const std::string& out) {
  std::printf("%s soup of %s (validation %s, %s)%s\n", greedy ? "greedy" : "uniform",
              r.workload.c_str(), r.metric.c_str(),
              r.lower_is_better ? "lower is better" : "higher is better",
              r.batchnorm ? ", BatchNorm statistics recomputed for every model" : "");
  std::printf("%-40s %12s %14s %5s %12s\n", "ingredient", r.metric.c_str(), "soup with it", "kept",
              "soup after");
  for (const SoupIngredient& i : r.table) {
    std::printf("%-40s %12s %14s %5s %12s%s%s\n", i.path.c_str(), shown(i.value).c_str(),
                i.tried ? shown(i.candidate).c_str() : "-", i.kept ? "yes" : "no",
                shown(i.soup).c_str(),
                i.diverged.empty() ? "" : "  diverged: ", i.diverged.c_str());
  }
  std::printf("soup of %zu of %zu ingredients: %s %s (%lld evaluations) -> %s\n", r.kept.size(),
              r.table.size(), r.metric.c_str(), format_number(r.value, 10).c_str(),
              (long long)r.evaluations, out.c_str());
}

}  // namespace

Command register_soup(CLI::App& app) {
  auto a = std::make_shared<SoupArgs>();
  CLI::App* sub = app.add_subcommand(
      "soup",
      "Model soup (Wortsman et al. 2022): the uniform mean of a workload's checkpoints, or "
      "the greedy soup (ingredients best first, each kept if the validation metric does "
      "not get worse)");
  sub->add_option("--workload", a->options.workload, "fmnist_cnn | text_lm | synth_ctr | graph_mol | mri_recon")
      ->required();
  add_int64_option(sub, "--seed", a->options.seed, "Seed of the data stream (synthetic workloads)");
  sub->add_flag("--greedy", a->options.greedy, "Greedy soup (default: uniform soup)");
  add_int64_option(sub, "--recompute-batches", a->options.recompute_batches,
                   "BatchNorm models: training batches per recomputation of the statistics "
                   "(default 20)");
  sub->add_option("--strip-prefix", a->options.strip_prefixes,
                  "Remove this prefix from tensor names before matching (repeatable); the output "
                  "keeps the newest checkpoint's names")
      ->allow_extra_args(false);
  sub->add_flag("--overwrite", a->options.overwrite, "Replace an existing output");
  sub->add_option("-o,--output", a->out,
                  "Output in the newest (last) ingredient's form: a safetensors file or a "
                  "directory of shards and their index")
      ->required();
  sub->add_option("inputs", a->inputs,
                  "Ingredients: .safetensors files, *.safetensors.index.json, or directories")
      ->required();
  return {sub, [a] {
            apply_threads({});
            install_temporary_cleanup();
            print_soup(make_soup(a->inputs, a->out, a->options), a->options.greedy, a->out);
            return 0;
          }};
}

}  // namespace wavg::cli
