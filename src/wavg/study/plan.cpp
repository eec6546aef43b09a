// The study's plan and the RunConfig of each run (see plan.h).
#include "wavg/study/plan.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "wavg/core/format.h"
#include "wavg/core/schedule.h"
#include "wavg/torch/optim_config.h"

namespace wavg::study {

namespace {

// Directory names and labels: "%.10g", as the study has always named its runs.
std::string num(double v) { return format_number(v, 10); }

BankSetting lawa_setting(const std::string& name, int64_t window, int64_t every, int64_t budget) {
  return {LawaOptions(window).every(every).name(name), lawa_horizon(window, every, budget)};
}

BankSetting ema_setting(const std::string& name, double beta, int64_t every, int64_t budget) {
  return {EmaOptions(beta).every(every).name(name), ema_horizon(beta, every, budget)};
}

std::vector<BankSetting> full_bank(const StudyConfig& c, int64_t H) {
  std::vector<BankSetting> bank = recommended_settings(c.recommended_horizon, H);
  for (int64_t L : c.lawa_window)
    for (int64_t nu : c.lawa_every)
      bank.push_back(lawa_setting("lawa_L" + std::to_string(L) + "_nu" + std::to_string(nu), L,
                                  nu, H));
  for (double b : c.ema_beta)
    for (int64_t nu : c.ema_every)
      bank.push_back(ema_setting("ema_b" + num(b) + "_nu" + std::to_string(nu), b, nu, H));
  return bank;
}

std::vector<ScheduleVariant> schedule_variants(const StudyConfig& c) {
  std::vector<ScheduleVariant> v;
  for (double f : c.schedule_final) {
    const std::string label = f == 0.0   ? "cosine to 0 (baseline)"
                              : f == 1.0 ? "no decay (constant)"
                                         : "cosine to " + num(f) + "·lr";
    v.push_back({label, f == 0.0 ? "seed_0" : "sched_final" + num(f), f, 1.0});
  }
  v.push_back({"shorter: cosine to 0 at " + num(c.short_schedule) + "·budget", "sched_short", 0.0,
               c.short_schedule});
  return v;
}

}  // namespace

std::vector<BankSetting> recommended_settings(double horizon, int64_t budget) {
  const double span = horizon * double(budget);  // steps
  const int64_t every = std::max<int64_t>(1, std::llround(span / 20.0));
  const double beta = std::max(0.0, 1.0 - double(every) / span);
  return {lawa_setting("lawa_rec", 20, every, budget), ema_setting("ema_rec", beta, every, budget)};
}

std::vector<WorkloadPlan> plan_study(const StudyConfig& c) {
  std::vector<WorkloadPlan> plans;
  for (size_t i = 0; i < c.workloads.size(); ++i) {
    WorkloadPlan p;
    p.name = c.workloads[i];
    p.defaults = workload_defaults(p.name);
    const int64_t base = c.steps.empty() || c.steps[i] <= 0 ? p.defaults.steps : c.steps[i];
    p.T = std::max<int64_t>(20, std::llround(double(base) * c.steps_scale));
    p.H = (4 * p.T + 2) / 3;  // ⌈4/3·T⌉
    p.eval_every = std::max<int64_t>(1, p.T / c.eval_points);
    const std::vector<double> wds =
        c.weight_decay.empty() ? std::vector<double>{p.defaults.weight_decay} : c.weight_decay;
    for (double ls : c.lr_scale)
      for (double wd : wds)
        for (double wu : c.warmup) p.grid.push_back({p.defaults.lr * ls, wd, wu});
    p.grid_bank = recommended_settings(c.recommended_horizon, p.T);
    p.bank = full_bank(c, p.H);
    if (i == 0) p.schedules = schedule_variants(c);
    plans.push_back(p);
  }
  return plans;
}

int64_t planned_steps(const WorkloadPlan& p, int64_t seeds) {
  int64_t steps = int64_t(p.grid.size()) * p.T + seeds * p.H;
  for (const ScheduleVariant& v : p.schedules)
    if (v.dir_name != "seed_0") steps += p.H;
  return steps;
}

std::string workload_dir(const std::string& study_dir, const WorkloadPlan& plan) {
  return study_dir + "/runs/" + plan.name;
}

std::string grid_dir_name(const GridPoint& g) {
  return "grid_lr" + num(g.lr) + "_wd" + num(g.weight_decay) + "_wu" + num(g.warmup);
}

RunConfig study_run_config(const WorkloadPlan& plan, const std::string& dir, int64_t steps,
                           int64_t seed, const GridPoint& point,
                           const std::vector<BankSetting>& bank, int threads,
                           const ScheduleVariant* variant) {
  RunConfig c = default_run_config(plan.name);
  c.seed = seed;
  c.steps = steps;
  c.eval_every = plan.eval_every;
  c.out = dir;
  c.ckpt_every = 0;
  c.state_every = std::max<int64_t>(plan.eval_every, steps / 4);
  if (threads > 0) c.threads = {/*intra_op=*/threads, /*blas=*/1, /*averaging=*/threads};
  c.optimizer.name = "nadamw";
  c.optimizer.lr = point.lr;
  c.optimizer.weight_decay = point.weight_decay;
  validate(c.optimizer);
  c.schedule.kind = ScheduleKind::kCosine;
  c.schedule.lr = point.lr;
  c.schedule.warmup_steps = std::llround(point.warmup * double(steps));
  c.schedule.total_steps = steps;
  c.schedule.final_fraction = 0.0;
  if (variant) {
    c.schedule.final_fraction = variant->final_fraction;
    if (variant->decay_fraction < 1.0)
      c.schedule.total_steps =
          std::max<int64_t>(1, std::llround(variant->decay_fraction * double(steps)));
  }
  validate(c.schedule);
  c.averagers.clear();
  for (const BankSetting& s : bank) {
    validate(s.options);
    AveragerEntry e;
    e.averager = s.options;
    // BatchNorm statistics are averaged like weights (DESIGN.md §2: stale statistics sank the
    // AlgoPerf v0.5 entries).
    e.buffers = BufferPolicy::kAverage;
    c.averagers.push_back(e);
  }
  return c;
}

}  // namespace wavg::study
