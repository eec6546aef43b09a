// `wavg average`: LAWA / EMA / SWA / last-K over an ordered list of safetensors checkpoints.
#include <chrono>
#include <cstdio>
#include <memory>

#include "wavg/cli/commands.h"
#include "wavg/cli/int_flag.h"
#include "wavg/core/error.h"
#include "wavg/io/atomic_file.h"
#include "wavg/io/checkpoint_average.h"

namespace wavg::cli {

namespace {
struct AverageArgs {
  int64_t last = 0;
  double ema = -1;
  int64_t lawa = 0;
  bool swa = false;
  bool saturate = false;
  int64_t every = 1;
  int64_t start = 0;
  std::string dtype;
  std::string out;
  std::vector<std::string> inputs;
};

int run_average(const AverageArgs& a, CLI::App* sub) {
  const bool last = sub->count("--last") > 0, ema = sub->count("--ema") > 0,
             lawa = sub->count("--lawa") > 0, swa = a.swa;
  WAVG_CHECK(int(last) + int(ema) + int(lawa) + int(swa) == 1,
             "average: give exactly one of --last K, --ema BETA, --lawa L, --swa");
  const bool spaced = sub->count("--every") > 0 || sub->count("--start") > 0;
  WAVG_CHECK(!(last && spaced), "average: --every/--start do not apply to --last (use --lawa)");
  CheckpointAverageOptions o;
  if (last) {
    WAVG_CHECK(a.last >= 1, "average: --last must be >= 1, got ", a.last);
    o.averager = LawaOptions(a.last);
  } else if (ema) {
    o.averager = EmaOptions(a.ema).every(a.every).start(a.start);
  } else if (lawa) {
    o.averager = LawaOptions(a.lawa).every(a.every).start(a.start);
  } else {
    o.averager = SwaOptions().every(a.every).start(a.start);
  }
  if (!a.dtype.empty()) {
    DType t;
    WAVG_CHECK(try_parse_dtype(a.dtype, &t) && is_floating(t), "average: --dtype must be one of ",
               "f32, f64, bf16, f16, got '", a.dtype, "'");
    o.out_dtype = t;
  }
  o.saturate = a.saturate;
  // An interrupted average exits 130/143 and leaves no temporary behind.
  install_temporary_cleanup();
  const auto t0 = std::chrono::steady_clock::now();
  const CheckpointAverageReport r = average_checkpoints(a.inputs, a.out, o);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s\n", describe(o.averager).c_str());
  std::printf("averaged %lld of %zu files (%lld tensors, %lld floating elements) -> %s in %.2f s\n",
              (long long)r.files_read, a.inputs.size(), (long long)r.tensors,
              (long long)r.averaged_elements, a.out.c_str(), secs);
  return 0;
}
}  // namespace

Command register_average(CLI::App& app) {
  auto args = std::make_shared<AverageArgs>();
  CLI::App* sub = app.add_subcommand(
      "average",
      "Average an ordered list of safetensors checkpoints (oldest first; file i is step i)");
  add_int64_option(sub, "--last", args->last, "Uniform mean of the last K files (fairseq's --num)");
  sub->add_option("--ema", args->ema, "EMA with this beta in [0, 1)");
  add_int64_option(sub, "--lawa", args->lawa, "LAWA: mean of the last L sampled files");
  sub->add_flag("--swa", args->swa, "SWA: mean of every sampled file");
  add_int64_option(sub, "--every", args->every, "Sample every NU-th file (default 1)");
  add_int64_option(sub, "--start", args->start, "First file index that may be sampled (default 0)");
  sub->add_option("--dtype", args->dtype, "Output dtype of floating tensors: f32|f64|bf16|f16");
  sub->add_flag("--saturate", args->saturate,
                "Clamp averages out of --dtype's range to its largest finite value (default: an "
                "error naming the tensor)");
  sub->add_option("-o,--output", args->out, "Output safetensors file")->required();
  sub->add_option("inputs", args->inputs, "Input safetensors files, oldest first")->required();
  return {sub, [args, sub] { return run_average(*args, sub); }};
}

}  // namespace wavg::cli
