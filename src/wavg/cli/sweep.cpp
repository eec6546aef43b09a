// `wavg sweep` (offline grids of averagers over a run's checkpoints) and `wavg eval` (evaluate any
// safetensors checkpoint of a workload's model).
#include <cstdio>
#include <memory>

#include "wavg/cli/commands.h"
#include "wavg/cli/int_flag.h"
#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/study/report.h"
#include "wavg/study/study.h"
#include "wavg/study/sweep.h"
#include "wavg/torch/model_averager.h"
#include "wavg/torch/threads.h"
#include "wavg/train/runner.h"
#include "wavg/workloads/workload.h"

namespace wavg::cli {

namespace {
struct SweepArgs {
  std::string run_dir;
  std::vector<std::string> lawa, ema, swa, save;
  std::string buffers = "average";
  bool quiet = false;
  bool force = false;
};
struct EvalArgs {
  std::string checkpoint, workload, run_dir, split = "validation";
  int64_t seed = 0;
  bool force = false;
  std::vector<std::string> strip_prefixes;
};

void print_sweep(const SweepResult& r, const std::string& run_dir) {
  std::printf("%-24s %10s %16s   best %s (step)\n", "setting", "horizon", "steps to target",
              r.metric.c_str());
  for (const auto& row : r.rows)
    std::printf("%-24s %9.2f%% %16s   %s (%lld)\n", row.averager.name().c_str(), 100 * row.horizon,
                row.steps_to_target ? std::to_string(*row.steps_to_target).c_str() : "not reached",
                format_fixed(row.best_value, 4).c_str(), (long long)row.best_step);
  std::printf("%zu settings over %lld checkpoints: averaging %.2f s, evaluation %.2f s "
              "(averaging %.1f%% of the sweep)\nwrote %s/sweep.jsonl and %s/sweep_summary.csv\n",
              r.rows.size(), (long long)r.checkpoints, r.averaging_s, r.evaluation_s,
              100 * r.averaging_s / (r.averaging_s + r.evaluation_s), run_dir.c_str(),
              run_dir.c_str());
}

int run_sweep_command(const SweepArgs& a) {
  SweepOptions o;
  for (auto [tokens, scheme] : {std::pair{&a.lawa, Scheme::kLawa}, std::pair{&a.ema, Scheme::kEma},
                                std::pair{&a.swa, Scheme::kSwa}})
    if (!tokens->empty()) {
      auto g = parse_grid(scheme, *tokens);
      o.grid.insert(o.grid.end(), g.begin(), g.end());
    }
  o.buffers = parse_buffer_policy(a.buffers);
  o.save = a.save;
  o.quiet = a.quiet;
  o.force = a.force;
  print_sweep(run_sweep(a.run_dir, o), a.run_dir);
  return 0;
}

// Evaluates a checkpoint of the workload given by --workload/--seed, or of the run in --run (its
// resolved config.toml: workload, seed, batch size).
int run_eval(const EvalArgs& a, bool workload_given, bool seed_given) {
  WAVG_CHECK(workload_given != !a.run_dir.empty(), "eval: give exactly one of --workload NAME or ",
             "--run RUN_DIR");
  WAVG_CHECK(a.run_dir.empty() || !seed_given, "eval: --seed comes from the run with --run");
  const Split split = parse_split(a.split);
  apply_threads({});
  WorkloadOptions wo;
  std::string workload = a.workload;
  wo.seed = a.seed;
  if (!a.run_dir.empty()) {
    const RunConfig c = recorded_run_config(a.run_dir, a.force, "eval");
    workload = c.workload;
    wo.seed = c.seed;
    wo.batch_size = c.batch_size;
  }
  auto w = make_workload(workload, wo);
  load_module(*w->model(), a.checkpoint, a.strip_prefixes);
  const Evaluation ev = w->evaluate(split);
  std::printf("%s %s %s %.10g loss %.10g\n", workload.c_str(), a.split.c_str(),
              w->metric().c_str(), ev.value, ev.loss);
  return 0;
}
}  // namespace

Command register_sweep(CLI::App& app) {
  auto a = std::make_shared<SweepArgs>();
  CLI::App* sub = app.add_subcommand(
      "sweep", "Replay a run's checkpoints through a grid of averagers and evaluate each");
  sub->add_option("run_dir", a->run_dir, "Run directory (with checkpoints/)")->required();
  sub->add_option("--lawa", a->lawa, "LAWA grid: window=2,5,10 [every=1,4] [start=0]")
      ->expected(1, -1);
  sub->add_option("--ema", a->ema, "EMA grid: beta=0.9,0.99 [every=1,4] [start=0]")
      ->expected(1, -1);
  sub->add_option("--swa", a->swa, "SWA grid: [every=1] [start=0,500]")->expected(1, -1);
  sub->add_option("--buffers", a->buffers, "Buffers of the averages: copy|average|recompute");
  sub->add_option("--save-averages", a->save, "Save these averages (names, or 'all')")
      ->delimiter(',');
  sub->add_flag("--quiet", a->quiet, "No progress output");
  sub->add_flag("--force", a->force, "Accept a raw (old) config.toml, resolved with today's defaults");
  return {sub, [a] { return run_sweep_command(*a); }};
}

Command register_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* sub = app.add_subcommand("eval", "Evaluate a safetensors checkpoint of a workload");
  sub->add_option("checkpoint", a->checkpoint,
                  "Checkpoint (state-dict names): a safetensors file, a sharded checkpoint's "
                  "*.safetensors.index.json, or a directory")
      ->required();
  CLI::Option* workload =
      sub->add_option("--workload", a->workload, "fmnist_cnn | text_lm | synth_ctr | graph_mol | mri_recon");
  sub->add_option("--run", a->run_dir,
                  "Run directory: workload, seed and batch size from its resolved config.toml");
  sub->add_option("--split", a->split, "validation | test | train");
  CLI::Option* seed =
      add_int64_option(sub, "--seed", a->seed, "Seed of the data stream (synthetic workloads)");
  sub->add_flag("--force", a->force, "With --run: accept a raw (old) config.toml");
  sub->add_option("--strip-prefix", a->strip_prefixes,
                  "Remove this prefix from the checkpoint's tensor names before matching the "
                  "model's (repeatable: module., _orig_mod.)")
      ->allow_extra_args(false);
  return {sub, [a, workload, seed] { return run_eval(*a, workload->count() > 0, seed->count() > 0); }};
}

Command register_study(CLI::App& app) {
  auto config = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto quick = std::make_shared<bool>(false);
  auto quiet = std::make_shared<bool>(false);
  auto parts = std::make_shared<std::vector<std::string>>();
  auto threads = std::make_shared<int64_t>(0);
  auto merge_only = std::make_shared<bool>(false);
  auto accept_definitions = std::make_shared<bool>(false);
  CLI::App* sub = app.add_subcommand(
      "study", "Run the AlgoPerf-style study (resumable) and write results.json and report.html");
  sub->add_option("--config", *config, "Study TOML (configs/study.toml)");
  sub->add_option("--out", *out, "Study directory")->required();
  sub->add_flag("--quick", *quick, "Small budgets that exercise every stage in a few minutes");
  sub->add_flag("--quiet", *quiet, "No progress output");
  sub->add_option("--workload", *parts,
                  "Run only this part (a workload, or lm_protocol); repeatable. Every part present "
                  "is merged into results.json");
  sub->add_flag("--merge-only", *merge_only,
                "Run nothing: merge the parts present into results.json (and write the report)");
  sub->add_flag("--accept-other-definitions", *accept_definitions,
                "Merge a part made under another definition of its workload (its model or data "
                "generator changed) with a warning; results.json records the part's definition");
  CLI::Option* threads_opt = add_int64_option(
      sub, "--threads", *threads,
      "Intra-op threads per run (overrides the config's `threads`; changes the time, not the "
      "results: two parts side by side on 2 cores run best with 1 each)");
  return {sub, [=] {
            StudyConfig c = load_study_config(*config, *quick);
            if (threads_opt->count() > 0) {
              WAVG_CHECK(*threads >= 1 && *threads <= 1024,
                         "--threads must be between 1 and 1024, got ", *threads);
              c.threads = int(*threads);
            }
            if (*merge_only)
              merge_study(c, *out, *quiet, *accept_definitions);
            else
              run_study(c, *out, *quiet, *parts, *accept_definitions);
            write_report(*out, *out + "/report.html");
            std::printf("wrote %s/report.html\n", out->c_str());
            return 0;
          }};
}

}  // namespace wavg::cli
