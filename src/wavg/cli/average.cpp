// `wavg average`: LAWA / EMA / SWA / last-K / weighted means over an ordered list of checkpoints
// (safetensors files, sharded checkpoints' indexes, or directories), with a progress bar on a
// terminal.
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

#include "wavg/cli/commands.h"
#include "wavg/cli/int_flag.h"
#include "wavg/core/error.h"
#include "wavg/io/atomic_file.h"
#include "wavg/io/checkpoint_average.h"
#include "wavg/io/checkpoint_set.h"

namespace wavg::cli {

namespace {
struct AverageArgs {
  int64_t last = 0;
  double ema = -1;
  int64_t lawa = 0;
  int64_t lawa_exp = 0;
  double exp_alpha = -1;
  bool swa = false;
  bool saturate = false;
  bool overwrite = false;
  int64_t every = 1;
  int64_t start = 0;
  std::string dtype;
  std::string weights;
  std::string max_shard_size;
  std::vector<std::string> strip_prefixes;
  std::string out;
  std::vector<std::string> inputs;
};

// "0.5,1,2" -> {0.5, 1, 2}: every entry a number (range and sign are checked by the library).
std::vector<double> parse_weights(const std::string& text) {
  std::vector<double> out;
  size_t at = 0;
  for (;;) {
    const size_t comma = text.find(',', at);
    const std::string item = text.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    WAVG_CHECK(!item.empty() && end == item.c_str() + item.size(), "average: --weights must be ",
               "comma-separated numbers, got '", quote_bytes(item), "' in '", quote_bytes(text), "'");
    out.push_back(v);
    if (comma == std::string::npos) return out;
    at = comma + 1;
  }
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) b /= 1000, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

// A progress bar on stderr, only when stderr is a terminal and once the work has taken 2 s:
// "[#######.............] 1.2 GB / 4.0 GB  310.5 MB/s  ETA 9 s", redrawn at most 5 times a second.
class ProgressBar {
 public:
  ProgressBar() : tty_(::isatty(STDERR_FILENO) == 1), t0_(clock::now()), last_(t0_) {}
  ~ProgressBar() { finish(); }
  // Ends the bar's line (before the summary).
  void finish() {
    if (shown_) std::fprintf(stderr, "\n");
    shown_ = false;
  }
  void update(uint64_t done, uint64_t total) {
    if (!tty_) return;
    const auto now = clock::now();
    const double elapsed = std::chrono::duration<double>(now - t0_).count();
    if (elapsed < 2.0 || (now - last_ < std::chrono::milliseconds(200) && done < total)) return;
    last_ = now;
    shown_ = true;
    const double frac = total ? double(done) / double(total) : 1.0, rate = double(done) / elapsed;
    const int filled = int(std::lround(frac * 20));
    const std::string bar = std::string(size_t(filled), '#') + std::string(size_t(20 - filled), '.');
    const double eta = rate > 0 ? double(total - done) / rate : 0;
    std::fprintf(stderr, "\r[%s] %s / %s  %s/s  ETA %.0f s   ", bar.c_str(),
                 human_bytes(double(done)).c_str(), human_bytes(double(total)).c_str(),
                 human_bytes(rate).c_str(), eta);
    std::fflush(stderr);
  }

 private:
  using clock = std::chrono::steady_clock;
  bool tty_, shown_ = false;
  clock::time_point t0_, last_;
};

SchemeOptions averager_of(const AverageArgs& a, CLI::App* sub) {
  const bool last = sub->count("--last") > 0, ema = sub->count("--ema") > 0,
             lawa = sub->count("--lawa") > 0, swa = a.swa, weights = !a.weights.empty(),
             exp = sub->count("--lawa-exp") > 0;
  const int schemes = int(last) + int(ema) + int(lawa) + int(swa) + int(exp);
  WAVG_CHECK(schemes == 1 || (schemes == 0 && weights),
             "average: give exactly one of --last K, --ema BETA, --lawa L, --lawa-exp K, --swa (or ",
             "--weights alone for a weighted mean of every input)");
  WAVG_CHECK(exp == (sub->count("--exp-alpha") > 0),
             "average: --lawa-exp K and --exp-alpha A go together (Kaddour's EXP window: weights "
             "proportional to (1 - A)^(age))");
  const bool spaced = sub->count("--every") > 0 || sub->count("--start") > 0;
  WAVG_CHECK(!(last && spaced), "average: --every/--start do not apply to --last (use --lawa)");
  if (last) {
    WAVG_CHECK(a.last >= 1, "average: --last must be >= 1, got ", a.last);
    return LawaOptions(a.last);
  }
  if (ema) return EmaOptions(a.ema).every(a.every).start(a.start);
  if (lawa) return LawaOptions(a.lawa).every(a.every).start(a.start);
  if (exp) return LawaExpOptions(a.lawa_exp, a.exp_alpha).every(a.every).start(a.start);
  return SwaOptions().every(a.every).start(a.start);  // --swa, or the inputs --weights weighs
}

int run_average(const AverageArgs& a, CLI::App* sub) {
  CheckpointAverageOptions o;
  o.averager = averager_of(a, sub);
  if (!a.weights.empty()) o.weights = parse_weights(a.weights);
  if (!a.dtype.empty()) {
    DType t;
    WAVG_CHECK(try_parse_dtype(a.dtype, &t) &&
                   (is_floating(t) || dtype_kind(t) == DTypeKind::kFloat8),
               "average: --dtype must be one of f32, f64, bf16, f16, f8_e4m3, f8_e5m2, f8_e4m3fnuz, ",
               "f8_e5m2fnuz, got '", quote_bytes(a.dtype), "'");
    o.out_dtype = t;
  }
  if (sub->count("--max-shard-size") > 0)
    o.max_shard_size = parse_byte_size(a.max_shard_size, "average: --max-shard-size");
  o.saturate = a.saturate;
  o.overwrite = a.overwrite;
  o.strip_prefixes = a.strip_prefixes;
  ProgressBar bar;
  o.progress = [&bar](uint64_t done, uint64_t total) { bar.update(done, total); };
  // An interrupted average exits 130/143 and leaves no temporary behind.
  install_temporary_cleanup();
  const auto t0 = std::chrono::steady_clock::now();
  const CheckpointAverageReport r = average_checkpoints(a.inputs, a.out, o);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  bar.finish();
  const bool weighted_mean = !o.weights.empty() && sub->count("--swa") == 0;
  std::printf("%s\n", weighted_mean ? "weighted mean of every input (--weights)"
                                     : describe(o.averager).c_str());
  std::printf("averaged %lld of %zu checkpoints (%lld tensors, %lld floating elements) -> %s "
              "(%lld %s) in %.2f s\n",
              (long long)r.files_read, a.inputs.size(), (long long)r.tensors,
              (long long)r.averaged_elements, a.out.c_str(), (long long)r.shards_written,
              r.shards_written == 1 ? "file" : "shards", secs);
  return 0;
}
}  // namespace

Command register_average(CLI::App& app) {
  auto args = std::make_shared<AverageArgs>();
  CLI::App* sub = app.add_subcommand(
      "average",
      "Average an ordered list of checkpoints (oldest first; checkpoint i is step i): safetensors "
      "files, sharded checkpoints (*.safetensors.index.json) or directories");
  add_int64_option(sub, "--last", args->last, "Uniform mean of the last K files (fairseq's --num)");
  sub->add_option("--ema", args->ema, "EMA with this beta in [0, 1)");
  add_int64_option(sub, "--lawa", args->lawa, "LAWA: mean of the last L sampled files");
  add_int64_option(sub, "--lawa-exp", args->lawa_exp,
                   "Kaddour's EXP: the last K sampled files weighted by (1 - A)^(age) (--exp-alpha)");
  sub->add_option("--exp-alpha", args->exp_alpha, "The decay A in (0, 1) of --lawa-exp");
  sub->add_flag("--swa", args->swa, "SWA: mean of every sampled file");
  add_int64_option(sub, "--every", args->every, "Sample every NU-th file (default 1)");
  add_int64_option(sub, "--start", args->start, "First file index that may be sampled (default 0)");
  sub->add_option("--dtype", args->dtype,
                  "Output dtype of averaged tensors (floating and FP8; C64 stays C64): "
                  "f32|f64|bf16|f16|f8_e4m3|f8_e5m2|f8_e4m3fnuz|f8_e5m2fnuz");
  sub->add_flag("--saturate", args->saturate,
                "Clamp averages out of --dtype's range to its largest finite value (default: an "
                "error naming the tensor)");
  sub->add_option("--weights", args->weights,
                  "Per-input weights w1,w2,... (normalised; alone: a weighted mean of every input; "
                  "with --last/--lawa/--swa: they weigh the inputs the averager selects)");
  sub->add_option("--strip-prefix", args->strip_prefixes,
                  "Remove this prefix from tensor names before matching (repeatable: module., "
                  "_orig_mod.); the output keeps the newest checkpoint's names")
      ->allow_extra_args(false);  // one prefix per flag: the inputs that follow stay inputs
  sub->add_option("--max-shard-size", args->max_shard_size,
                  "Write a sharded output with shards of at most this size (500MB, 5GB, 1GiB)");
  sub->add_flag("--overwrite", args->overwrite, "Replace an existing output");
  sub->add_option("-o,--output", args->out,
                  "Output: a safetensors file, or a directory of shards and their index when the "
                  "newest input is sharded (or with --max-shard-size)")
      ->required();
  sub->add_option("inputs", args->inputs,
                  "Input checkpoints, oldest first: .safetensors files, *.safetensors.index.json, "
                  "or directories")
      ->required();
  return {sub, [args, sub] { return run_average(*args, sub); }};
}

}  // namespace wavg::cli
