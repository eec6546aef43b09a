// Direction-aware comparisons and steps to target (see target.h).
#include "wavg/core/target.h"

#include <cmath>

namespace wavg {

bool reaches(double value, double target, bool lower_is_better) {
  return lower_is_better ? value <= target : value >= target;
}

bool better(double a, double b, bool lower_is_better) {
  return lower_is_better ? a < b : a > b;
}

std::optional<int64_t> steps_to_target(const std::vector<CurvePoint>& curve, double target,
                                       bool lower_is_better) {
  for (const CurvePoint& p : curve)
    if (reaches(p.value, target, lower_is_better)) return p.step;
  return std::nullopt;
}

std::optional<double> interpolated_steps_to_target(const std::vector<CurvePoint>& curve,
                                                   double target, bool lower_is_better) {
  for (size_t i = 0; i < curve.size(); ++i) {
    if (!reaches(curve[i].value, target, lower_is_better)) continue;
    if (i == 0) return double(curve[0].step);
    const CurvePoint& a = curve[i - 1];
    const CurvePoint& b = curve[i];
    const double dv = b.value - a.value;
    if (!std::isfinite(a.value) || dv == 0.0) return double(b.step);
    // a misses and b reaches: the crossing lies in (a.step, b.step].
    const double f = (target - a.value) / dv;
    return double(a.step) + f * double(b.step - a.step);
  }
  return std::nullopt;
}

std::optional<CurvePoint> best_point(const std::vector<CurvePoint>& curve, bool lower_is_better,
                                     int64_t max_step) {
  std::optional<CurvePoint> best;
  for (const CurvePoint& p : curve) {
    if (max_step >= 0 && p.step > max_step) continue;
    if (std::isnan(p.value)) continue;
    if (!best || better(p.value, best->value, lower_is_better)) best = p;
  }
  return best;
}

}  // namespace wavg
