// Validation of a run configuration: every field against its range, naming the key and the value,
// then the memory the run would need against the memory available.
#include <cmath>
#include <set>

#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/torch/device.h"
#include "wavg/train/config.h"
#include "wavg/train/config_keys.h"
#include "wavg/train/resource_check.h"
#include "wavg/workloads/defaults.h"

namespace wavg {

namespace {

using detail::bank_order;
using detail::ConfigValue;
using detail::shown;

// The hyperparameters themselves are valid (the scheme's options validate each as it is set, and
// the reader checks each under its config key first); what is left is the entry's own.
void check_averager(const AveragerEntry& e, const std::string& key, std::set<std::string>& names) {
  const SchemeOptions& o = e.averager;
  const std::string name = o.name().empty() ? default_name(o) : o.name();
  bool safe = !name.empty() && name != "." && name != "..";
  for (char ch : name) safe &= std::isalnum((unsigned char)ch) || ch == '_' || ch == '-' || ch == '.';
  WAVG_CHECK(safe, "config: '", key, ".name' must be letters, digits, _, - and . (it names ",
             "final_NAME.safetensors), got ", shown(ConfigValue(name)));
  WAVG_CHECK(name != "raw" && names.insert(name).second, "config: '", key,
             ".name': duplicate averager name ", shown(ConfigValue(name)));
  WAVG_CHECK(e.recompute_batches >= 1, "config: '", key, ".recompute_batches' must be >= 1, got ",
             e.recompute_batches);
  WAVG_CHECK(e.eval_every >= 0, "config: '", key, ".eval_every' must be >= 0 (0: the run's ",
             "eval_every), got ", e.eval_every);
  if (o.scheme() == Scheme::kPhema)
    WAVG_CHECK(e.snapshot_every >= 1, "config: '", key, ".snapshot_every' must be >= 1 steps, got ",
               e.snapshot_every);
}

void check_range(const char* key, double v, double lo, double hi, bool hi_open, const char* shown_range) {
  const bool ok = std::isfinite(v) && v >= lo && (hi_open ? v < hi : v <= hi);
  WAVG_CHECK(ok, "config: '", key, "' must be in ", shown_range, ", got ", format_exact(v));
}

void check_optimizer_and_schedule(const RunConfig& c) {
  const OptimizerConfig& o = c.optimizer;
  if (const auto p = optimizer_problem(o)) throw Error("config: 'optimizer." + p->key + "' " + p->what);
  const Schedule& s = c.schedule;
  // Schedule-Free replaces the schedule (Defazio et al. 2024): only a warmup is allowed.
  WAVG_CHECK(o.name != "schedule_free_adamw" || s.kind == ScheduleKind::kConstant ||
                 s.final_fraction == 1,
             "config: optimizer 'schedule_free_adamw' runs without a decaying schedule: set "
             "schedule.kind = \"constant\" (a warmup is allowed), got ", schedule_kind_name(s.kind),
             " with final_fraction ", format_exact(s.final_fraction));
  WAVG_CHECK(s.total_steps >= 1, "config: 'schedule.total_steps' must be >= 1, got ", s.total_steps);
  WAVG_CHECK(s.warmup_steps >= 0 && s.warmup_steps <= s.total_steps, "config: 'schedule.warmup' ",
             "must be in [0, schedule.total_steps = ", s.total_steps, "] steps, got ", s.warmup_steps);
  check_range("schedule.final_fraction", s.final_fraction, 0, 1, false, "[0, 1]");
  WAVG_CHECK(std::isfinite(s.decay_fraction) && s.decay_fraction > 0 && s.decay_fraction <= 1,
             "config: 'schedule.decay_fraction' must be in (0, 1], got ", format_exact(s.decay_fraction));
  Schedule peak = s;
  peak.lr = o.lr;
  validate(peak);
}

}  // namespace

void check_workload_definition(const RunConfig& c) {
  const int64_t today = workload_defaults(c.workload).definition;
  WAVG_CHECK(c.workload_version == today, "config: workload '", c.workload, "' is definition ",
             today, " in this wavg, the configuration was made under definition ",
             c.workload_version, " (its model or data generator changed)");
}

void validate(const RunConfig& c) {
  workload_defaults(c.workload);  // names the known ones
  WAVG_CHECK(c.workload_version >= 1, "config: 'workload_version' must be >= 1, got ",
             c.workload_version);
  WAVG_CHECK(c.seed >= 0, "config: 'seed' must be >= 0, got ", c.seed);
  WAVG_CHECK(c.steps >= 1, "config: 'steps' must be >= 1, got ", c.steps);
  WAVG_CHECK(c.eval_every >= 1, "config: 'eval_every' must be >= 1, got ", c.eval_every);
  WAVG_CHECK(std::isfinite(c.target), "config: 'target' must be finite, got ", format_exact(c.target));
  WAVG_CHECK(!c.out.empty(), "config: 'out' must not be empty");
  WAVG_CHECK(c.batch_size >= 1, "config: 'batch_size' must be >= 1, got ", c.batch_size);
  WAVG_CHECK(c.ckpt_every >= 0, "config: 'ckpt_every' must be >= 0 (0 disables), got ", c.ckpt_every);
  WAVG_CHECK(c.state_every >= 0, "config: 'state_every' must be >= 0 (0 disables), got ",
             c.state_every);
  WAVG_CHECK(c.keep_states >= 1, "config: 'keep_states' must be >= 1, got ", c.keep_states);
  check_device_spec(c.device);  // syntax only: resolve_device() checks the device is there
  WAVG_CHECK(std::isfinite(c.dist_timeout) && c.dist_timeout >= 1 && c.dist_timeout <= 86400,
             "config: 'dist_timeout' must be in [1, 86400] seconds, got ", c.dist_timeout);
  for (auto [key, v] : {std::pair{"threads.intra_op", c.threads.intra_op},
                        std::pair{"threads.blas", c.threads.blas},
                        std::pair{"threads.averaging", c.threads.averaging}})
    WAVG_CHECK(v >= 0 && v <= 256, "config: '", key, "' must be in [0, 256], got ", v);
  check_optimizer_and_schedule(c);
  std::set<std::string> names;
  for (const AveragerEntry* e : bank_order(c)) check_averager(*e, detail::averager_key(c, *e), names);
  check_resources(c, available_memory_bytes());  // before anything trains or allocates
}

}  // namespace wavg
