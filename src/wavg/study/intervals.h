// Intervals over seeds (issue 25, DESIGN.md §4 "every claim carries a bootstrap 95 % interval"):
// the exact bootstrap, which enumerates every resample with replacement of the n seeds (n^n of
// them; 5 seeds: 3 125) as the C(2n−1, n) multisets of seed counts, each weighted by its multinomial
// coefficient n!/∏c_i!, so that weighted quantiles equal those of the n^n sequences; the ratio of
// medians with a missed target counted as ∞; and the curve transforms of the robustness checks
// (one shared evaluation grid, subsampling, a trailing mean). Pure functions, no files.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "wavg/study/scoring.h"

namespace wavg::study {

// A resample: how often each of the n items was drawn (the counts sum to n).
using Counts = std::vector<int>;

// More items than this are not enumerated (12 items: 1 352 078 multisets).
constexpr size_t kMaxBootstrapItems = 12;

// A 95 % percentile interval. Of the N = n^n resample values sorted ascending (v_0 <= ... <=
// v_{N−1}), lo = v_⌊0.025·N⌋ and hi = v_⌈0.975·N⌉−1: at most 2.5 % of the resamples lie below lo
// and at most 2.5 % above hi. hi = ∞ means the interval is open above.
struct Interval {
  double lo = 0, hi = 0;
};

// The exact bootstrap interval of `stat` over every resample of n items (1 <= n <=
// kMaxBootstrapItems; otherwise wavg::Error). `stat` must not return NaN.
Interval bootstrap_interval(size_t n, const std::function<double(const Counts&)>& stat);
// Two independent samples of m and n items, resampled independently (m^m · n^n resamples).
Interval bootstrap_interval2(size_t m, size_t n,
                             const std::function<double(const Counts&, const Counts&)>& stat);

// The values drawn by a resample: values[i] repeated counts[i] times.
std::vector<double> resampled(const std::vector<double>& values, const Counts& counts);

// t / base with misses (∞): ∞/finite = ∞, finite/∞ = 0, ∞/∞ = 1 (neither reaches the target: no
// difference can be measured).
double time_ratio(double t, double base);
// median(t) / median(base) over the same resample of paired seeds (time_ratio of the medians).
double ratio_of_medians(const std::vector<double>& t, const std::vector<double>& base,
                        const Counts& counts);

// A paired comparison of times (steps to target, kMiss for a miss) over the same seeds.
struct RatioEstimate {
  std::vector<double> per_seed;  // time_ratio(t_s, base_s); NaN where both miss
  double ratio = 0;              // median(t) / median(base) (time_ratio)
  Interval ci;                   // exact bootstrap over seeds, paired
  std::string verdict;           // "faster" (ci.hi < 1), "slower" (ci.lo > 1), "within noise";
                                 // "one seed: not resolved" for a single seed (no interval)
};
RatioEstimate ratio_estimate(const std::vector<double>& t, const std::vector<double>& base);

// A paired comparison of values (best value, value at H): gain_s = the average's value minus the
// raw one in the metric's better direction (positive: the average is better).
struct GainEstimate {
  std::vector<double> per_seed;
  double mean = 0;      // mean of the paired gains
  Interval ci;          // exact bootstrap of that mean
  std::string verdict;  // "better" (ci.lo > 0), "worse" (ci.hi < 0), "within noise"; one seed:
                        // "one seed: not resolved"
};
GainEstimate gain_estimate(const std::vector<double>& value, const std::vector<double>& base,
                           bool lower_is_better);

// The curve at the evaluations on the grid of `every` steps: steps that are multiples of `every`,
// and the run's last step `last` (every run evaluates its end).
Curve on_grid(const Curve& curve, int64_t every, int64_t last);
// The mean of each evaluation and the `window` − 1 before it, from the window-th evaluation on.
Curve trailing_mean(const Curve& curve, size_t window);

}  // namespace wavg::study
