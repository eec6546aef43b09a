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

struct WorkloadPlan {
  std::string name;
  WorkloadDefaults defaults;
  int64_t T = 0;           // budget of the grid (steps)
  int64_t H = 0;           // hard budget ⌈4/3·T⌉ of the seed runs (steps)
  int64_t eval_every = 0;  // steps, the same in both budgets
  std::vector<GridPoint> grid;
  std::vector<BankSetting> grid_bank;   // the recommended averagers at budget T
  std::vector<BankSetting> bank;        // the recommended ones and the bank at budget H
  std::vector<ScheduleVariant> schedules;  // analysis 6: the first workload only
};

std::vector<WorkloadPlan> plan_study(const StudyConfig& config);

// Training steps of the workload's runs (for the progress line's ETA).
int64_t planned_steps(const WorkloadPlan& plan, int64_t seeds);

// The recommended settings (DESIGN.md §4, paper App. B): LAWA with L = 20 and
// ν = max(1, round(h·budget/20)), so that ν·L ≈ h·budget; EMA with the same ν and
// β = max(0, 1 − ν/(h·budget)), so that ν/(1−β) = h·budget. Named lawa_rec and ema_rec.
std::vector<BankSetting> recommended_settings(double horizon, int64_t budget);

// Run directories, below STUDY_DIR/runs/WORKLOAD/.
std::string workload_dir(const std::string& study_dir, const WorkloadPlan& plan);
std::string grid_dir_name(const GridPoint& g);

// A study run: NAdamW with a cosine schedule at `point`, `bank` riding along, evaluations every
// plan.eval_every steps, a state every quarter of the run, no checkpoints. `variant` (optional)
// changes the schedule's final fraction and its length.
RunConfig study_run_config(const WorkloadPlan& plan, const std::string& dir, int64_t steps,
                           int64_t seed, const GridPoint& point,
                           const std::vector<BankSetting>& bank, int threads,
                           const ScheduleVariant* variant = nullptr);

}  // namespace wavg::study
