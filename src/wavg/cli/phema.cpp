// `wavg phema`: post-hoc EMA (Karras et al. 2024, EDM2) — the EMA of any σ_rel at a snapshot step,
// reconstructed from the snapshots of a run's phema averager by least squares; with --eval, several
// σ_rel reconstructed and evaluated (phema_eval.cpp).
#include <cstdio>
#include <memory>

#include "wavg/cli/commands.h"
#include "wavg/cli/int_flag.h"
#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/core/phema.h"
#include "wavg/io/atomic_file.h"
#include "wavg/io/phema_snapshots.h"

namespace wavg::cli {

namespace {

struct PhemaArgs {
  std::vector<double> sigma_rels;
  int64_t step = 0;
  std::string averager;
  bool overwrite = false;
  bool eval = false;
  bool force = false;
  std::string out;
  std::string run_dir;
};

int run_phema(const PhemaArgs& a, CLI::App* sub) {
  const bool step_given = sub->count("--step") > 0;
  if (a.eval) {
    WAVG_CHECK(a.out.empty() || a.sigma_rels.size() == 1, "phema: -o keeps one reconstruction: ",
               "give one --sigma-rel with -o, got ", a.sigma_rels.size());
    for (double s : a.sigma_rels) phema_gamma(s);  // each σ_rel checked before any work
    PhemaEval e{a.run_dir, a.averager, a.out, a.sigma_rels, std::nullopt, a.overwrite, a.force};
    if (step_given) e.step = a.step;
    return run_phema_eval(e);
  }
  WAVG_CHECK(a.sigma_rels.size() == 1, "phema: --sigma-rel takes one value without --eval, got ",
             a.sigma_rels.size());
  WAVG_CHECK(!a.out.empty(), "phema: -o OUT is required (without --eval)");
  WAVG_CHECK(!a.force, "phema: --force applies to --eval only");
  PhemaRequest r;
  r.sigma_rel = a.sigma_rels[0];
  if (step_given) r.step = a.step;
  r.averager = a.averager;
  r.overwrite = a.overwrite;
  install_temporary_cleanup();
  const PhemaReconstruction rec = reconstruct_phema(a.run_dir, r, a.out);
  std::printf("post-hoc EMA sigma_rel=%s (gamma=%s) at step %lld of '%s' from %zu snapshots -> %s\n",
              format_number(r.sigma_rel, 6).c_str(),
              format_number(phema_gamma(r.sigma_rel), 6).c_str(), (long long)rec.step,
              rec.averager.c_str(), rec.inputs.size(), a.out.c_str());
  std::printf("%10s %10s %14s\n", "step", "sigma_rel", "coefficient");
  for (size_t i = 0; i < rec.inputs.size(); ++i)
    std::printf("%10lld %10s %14s\n", (long long)rec.inputs[i].step,
                format_number(rec.inputs[i].sigma_rel, 6).c_str(),
                format_number(rec.coefficients[i], 6).c_str());
  return 0;
}

}  // namespace

Command register_phema(CLI::App& app) {
  auto args = std::make_shared<PhemaArgs>();
  CLI::App* sub = app.add_subcommand(
      "phema", "Post-hoc EMA (EDM2): reconstruct the EMA of any sigma_rel at a snapshot step from "
               "a run's phema snapshots (--eval: evaluate several)");
  sub->add_option("--sigma-rel", args->sigma_rels,
                  "Relative standard deviation of the EMA profile, in (0, 0.3003]; with --eval a "
                  "list: 0.05,0.07,0.1")
      ->required()
      ->delimiter(',')
      ->allow_extra_args(false);  // the run directory that follows stays the run directory
  add_int64_option(sub, "--step", args->step,
                   "Snapshot step to reconstruct at (default: the newest); only snapshots at or "
                   "before it are used");
  sub->add_option("--averager", args->averager,
                  "The phema averager whose snapshots to use (needed when the run has several)");
  sub->add_flag("--eval", args->eval,
                "Evaluate each reconstruction on the run's workload (validation split) and print "
                "a table of the metric per sigma_rel");
  sub->add_flag("--force", args->force, "With --eval: accept a raw (old) config.toml");
  sub->add_flag("--overwrite", args->overwrite, "Replace an existing output");
  sub->add_option("-o,--output", args->out,
                  "Output safetensors file (required without --eval; with it, keeps the one "
                  "reconstruction)");
  sub->add_option("run_dir", args->run_dir, "Run directory (holds phema/NAME/*.safetensors)")
      ->required();
  return {sub, [args, sub] { return run_phema(*args, sub); }};
}

}  // namespace wavg::cli
