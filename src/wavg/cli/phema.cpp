// `wavg phema`: post-hoc EMA (Karras et al. 2024, EDM2) — the EMA of any σ_rel at a snapshot step,
// reconstructed from the snapshots of a run's phema averager by least squares.
#include <cstdio>
#include <memory>

#include "wavg/cli/commands.h"
#include "wavg/core/format.h"
#include "wavg/core/phema.h"
#include "wavg/io/atomic_file.h"
#include "wavg/io/phema_snapshots.h"

namespace wavg::cli {

namespace {

struct PhemaArgs {
  double sigma_rel = 0;
  int64_t step = 0;
  std::string averager;
  bool overwrite = false;
  std::string out;
  std::string run_dir;
};

int run_phema(const PhemaArgs& a, CLI::App* sub) {
  PhemaRequest r;
  r.sigma_rel = a.sigma_rel;
  if (sub->count("--step")) r.step = a.step;
  r.averager = a.averager;
  r.overwrite = a.overwrite;
  install_temporary_cleanup();
  const PhemaReconstruction rec = reconstruct_phema(a.run_dir, r, a.out);
  std::printf("post-hoc EMA sigma_rel=%s (gamma=%s) at step %lld of '%s' from %zu snapshots -> %s\n",
              format_number(a.sigma_rel, 6).c_str(),
              format_number(phema_gamma(a.sigma_rel), 6).c_str(), (long long)rec.step,
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
               "a run's phema snapshots");
  sub->add_option("--sigma-rel", args->sigma_rel,
                  "Relative standard deviation of the EMA profile, in (0, 0.3003]")
      ->required();
  sub->add_option("--step", args->step,
                  "Snapshot step to reconstruct at (default: the newest); only snapshots at or "
                  "before it are used");
  sub->add_option("--averager", args->averager,
                  "The phema averager whose snapshots to use (needed when the run has several)");
  sub->add_flag("--overwrite", args->overwrite, "Replace an existing output");
  sub->add_option("-o,--output", args->out, "Output safetensors file")->required();
  sub->add_option("run_dir", args->run_dir, "Run directory (holds phema/NAME/*.safetensors)")
      ->required();
  return {sub, [args, sub] { return run_phema(*args, sub); }};
}

}  // namespace wavg::cli
