// `wavg phema --eval` in wavg-torch: post-hoc EMAs over σ_rel after training. Each σ_rel is
// reconstructed (reconstruct_phema) into a temporary file, loaded into the run's workload model as
// `wavg eval --run` would load it, and evaluated on the validation split.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "wavg/cli/commands.h"
#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/core/phema.h"
#include "wavg/io/atomic_file.h"
#include "wavg/io/phema_snapshots.h"
#include "wavg/torch/model_averager.h"
#include "wavg/torch/threads.h"
#include "wavg/train/runner.h"
#include "wavg/workloads/workload.h"

namespace wavg::cli {

namespace {

// A fresh directory under $TMPDIR (or /tmp), removed with its files on scope exit.
class ScratchDirectory {
 public:
  ScratchDirectory() {
    std::string pattern = (std::filesystem::temp_directory_path() / "wavg-phema-XXXXXX").string();
    WAVG_CHECK(::mkdtemp(pattern.data()) != nullptr, "phema: cannot create a temporary directory ",
               "like ", pattern);
    path_ = pattern;
  }
  ~ScratchDirectory() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDirectory(const ScratchDirectory&) = delete;
  ScratchDirectory& operator=(const ScratchDirectory&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace

int run_phema_eval(const PhemaEval& e) {
  const RunConfig c = recorded_run_config(e.run_dir, e.force, "phema");
  apply_threads({});
  WorkloadOptions wo;
  wo.seed = c.seed;
  wo.batch_size = c.batch_size;
  auto w = make_workload(c.workload, wo);
  install_temporary_cleanup();
  const ScratchDirectory scratch;
  std::printf("post-hoc EMAs of %s evaluated on %s (validation %s)\n", e.run_dir.c_str(),
              c.workload.c_str(), w->metric().c_str());
  std::printf("%10s %10s %8s %14s %14s %10s\n", "sigma_rel", "gamma", "step", w->metric().c_str(),
              "loss", "snapshots");
  for (size_t i = 0; i < e.sigma_rels.size(); ++i) {
    PhemaRequest r;
    r.sigma_rel = e.sigma_rels[i];
    r.step = e.step;
    r.averager = e.averager;
    r.overwrite = e.overwrite;
    const std::string out =
        e.out.empty() ? scratch.path() + "/" + std::to_string(i) + ".safetensors" : e.out;
    const PhemaReconstruction rec = reconstruct_phema(e.run_dir, r, out);
    load_module(*w->model(), out);
    const Evaluation ev = w->evaluate(Split::kValidation);
    std::printf("%10s %10s %8lld %14.10g %14.10g %10zu\n", format_number(r.sigma_rel, 6).c_str(),
                format_number(phema_gamma(r.sigma_rel), 6).c_str(), (long long)rec.step, ev.value,
                ev.loss, rec.inputs.size());
  }
  return 0;
}

}  // namespace wavg::cli
