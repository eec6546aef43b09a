// The one rule for "better" and "reached the target", in the metric's own direction, and steps to
// target as AlgoPerf counts them (`submission_runner.py`: the first evaluation at or past the
// target), with a linearly interpolated value beside it. Used by the runner, the study and the report.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace wavg {

// One evaluation of one model: the metric's value after `step` optimizer steps.
struct CurvePoint {
  int64_t step = 0;
  double value = 0;
};

// value reaches target: value <= target (lower is better) or value >= target (higher is better).
bool reaches(double value, double target, bool lower_is_better);
// a is strictly better than b in the metric's direction (NaN is never better).
bool better(double a, double b, bool lower_is_better);

// The first evaluated step whose value reaches the target (points in step order); nullopt if none.
std::optional<int64_t> steps_to_target(const std::vector<CurvePoint>& curve, double target,
                                       bool lower_is_better);
// The step at which the straight line between the last evaluation that misses the target and the
// first that reaches it crosses the target; the first point's step if it already reaches it;
// nullopt if no point reaches it.
std::optional<double> interpolated_steps_to_target(const std::vector<CurvePoint>& curve,
                                                   double target, bool lower_is_better);
// The best point among those with step <= max_step (max_step < 0: all); the earliest on ties;
// nullopt if there is none.
std::optional<CurvePoint> best_point(const std::vector<CurvePoint>& curve, bool lower_is_better,
                                     int64_t max_step = -1);

}  // namespace wavg
