// The study's plan (DESIGN.md §4): budgets per workload, the baseline grid, the bank of averagers,
// the schedule variants of analysis 6, and the RunConfig of every run, built field by field from
// default_run_config (no TOML text: a path with a quote in it is just a path).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "wavg/study/analyses.h"
#include "wavg/study/study.h"
#include "wavg/train/config.h"
#include "wavg/workloads/defaults.h"

namespace wavg::study {

// One point of the baseline grid.
struct GridPoint {
  double lr = 0;            // peak learning rate
  double weight_decay = 0;
  double warmup = 0;        // fraction of the budget
};

// One schedule of analysis 6, run at the chosen grid point with seed 0 over the hard budget.
struct ScheduleVariant {
  std::string label;
  std::string dir_name;        // "seed_0" for the baseline: that run is seed 0's own
  double final_fraction = 0;   // of the peak learning rate, at the end of the decay
  double decay_fraction = 1;   // of the hard budget, over which the schedule runs
};

// An optimizer arm on one workload (study.h's ArmConfig with its learning rates resolved).
struct ArmPlan {
  std::string name, optimizer;
  bool decay = true;
  int64_t lookahead_k = 0;
  double lookahead_alpha = 0.5;
  int64_t shampoo_precondition_frequency = 0;  // 0: the optimizer's default
  std::vector<GridPoint> grid;  // the workload's weight decay and first warmup
};

struct WorkloadPlan {
  std::string name;
  WorkloadDefaults defaults;
  int64_t batch_size = 0;      // 0: the workload's default
  int64_t T = 0;               // budget of the grid and the target-setting runs (steps)
  int64_t H = 0;               // hard budget ⌈4/3·T⌉ of the scoring runs (steps)
  int64_t eval_every = 0;      // raw and pre-registered averages; T is a multiple of it
  int64_t bank_eval_every = 0; // the rest of the bank and the grid runs: a multiple of eval_every
  std::vector<GridPoint> grid;
  std::vector<BankSetting> grid_bank;   // the pre-registered averagers (horizons over H)
  std::vector<BankSetting> bank;        // the pre-registered ones first, then the bank
  std::vector<ScheduleVariant> schedules;  // analysis 6: the first workload only
  std::vector<ArmPlan> arms;            // further optimizers, scored with grid_bank at eval_every
  std::vector<BankSetting> arm_bank;    // the pre-registered averagers at eval_every
  std::vector<int64_t> target_seeds;    // 1000, 1001, ...
  std::vector<int64_t> scoring_seeds;   // 0, 1, ...
};

// The LM protocol's plan (paper §7): an AdamW grid at budget H, target seeds, scoring seeds.
struct LmGridPoint {
  double lr = 0, final_fraction = 0, warmup = 0, weight_decay = 0, clip_norm = 0;
};
struct LmPlan {
  std::string name;  // the workload
  WorkloadDefaults defaults;
  int64_t batch_size = 0;
  int64_t H = 0;           // budget; a multiple of 3·eval_every, so that ⌊H/3⌋ is evaluated
  int64_t eval_every = 0;  // every eval_fraction of H or finer
  int64_t grid_eval_every = 0;
  int64_t target_step = 0; // ⌊H/3⌋
  std::vector<LmGridPoint> grid;
  std::vector<BankSetting> bank;  // the pre-registered averagers
  std::vector<int64_t> target_seeds, scoring_seeds;
};
LmPlan plan_lm(const StudyConfig& config);
std::string lm_grid_dir_name(const LmGridPoint& g);
// An LM-protocol run: AdamW at `point`, cosine warmup then decay over `steps` to final_fraction.
RunConfig lm_run_config(const LmPlan& plan, const std::string& dir, int64_t seed,
                        const LmGridPoint& point, const std::vector<BankSetting>& bank,
                        int64_t eval_every, int threads);

std::vector<WorkloadPlan> plan_study(const StudyConfig& config);

// Training steps of the workload's runs (for the progress line's ETA).
int64_t planned_steps(const WorkloadPlan& plan);
int64_t planned_steps(const LmPlan& plan);

// The budgets of a workload at evaluation resolution f: e = max(1, ⌊f·(4/3)·T/(1 + f)⌋), T rounded
// to the nearest multiple of e (so that step T is an evaluation point of the scoring runs) and
// H = ⌈4/3·T⌉; then e <= f·H (|ΔT| <= e/2 moves H by at most 2e/3).
struct Budgets {
  int64_t T = 0, H = 0, eval_every = 0;
};
Budgets study_budgets(int64_t T_nominal, double fraction);

// The pre-registered settings (DESIGN.md §4, paper App. B): LAWA with L = 20 and
// ν = max(1, round(h·budget/20)), so that ν·L ≈ h·budget; EMA with the same ν and
// β = (L−1)/(L+1) = 19/21 (equal mean sample age ν(L−1)/2 = νβ/(1−β)). Named lawa_rec and ema_rec;
// `eval_every` is their evaluation interval.
std::vector<BankSetting> recommended_settings(double horizon, int64_t budget, int64_t eval_every = 0);
// One bank setting named `name`: LAWA (window L, every ν) or EMA (β, every ν), its horizon over
// `budget` steps, evaluated every `eval_every` steps.
BankSetting lawa_setting(const std::string& name, int64_t window, int64_t every, int64_t budget,
                         int64_t eval_every);
BankSetting ema_setting(const std::string& name, double beta, int64_t every, int64_t budget,
                        int64_t eval_every);

// Run directories, below STUDY_DIR/runs/WORKLOAD/.
std::string workload_dir(const std::string& study_dir, const WorkloadPlan& plan);
std::string grid_dir_name(const GridPoint& g);
// ARM/grid_lr..., ARM/seed_S: an arm's runs below the workload's directory.
std::string arm_dir(const std::string& workload_dir, const ArmPlan& arm, const std::string& run);

// A study run: NAdamW with a cosine schedule decaying over `steps` at `point`, `bank` riding along
// (each setting with its own evaluation interval), the raw model evaluated every `eval_every`
// steps, a state every quarter of the run, no checkpoints. `variant` (optional) changes the
// schedule's final fraction and its length; `arm` (optional) the optimizer, Lookahead and, for an
// arm without decay, the schedule (constant after the same warmup).
RunConfig study_run_config(const WorkloadPlan& plan, const std::string& dir, int64_t steps,
                           int64_t seed, const GridPoint& point,
                           const std::vector<BankSetting>& bank, int64_t eval_every, int threads,
                           const ScheduleVariant* variant = nullptr,
                           const ArmPlan* arm = nullptr);

}  // namespace wavg::study
