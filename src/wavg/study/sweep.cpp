// Offline sweep: checkpoint replay through one bank, evaluation at the run's evaluation steps.
#include "wavg/study/sweep.h"

#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "wavg/core/error.h"
#include "wavg/core/target.h"
#include "wavg/io/atomic_file.h"
#include "wavg/io/metrics_log.h"
#include "wavg/torch/model_averager.h"
#include "wavg/torch/threads.h"
#include "wavg/train/checkpoint.h"
#include "wavg/train/config.h"
#include "wavg/train/runner.h"
#include "wavg/workloads/workload.h"

namespace wavg {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream is(s);
  while (std::getline(is, cur, sep)) out.push_back(cur);
  return out;
}

double parse_number(const std::string& key, const std::string& v) {
  try {
    size_t pos = 0;
    const double d = std::stod(v, &pos);
    if (pos == v.size()) return d;
  } catch (const std::exception&) {
  }
  throw Error("sweep: " + key + " value '" + v + "' is not a number");
}

// A setting of a --lawa, --ema or --swa grid (validated as it is built).
SchemeOptions grid_setting(Scheme scheme, int64_t window, double beta) {
  if (scheme == Scheme::kLawa) return LawaOptions(window);
  if (scheme == Scheme::kEma) return EmaOptions(beta);
  WAVG_CHECK(scheme == Scheme::kSwa, "sweep: no grid of ", scheme_name(scheme));
  return SwaOptions();
}

// sweep_summary.csv: one row per setting.
std::string summary_csv(const SweepResult& result) {
  std::string csv = "name,scheme,window,beta,every,start,horizon,steps_to_target,best_value,best_step\n";
  for (const auto& r : result.rows) {
    char buf[512];
    const EmaOptions* ema = r.averager.as<EmaOptions>();
    std::snprintf(buf, sizeof buf, "%s,%s,%lld,%.10g,%lld,%lld,%.10g,%s,%.10g,%lld\n",
                  r.averager.name().c_str(), scheme_name(r.averager.scheme()),
                  (long long)window_of(r.averager), ema ? ema->beta() : 0.0,
                  (long long)r.averager.every(), (long long)r.averager.start(), r.horizon,
                  r.steps_to_target ? std::to_string(*r.steps_to_target).c_str() : "",
                  r.best_value, (long long)r.best_step);
    csv += buf;
  }
  return csv;
}

// The run's model checkpoints, every nu0 steps from step 0 without a gap; --save-averages names
// settings of the grid.
std::vector<std::pair<int64_t, std::string>> checked_checkpoints(const std::string& run_dir,
                                                                int64_t nu0, const SweepOptions& options) {
  auto ckpts = list_model_checkpoints(run_dir);
  WAVG_CHECK(nu0 >= 1, "sweep: ", run_dir, " was trained with ckpt_every = ", nu0,
             " (no model checkpoints)");
  WAVG_CHECK(!ckpts.empty(), "sweep: ", run_dir,
             "/checkpoints holds no model checkpoints (train with ckpt_every > 0)");
  for (size_t k = 0; k < ckpts.size(); ++k)
    WAVG_CHECK(ckpts[k].first == int64_t(k) * nu0, "sweep: checkpoint of step ",
               int64_t(k) * nu0, " is missing in ", run_dir, "/checkpoints (found step ",
               ckpts[k].first, ")");
  for (const auto& s : options.save) {
    bool found = s == "all";
    for (const auto& o : options.grid) found |= o.name() == s;
    WAVG_CHECK(found, "sweep: --save-averages names '", s, "', which is not in the grid");
  }
  return ckpts;
}

}  // namespace

std::vector<SchemeOptions> parse_grid(Scheme scheme, const std::vector<std::string>& tokens) {
  const char* s = scheme_name(scheme);
  std::map<std::string, std::vector<double>> values;
  for (const auto& t : tokens) {
    const auto eq = t.find('=');
    WAVG_CHECK(eq != std::string::npos, "sweep: --", s, " expects key=v1,v2,... got '", t, "'");
    const std::string key = t.substr(0, eq);
    const bool known = key == "every" || key == "start" ||
                       (scheme == Scheme::kLawa && key == "window") ||
                       (scheme == Scheme::kEma && key == "beta");
    WAVG_CHECK(known, "sweep: --", s, " has no key '", key, "'");
    WAVG_CHECK(!values.count(key), "sweep: --", s, " gives '", key, "' twice");
    for (const auto& v : split(t.substr(eq + 1), ',')) values[key].push_back(parse_number(key, v));
    WAVG_CHECK(!values[key].empty(), "sweep: --", s, " ", key, " has no values");
  }
  if (scheme == Scheme::kLawa) WAVG_CHECK(values.count("window"), "sweep: --lawa needs window=...");
  if (scheme == Scheme::kEma) WAVG_CHECK(values.count("beta"), "sweep: --ema needs beta=...");
  for (const char* k : {"every", "start", "window", "beta"})
    if (!values.count(k)) values[k] = {k == std::string("every") ? 1.0 : 0.0};
  std::vector<SchemeOptions> out;
  for (double every : values["every"])
    for (double start : values["start"])
      for (double window : values["window"])
        for (double beta : values["beta"]) {
          for (auto [key, v] : {std::pair{"every", every}, std::pair{"start", start},
                                std::pair{"window", window}})
            WAVG_CHECK(v == std::floor(v) && std::fabs(v) < 0x1p63, "sweep: ", key,
                       " must be a 64-bit integer, got ", v);
          out.push_back(grid_setting(scheme, int64_t(window), beta)
                            .every(int64_t(every))
                            .start(int64_t(start)));
          out.back().name(default_name(out.back()));
        }
  return out;
}

namespace {

// One spec per setting; each ν must be a multiple of the run's checkpoint period.
std::vector<AveragerSpec> sweep_specs(const SweepOptions& options, int64_t nu0) {
  std::vector<AveragerSpec> specs;
  for (const auto& o : options.grid) {
    WAVG_CHECK(o.every() % nu0 == 0, "sweep: ", o.name(), ": every=", o.every(),
               " is not a multiple of the run's checkpoint period ", nu0, " (ckpt_every)");
    specs.emplace_back(o, options.buffers);
  }
  return specs;
}

// The rows before any evaluation: each setting and its horizon over the run.
std::vector<SweepRow> empty_rows(const SweepOptions& options, int64_t steps) {
  std::vector<SweepRow> rows;
  for (const auto& o : options.grid) {
    SweepRow row{o};
    if (const auto* l = o.as<LawaOptions>()) row.horizon = lawa_horizon(l->window(), o.every(), steps);
    if (const auto* e = o.as<EmaOptions>()) row.horizon = ema_horizon(e->beta(), o.every(), steps);
    rows.push_back(row);
  }
  return rows;
}

// Evaluates every non-empty setting at `step` (swapped in), updates its row, and returns the
// metrics lines.
std::string evaluate_settings(ModelAverager& averager, Workload& workload,
                              const ForwardBatch& forward, int64_t step, const RunConfig& c,
                              SweepResult* result) {
  const bool lower = workload.lower_is_better();
  std::string lines;
  for (int i = 0; i < averager.size(); ++i) {
    if (averager.empty(i)) continue;
    Evaluation ev;
    {
      EvalSwap swap = averager.swap_in(i, forward);
      ev = workload.evaluate(Split::kValidation);
    }
    SweepRow& row = result->rows[size_t(i)];
    if (row.best_step < 0 || better(ev.value, row.best_value, lower)) {
      row.best_value = ev.value;
      row.best_step = step;
    }
    if (!row.steps_to_target && reaches(ev.value, c.target, lower)) row.steps_to_target = step;
    MetricRecord line;
    line.step = step;
    line.model = averager.name(i);
    line.metric = result->metric;
    line.value = ev.value;
    line.loss = ev.loss;
    line.lr = lr_at(c.schedule, step - 1);
    line.train_wall_s = NAN;  // not a training run
    lines += metrics_line(line) + "\n";
  }
  return lines;
}

}  // namespace

SweepResult run_sweep(const std::string& run_dir, const SweepOptions& options) {
  WAVG_CHECK(!options.grid.empty(), "sweep: no settings (give --lawa, --ema or --swa)");
  const RunConfig c = recorded_run_config(run_dir, options.force, "sweep");
  const auto ckpts = checked_checkpoints(run_dir, c.ckpt_every, options);
  const std::vector<AveragerSpec> specs = sweep_specs(options, c.ckpt_every);

  apply_threads(c.threads);
  WorkloadOptions wo;
  wo.seed = c.seed;
  wo.batch_size = c.batch_size;
  auto workload = make_workload(c.workload, wo);
  auto model = workload->model();
  ModelAverager averager(model, specs);
  averager.set_async(false);
  const ForwardBatch forward = [&](int64_t i) { workload->forward_train_batch(i); };

  SweepResult result;
  result.metric = workload->metric();
  result.target = c.target;
  result.rows = empty_rows(options, c.steps);
  const bool tty = !options.quiet && ::isatty(STDOUT_FILENO);
  std::string lines;
  for (const auto& [step, path] : ckpts) {
    const auto t0 = Clock::now();
    load_module(*model, path);
    averager.observe(step);
    result.averaging_s += since(t0);
    ++result.checkpoints;
    if (!(step % c.eval_every == 0 || step == c.steps) || step == 0) continue;
    const auto e0 = Clock::now();
    lines += evaluate_settings(averager, *workload, forward, step, c, &result);
    result.evaluation_s += since(e0);
    if (tty) {
      std::printf("\rsweep: step %lld/%lld, %d settings", (long long)step,
                  (long long)ckpts.back().first, averager.size());
      std::fflush(stdout);
    }
  }
  if (tty) std::printf("\n");
  write_file_atomic(run_dir + "/sweep.jsonl", lines);
  write_file_atomic(run_dir + "/sweep_summary.csv", summary_csv(result));

  for (int i = 0; i < averager.size(); ++i) {
    bool wanted = false;
    for (const auto& s : options.save) wanted |= s == "all" || s == averager.name(i);
    if (wanted && !averager.empty(i))
      averager.save(i, run_dir + "/sweep_" + averager.name(i) + ".safetensors", forward,
                    {{"workload", c.workload}, {"step", std::to_string(ckpts.back().first)}});
  }
  return result;
}

}  // namespace wavg
