// The study's scoring as pure functions of curves and the metric's direction (DESIGN.md §4): best
// values, steps to target with a miss counted as ∞, medians over seeds, the study target, the grid
// pick, AlgoPerf's performance ratios, profile and score, and the horizon fit. No files, no
// LibTorch. Negating every value and flipping the direction changes no step, ratio or score.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "wavg/core/target.h"

namespace wavg::study {

using Curve = std::vector<CurvePoint>;             // one model's evaluations, in step order
using ModelCurves = std::map<std::string, Curve>;  // one run's curves, by model name

// A missed target: AlgoPerf counts it as an infinite time.
constexpr double kMiss = std::numeric_limits<double>::infinity();

// The direction as results.json stores it: "min" (lower is better) or "max".
const char* direction_name(bool lower_is_better);
// Throws wavg::Error naming the value for anything but "min" and "max".
bool parse_direction(const std::string& name);

// The curve of `model` in `curves`; throws wavg::Error naming the model if the run has none.
const Curve& model_curve(const ModelCurves& curves, const std::string& model);

// The first evaluated step that reaches the target (core/target.h's rule), kMiss if none.
double steps_or_miss(const Curve& curve, double target, bool lower_is_better);
// The best value among evaluations at steps <= max_step (max_step < 0: all); NaN if there is none.
double best_value(const Curve& curve, bool lower_is_better, int64_t max_step = -1);

// The median (mean of the two middle values for an even count); kMiss sorts last, so a majority of
// misses gives kMiss. Empty: kMiss.
double median(std::vector<double> values);
// Mean and sample standard deviation (n − 1; 0 for a single value).
struct MeanStd {
  double mean = 0;
  double std = 0;
};
MeanStd mean_std(const std::vector<double>& values);

// The linearly interpolated steps to target (core/target.h's rule), kMiss if none.
double interpolated_or_miss(const Curve& curve, double target, bool lower_is_better);
// The value evaluated at exactly `step`; NaN if the curve has no evaluation there.
double value_at(const Curve& curve, int64_t step);

// The study target (AlgoPerf, "Defining target performance"): the median over the target-setting
// runs (budget T, decayed at T, seeds apart from the scoring seeds) of their best raw value.
// Throws wavg::Error if there are none or one has no evaluation.
double study_target(const std::vector<Curve>& target_raw, bool lower_is_better);

// The regime check (issue 12 §5), from the baseline alone: decayed_at_T = median over the
// target-setting runs of their value at T; raw_at_T = median over the scoring runs of the raw
// value at step T; seed_spread = the sample standard deviation of the latter; passes when
// decayed_at_T beats raw_at_T in the direction by more than seed_spread.
struct RegimeCheck {
  double decayed_at_T = 0, raw_at_T = 0, seed_spread = 0;
  bool passes = false;
};
RegimeCheck regime_check(const std::vector<Curve>& target_raw, const std::vector<Curve>& scoring_raw,
                         int64_t T, bool lower_is_better);

// The index of the best value (the first one on ties; NaN is never best). Throws wavg::Error if
// every value is NaN.
size_t best_index(const std::vector<double>& values, bool lower_is_better);

// AlgoPerf scoring (Dahl et al. 2023, "Benchmarking Neural Network Training Algorithms", §4.5):
// per workload w and method m the time t_{m,w} (here: median steps to target, kMiss for a miss);
// ratio r_{m,w} = t_{m,w} / min_m' t_{m',w} (kMiss when t_{m,w} or the best is kMiss);
// profile ρ_m(τ) = |{w : r_{m,w} <= τ}| / |W| for τ ∈ [1, 4]; score = ∫_1^4 ρ_m(τ) dτ / 3 by the
// trapezoid rule over kProfilePoints evenly spaced τ.
constexpr int kProfilePoints = 301;
constexpr double kTauMax = 4.0;
struct MethodScore {
  std::map<std::string, double> ratio;              // by workload
  std::vector<std::pair<double, double>> profile;   // (τ, ρ(τ)) at every kProfilePoints
  double score = 0;                                 // in [0, 1]
};
// `times`: workload -> method -> t. Every workload must time every method in `methods`.
std::map<std::string, MethodScore> score_methods(
    const std::map<std::string, std::map<std::string, double>>& times,
    const std::vector<std::string>& methods);

// Least-squares quadratic y = c0 + c1·x + c2·x² (normal equations, Cramer's rule); nullopt for
// fewer than 3 points or a singular system.
struct QuadraticFit {
  double c0 = 0, c1 = 0, c2 = 0;
};
std::optional<QuadraticFit> quadratic_fit(const std::vector<std::pair<double, double>>& points);

}  // namespace wavg::study
