// The study (DESIGN.md §4, issue 12): a CPU-sized AlgoPerf for weight averaging. Per workload:
// (1) a small NAdamW grid at budget T, seed 0, the schedule decaying at T; (2) target-setting runs:
// the best point at budget T with `target_seeds` seeds kept apart from the scoring seeds, target =
// the median of their best validation values; (3) scoring runs: `seeds` seeds at the hard budget
// H = ⌈4/3·T⌉, the schedule over H, the bank riding, the raw model and the pre-registered averages
// (LAWA L = 20, EMA β = 19/21 at the same ν = max(1, round(0.01·H/20))) evaluated every
// `eval_fraction` of H and the rest of the bank at ~`bank_points` points, with T an evaluation
// point; (4) the regime check from the baseline alone; (5) on the first workload the schedule
// variants of analysis 6. Steps to target as AlgoPerf counts them and linearly interpolated.
// The language-model protocol (paper §7) runs on `lm_workload`: an AdamW grid (lr, final lr,
// warmup, weight decay, clipping) at budget H by best value, target = median over target seeds of
// the value at step ⌊H/3⌋, scored on other seeds. Each workload and the LM protocol is a part
// (`--workload NAME`, NAME a workload or "lm_protocol") written to STUDY_DIR/parts/NAME.json; every
// invocation merges the parts present into STUDY_DIR/results.json (schema "study-v4": the parts'
// entries with issue 25's intervals, one-grid rows, tuned rows and fixed-budget values computed
// from the entries alone), which holds everything the report draws. Each run lives in
// STUDY_DIR/runs/...; finished runs are skipped,
// interrupted ones resumed, one made with another configuration refused.
// Further optimizer arms (issue 13, `[[arm]]` tables) ride a workload's protocol: each is tuned
// over its own learning-rate grid at T (seed 0, the raw model's best value), then runs the scoring
// seeds at H with the pre-registered averages, and is scored against the workload's NAdamW target.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wavg {

// An optimizer arm beside the NAdamW baseline: Shampoo, Schedule-Free AdamW, NAdamW + Lookahead...
struct ArmConfig {
  std::string name;                      // its methods: NAME, NAME+lawa, NAME+ema
  std::string optimizer = "nadamw";      // optimizer.name of `wavg train`
  std::vector<double> lr_scale = {1.0};  // its grid: × the workload's default learning rate
  bool decay = true;                     // cosine to 0 over the budget; false: constant after warmup
  int64_t lookahead_k = 0;               // 0: no Lookahead
  double lookahead_alpha = 0.5;
  int64_t shampoo_precondition_frequency = 0;  // 0: the optimizer's default
  std::vector<std::string> workloads;    // empty: every workload of the study
};

struct StudyConfig {
  std::vector<std::string> workloads = {"fmnist_cnn", "text_lm", "synth_ctr"};
  std::vector<int64_t> steps;       // T per workload; empty or 0: the workload's default
  std::vector<int64_t> batch_size;  // per workload; empty or 0: the workload's default
  double steps_scale = 1.0;         // multiplies every T and the LM budget (--quick shrinks it)
  int64_t seeds = 5;                // scoring seeds 0 .. seeds-1
  int64_t target_seeds = 3;         // target-setting seeds 1000, 1001, ... (never scoring seeds)
  double eval_fraction = 0.01;      // raw and pre-registered averages: every this fraction of H
  int64_t bank_points = 20;         // the rest of the bank (and the grid): about this many evaluations
  std::vector<double> lr_scale = {0.5, 1.0, 2.0};  // × the workload's default learning rate
  std::vector<double> weight_decay;                // empty: the workload's default
  std::vector<double> warmup = {0.05};             // fractions of the budget
  std::vector<int64_t> lawa_window = {5, 10, 20};
  std::vector<int64_t> lawa_every = {1, 4, 16};
  std::vector<double> ema_beta = {0.9, 0.98};
  std::vector<int64_t> ema_every = {1, 4, 16};
  double recommended_horizon = 0.01;  // pre-registered: ν = max(1, round(h·H/20))
  std::vector<double> schedule_final = {0.0, 0.5, 1.0};  // analysis 6, on the first workload
  double short_schedule = 0.75;  // analysis 6: decay over this fraction of the hard budget
  // The LM protocol (paper §7); lm_workload empty: not run.
  std::string lm_workload = "text_lm";
  int64_t lm_steps = 0;          // its budget H; 0: ⌈4/3·⌉ the workload's default T
  int64_t lm_batch_size = 0;     // 0: the workload's default
  std::vector<double> lm_lr_scale = {0.5, 1.0, 2.0};
  std::vector<double> lm_final_fraction = {0.0, 0.1};
  std::vector<double> lm_warmup = {0.01, 0.1};
  std::vector<double> lm_weight_decay;  // empty: the workload's default
  std::vector<double> lm_clip = {0.0, 1.0};  // 0: no clipping
  int threads = 0;               // 0: measured defaults
  std::vector<ArmConfig> arms;   // `[[arm]]`: further optimizers under the same protocol
  // Kaddour's EXP windows in the bank: L = 20 at the pre-registered ν, evaluated as finely as the
  // pre-registered averages, one per decay α (named exp_rec_a<α>).
  std::vector<double> lawa_exp_alpha;
};

// Reads a study TOML file (keys as in StudyConfig; unknown keys are errors). `quick` applies the
// [quick] table of the file (or built-in small budgets) over it.
StudyConfig load_study_config(const std::string& path, bool quick);

// The parts of the study: its workloads, then "lm_protocol" if lm_workload is set.
std::vector<std::string> study_parts(const StudyConfig& config);

// Runs (or continues) the parts named in `parts` (empty: every part), writes each to
// STUDY_DIR/parts/NAME.json, then merges every part present into STUDY_DIR/results.json. A part
// name that is not in the study, or a part file written under another protocol, is a wavg::Error.
// Each part and results.json record the workload definitions the runs were made under
// ("workload_definitions", study/part_definitions.h); a part made under a definition other than
// this wavg's is a wavg::Error unless `accept_other_definitions` (then a warning).
// Prints progress with an ETA.
void run_study(const StudyConfig& config, const std::string& study_dir, bool quiet = false,
               const std::vector<std::string>& parts = {}, bool accept_other_definitions = false);

// Merges the parts present in STUDY_DIR/parts into STUDY_DIR/results.json without running anything
// (a committed study rebuilds from its committed parts). wavg::Error as run_study's merge.
void merge_study(const StudyConfig& config, const std::string& study_dir, bool quiet = false,
                 bool accept_other_definitions = false);

}  // namespace wavg
