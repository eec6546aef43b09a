// The study (DESIGN.md §4): a CPU-sized AlgoPerf for weight averaging. Per workload: a small grid
// for the NAdamW baseline (learning rate × weight decay × warmup, seed 0, budget T), the best point
// rerun with several seeds at the hard budget ⌈4/3·T⌉ with a bank of LAWA and EMA settings riding
// each trajectory; the target is the median over seeds of the best raw validation value within the
// first T steps. Methods are scored by steps to target (median over seeds, a miss is ∞),
// performance ratios, the performance profile ρ(τ), τ ∈ [1, 4], and its normalised area (the
// benchmark score), every one in the workload's direction (lower or higher is better). Analyses
// 1–7 of DESIGN.md §4 go to STUDY_DIR/results.json (schema "study-v2"), with everything the report
// draws: per workload its "direction" ("min" or "max") and the per-seed curves of the raw model and
// the recommended averages, "curves": {seed: {model: [[step, value], ...]}}, so that the report
// rebuilds from results.json alone. Each run lives in STUDY_DIR/runs/...; finished runs are skipped,
// interrupted ones resumed, and one made with another configuration refused, so a study continues
// where it stopped.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wavg {

struct StudyConfig {
  std::vector<std::string> workloads = {"fmnist_cnn", "text_lm", "synth_ctr"};
  std::vector<int64_t> steps;  // T per workload; empty or 0: the workload's default
  double steps_scale = 1.0;    // multiplies every T (the quick profile shrinks it)
  int64_t seeds = 3;
  int64_t eval_points = 20;  // evaluations per run
  std::vector<double> lr_scale = {0.5, 1.0, 2.0};  // × the workload's default learning rate
  std::vector<double> weight_decay;                // empty: the workload's default
  std::vector<double> warmup = {0.05};             // fractions of the budget
  std::vector<int64_t> lawa_window = {5, 10, 20};
  std::vector<int64_t> lawa_every = {1, 4, 16};
  std::vector<double> ema_beta = {0.9, 0.98};
  std::vector<int64_t> ema_every = {1, 4, 16};
  double recommended_horizon = 0.01;  // the methods nadamw+lawa / nadamw+ema: L = 20 at this horizon
  std::vector<double> schedule_final = {0.0, 0.5, 1.0};  // analysis 6, on the first workload
  double short_schedule = 0.75;  // analysis 6: decay over this fraction of the hard budget
  int threads = 0;               // 0: measured defaults
};

// Reads a study TOML file (keys as in StudyConfig; unknown keys are errors). `quick` applies the
// [quick] table of the file (or built-in small budgets) over it.
StudyConfig load_study_config(const std::string& path, bool quick);

// Runs (or continues) the study and writes STUDY_DIR/results.json. Prints progress with an ETA.
void run_study(const StudyConfig& config, const std::string& study_dir, bool quiet = false);

}  // namespace wavg
