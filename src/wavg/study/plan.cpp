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

}  // namespace

BankSetting lawa_setting(const std::string& name, int64_t window, int64_t every, int64_t budget,
                         int64_t eval_every) {
  return {LawaOptions(window).every(every).name(name), lawa_horizon(window, every, budget),
          eval_every};
}

BankSetting ema_setting(const std::string& name, double beta, int64_t every, int64_t budget,
                        int64_t eval_every) {
  return {EmaOptions(beta).every(every).name(name), ema_horizon(beta, every, budget), eval_every};
}

namespace {

// Kaddour's EXP windows (L = 20 at the pre-registered ν), as finely evaluated as lawa_rec.
std::vector<BankSetting> exp_windows(const StudyConfig& c, const WorkloadPlan& p) {
  std::vector<BankSetting> v;
  const BankSetting lawa = recommended_settings(c.recommended_horizon, p.H, p.eval_every)[0];
  for (double a : c.lawa_exp_alpha) {
    LawaExpOptions o(window_of(lawa.options), a);
    o.every(lawa.options.every()).name("exp_rec_a" + num(a));
    v.push_back({o, lawa.horizon, p.eval_every});
  }
  return v;
}

std::vector<ArmPlan> arm_plans(const StudyConfig& c, const WorkloadPlan& p) {
  std::vector<ArmPlan> arms;
  for (const ArmConfig& a : c.arms) {
    if (!a.workloads.empty() &&
        std::find(a.workloads.begin(), a.workloads.end(), p.name) == a.workloads.end())
      continue;
    ArmPlan arm;
    arm.name = a.name;
    arm.optimizer = a.optimizer;
    arm.decay = a.decay;
    arm.lookahead_k = a.lookahead_k;
    arm.lookahead_alpha = a.lookahead_alpha;
    arm.shampoo_precondition_frequency = a.shampoo_precondition_frequency;
    for (double ls : a.lr_scale)
      arm.grid.push_back({p.defaults.lr * ls, p.grid.front().weight_decay, p.grid.front().warmup});
    arms.push_back(arm);
  }
  return arms;
}

std::vector<BankSetting> full_bank(const StudyConfig& c, const WorkloadPlan& p) {
  const int64_t H = p.H, e = p.bank_eval_every;
  std::vector<BankSetting> bank = recommended_settings(c.recommended_horizon, H, p.eval_every);
  for (int64_t L : c.lawa_window)
    for (int64_t nu : c.lawa_every)
      bank.push_back(lawa_setting("lawa_L" + std::to_string(L) + "_nu" + std::to_string(nu), L,
                                  nu, H, e));
  for (double b : c.ema_beta)
    for (int64_t nu : c.ema_every)
      bank.push_back(ema_setting("ema_b" + num(b) + "_nu" + std::to_string(nu), b, nu, H, e));
  for (const BankSetting& s : exp_windows(c, p)) bank.push_back(s);
  return bank;
}

std::vector<int64_t> seed_range(int64_t first, int64_t count) {
  std::vector<int64_t> v;
  for (int64_t i = 0; i < count; ++i) v.push_back(first + i);
  return v;
}

// A multiple of e near `points` evaluations over H.
int64_t coarse_interval(int64_t H, int64_t e, int64_t points) {
  return e * std::max<int64_t>(1, std::llround(double(H) / double(points) / double(e)));
}

// Analysis 6 (the first workload): none when schedule_final is empty.
std::vector<ScheduleVariant> schedule_variants(const StudyConfig& c) {
  std::vector<ScheduleVariant> v;
  if (c.schedule_final.empty()) return v;
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

std::vector<BankSetting> recommended_settings(double horizon, int64_t budget, int64_t eval_every) {
  constexpr int64_t L = 20;
  const int64_t every = std::max<int64_t>(1, std::llround(horizon * double(budget) / double(L)));
  const double beta = double(L - 1) / double(L + 1);
  return {lawa_setting("lawa_rec", L, every, budget, eval_every),
          ema_setting("ema_rec", beta, every, budget, eval_every)};
}

Budgets study_budgets(int64_t T_nominal, double f) {
  // e <= f·H for H = ⌈4/3·T'⌉ with |T' − T| <= e/2: e <= f·(4/3)·T/(1 + 2f/3); f/(1+f) is safe.
  const int64_t e = std::max<int64_t>(1, int64_t(f * 4.0 * double(T_nominal) / 3.0 / (1.0 + f)));
  Budgets b;
  b.eval_every = e;
  b.T = std::max<int64_t>(e, std::llround(double(T_nominal) / double(e)) * e);
  b.H = (4 * b.T + 2) / 3;  // ⌈4/3·T⌉
  return b;
}

std::vector<WorkloadPlan> plan_study(const StudyConfig& c) {
  std::vector<WorkloadPlan> plans;
  for (size_t i = 0; i < c.workloads.size(); ++i) {
    WorkloadPlan p;
    p.name = c.workloads[i];
    p.defaults = workload_defaults(p.name);
    p.batch_size = c.batch_size.empty() ? 0 : c.batch_size[i];
    const int64_t base = c.steps.empty() || c.steps[i] <= 0 ? p.defaults.steps : c.steps[i];
    const Budgets b = study_budgets(
        std::max<int64_t>(20, std::llround(double(base) * c.steps_scale)), c.eval_fraction);
    p.T = b.T;
    p.H = b.H;
    p.eval_every = b.eval_every;
    p.bank_eval_every = coarse_interval(p.H, p.eval_every, c.bank_points);
    const std::vector<double> wds =
        c.weight_decay.empty() ? std::vector<double>{p.defaults.weight_decay} : c.weight_decay;
    for (double ls : c.lr_scale)
      for (double wd : wds)
        for (double wu : c.warmup) p.grid.push_back({p.defaults.lr * ls, wd, wu});
    p.grid_bank = recommended_settings(c.recommended_horizon, p.H, p.bank_eval_every);
    p.arm_bank = recommended_settings(c.recommended_horizon, p.H, p.eval_every);
    p.arms = arm_plans(c, p);
    p.bank = full_bank(c, p);
    if (i == 0) p.schedules = schedule_variants(c);
    p.target_seeds = seed_range(1000, c.target_seeds);
    p.scoring_seeds = seed_range(0, c.seeds);
    plans.push_back(p);
  }
  return plans;
}

LmPlan plan_lm(const StudyConfig& c) {
  LmPlan p;
  p.name = c.lm_workload;
  p.defaults = workload_defaults(p.name);
  p.batch_size = c.lm_batch_size;
  const int64_t H0 = std::llround(
      double(c.lm_steps > 0 ? c.lm_steps : (4 * p.defaults.steps + 2) / 3) * c.steps_scale);
  // e <= f·H, and H a multiple of 3e (rounded up) so that ⌊H/3⌋ is an evaluation point.
  p.eval_every = std::max<int64_t>(1, int64_t(c.eval_fraction * double(std::max<int64_t>(H0, 30))));
  p.H = std::max<int64_t>(3, (std::max<int64_t>(H0, 30) + 3 * p.eval_every - 1) /
                                 (3 * p.eval_every)) * 3 * p.eval_every;
  p.target_step = p.H / 3;
  p.grid_eval_every = coarse_interval(p.H, p.eval_every, c.bank_points);
  const std::vector<double> wds = c.lm_weight_decay.empty()
                                      ? std::vector<double>{p.defaults.weight_decay}
                                      : c.lm_weight_decay;
  for (double ls : c.lm_lr_scale)
    for (double ff : c.lm_final_fraction)
      for (double wu : c.lm_warmup)
        for (double wd : wds)
          for (double clip : c.lm_clip) p.grid.push_back({p.defaults.lr * ls, ff, wu, wd, clip});
  p.bank = recommended_settings(c.recommended_horizon, p.H, p.eval_every);
  p.target_seeds = seed_range(1000, c.target_seeds);
  p.scoring_seeds = seed_range(0, c.seeds);
  return p;
}

int64_t planned_steps(const WorkloadPlan& p) {
  int64_t steps = int64_t(p.grid.size() + p.target_seeds.size()) * p.T +
                  int64_t(p.scoring_seeds.size()) * p.H;
  for (const ScheduleVariant& v : p.schedules)
    if (v.dir_name != "seed_0") steps += p.H;
  for (const ArmPlan& a : p.arms)
    steps += int64_t(a.grid.size()) * p.T + int64_t(p.scoring_seeds.size()) * p.H;
  return steps;
}

int64_t planned_steps(const LmPlan& p) {
  return int64_t(p.grid.size() + p.target_seeds.size() + p.scoring_seeds.size()) * p.H;
}

std::string workload_dir(const std::string& study_dir, const WorkloadPlan& plan) {
  return study_dir + "/runs/" + plan.name;
}

std::string grid_dir_name(const GridPoint& g) {
  return "grid_lr" + num(g.lr) + "_wd" + num(g.weight_decay) + "_wu" + num(g.warmup);
}

std::string arm_dir(const std::string& workload_dir, const ArmPlan& arm, const std::string& run) {
  return workload_dir + "/arm_" + arm.name + "/" + run;
}

namespace {

void apply_bank(const std::vector<BankSetting>& bank, RunConfig* c) {
  c->averagers.clear();
  for (const BankSetting& s : bank) {
    AveragerEntry e{s.options};
    // BatchNorm statistics are averaged like weights (DESIGN.md §2: stale statistics sank the
    // AlgoPerf v0.5 entries).
    e.buffers = BufferPolicy::kAverage;
    e.eval_every = s.eval_every;
    c->averagers.push_back(e);
  }
}

RunConfig base_config(const std::string& workload, const std::string& dir, int64_t steps,
                      int64_t seed, int64_t batch_size, int64_t eval_every, int threads) {
  RunConfig c = default_run_config(workload);
  c.seed = seed;
  c.steps = steps;
  if (batch_size > 0) c.batch_size = batch_size;
  c.eval_every = eval_every;
  c.out = dir;
  c.ckpt_every = 0;
  c.state_every = std::max<int64_t>(eval_every, steps / 4);
  if (threads > 0) c.threads = {/*intra_op=*/threads, /*blas=*/1, /*averaging=*/threads};
  return c;
}

}  // namespace

RunConfig study_run_config(const WorkloadPlan& plan, const std::string& dir, int64_t steps,
                           int64_t seed, const GridPoint& point,
                           const std::vector<BankSetting>& bank, int64_t eval_every, int threads,
                           const ScheduleVariant* variant, const ArmPlan* arm) {
  RunConfig c = base_config(plan.name, dir, steps, seed, plan.batch_size, eval_every, threads);
  c.optimizer.name = arm ? arm->optimizer : "nadamw";
  if (arm) {
    c.optimizer.lookahead_k = arm->lookahead_k;
    c.optimizer.lookahead_alpha = arm->lookahead_alpha;
    if (arm->shampoo_precondition_frequency > 0)
      c.optimizer.shampoo_precondition_frequency = arm->shampoo_precondition_frequency;
  }
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
  if (arm && !arm->decay) c.schedule.kind = ScheduleKind::kConstant;
  validate(c.schedule);
  apply_bank(bank, &c);
  return c;
}

std::string lm_grid_dir_name(const LmGridPoint& g) {
  return "lm_grid_lr" + num(g.lr) + "_ff" + num(g.final_fraction) + "_wu" + num(g.warmup) +
         "_wd" + num(g.weight_decay) + "_clip" + num(g.clip_norm);
}

RunConfig lm_run_config(const LmPlan& plan, const std::string& dir, int64_t seed,
                        const LmGridPoint& point, const std::vector<BankSetting>& bank,
                        int64_t eval_every, int threads) {
  RunConfig c = base_config(plan.name, dir, plan.H, seed, plan.batch_size, eval_every, threads);
  c.optimizer.name = "adamw";
  c.optimizer.lr = point.lr;
  c.optimizer.weight_decay = point.weight_decay;
  c.optimizer.clip_norm = point.clip_norm;
  validate(c.optimizer);
  c.schedule.kind = ScheduleKind::kCosine;
  c.schedule.lr = point.lr;
  c.schedule.warmup_steps = std::llround(point.warmup * double(plan.H));
  c.schedule.total_steps = plan.H;
  c.schedule.final_fraction = point.final_fraction;
  validate(c.schedule);
  apply_bank(bank, &c);
  return c;
}

}  // namespace wavg::study
