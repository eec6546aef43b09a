// The study's scoring: pure functions of curves and the direction (see scoring.h).
#include "wavg/study/scoring.h"

#include <algorithm>
#include <cmath>

#include "wavg/core/error.h"

namespace wavg::study {

const char* direction_name(bool lower_is_better) { return lower_is_better ? "min" : "max"; }

bool parse_direction(const std::string& name) {
  WAVG_CHECK(name == "min" || name == "max", "direction must be \"min\" or \"max\", got \"", name,
             "\"");
  return name == "min";
}

const Curve& model_curve(const ModelCurves& curves, const std::string& model) {
  const auto it = curves.find(model);
  WAVG_CHECK(it != curves.end(), "study: the run has no curve of the model '", model, "'");
  return it->second;
}

double steps_or_miss(const Curve& curve, double target, bool lower_is_better) {
  const std::optional<int64_t> s = steps_to_target(curve, target, lower_is_better);
  return s ? double(*s) : kMiss;
}

double best_value(const Curve& curve, bool lower_is_better, int64_t max_step) {
  const std::optional<CurvePoint> p = best_point(curve, lower_is_better, max_step);
  return p ? p->value : std::nan("");
}

double median(std::vector<double> values) {
  if (values.empty()) return kMiss;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  if (n % 2) return values[n / 2];
  return 0.5 * (values[n / 2 - 1] + values[n / 2]);  // ∞ if the upper middle is a miss
}

MeanStd mean_std(const std::vector<double>& values) {
  MeanStd r;
  if (values.empty()) return r;
  for (double v : values) r.mean += v / double(values.size());
  if (values.size() < 2) return r;
  double ss = 0;
  for (double v : values) ss += (v - r.mean) * (v - r.mean);
  r.std = std::sqrt(ss / double(values.size() - 1));
  return r;
}

double interpolated_or_miss(const Curve& curve, double target, bool lower_is_better) {
  const std::optional<double> s = interpolated_steps_to_target(curve, target, lower_is_better);
  return s ? *s : kMiss;
}

double value_at(const Curve& curve, int64_t step) {
  for (const CurvePoint& p : curve)
    if (p.step == step) return p.value;
  return std::nan("");
}

double study_target(const std::vector<Curve>& target_raw, bool lower_is_better) {
  WAVG_CHECK(!target_raw.empty(), "study: no target-setting runs to set the target from");
  std::vector<double> bests;
  for (const Curve& c : target_raw) {
    const double b = best_value(c, lower_is_better);
    WAVG_CHECK(!std::isnan(b), "study: a target-setting run has no evaluation, so the target is "
                               "undefined");
    bests.push_back(b);
  }
  // The median of bests that are all finite: negating the values negates it exactly.
  return median(bests);
}

RegimeCheck regime_check(const std::vector<Curve>& target_raw, const std::vector<Curve>& scoring_raw,
                         int64_t T, bool lower_is_better) {
  std::vector<double> decayed, raw;
  for (const Curve& c : target_raw) {
    WAVG_CHECK(!c.empty() && c.back().step == T, "study: a target-setting run does not end with ",
               "an evaluation at T = ", T);
    decayed.push_back(c.back().value);
  }
  for (const Curve& c : scoring_raw) {
    const double v = value_at(c, T);
    WAVG_CHECK(!std::isnan(v), "study: a scoring run has no raw evaluation at T = ", T);
    raw.push_back(v);
  }
  RegimeCheck r;
  r.decayed_at_T = median(decayed);
  r.raw_at_T = median(raw);
  r.seed_spread = mean_std(raw).std;
  const double gain = lower_is_better ? r.raw_at_T - r.decayed_at_T : r.decayed_at_T - r.raw_at_T;
  r.passes = gain > r.seed_spread;
  return r;
}

size_t best_index(const std::vector<double>& values, bool lower_is_better) {
  std::optional<size_t> best;
  for (size_t i = 0; i < values.size(); ++i) {
    if (std::isnan(values[i])) continue;
    if (!best || better(values[i], values[*best], lower_is_better)) best = i;
  }
  WAVG_CHECK(best.has_value(), "study: no grid point has a best value (no evaluations)");
  return *best;
}

namespace {

MethodScore score_one(const std::map<std::string, std::map<std::string, double>>& times,
                      const std::string& method) {
  MethodScore s;
  std::vector<double> ratios;
  for (const auto& [workload, by_method] : times) {
    double best = kMiss;
    for (const auto& [m, t] : by_method) best = std::min(best, t);
    const auto it = by_method.find(method);
    WAVG_CHECK(it != by_method.end(), "study: workload '", workload, "' has no time for ", method);
    const double r = std::isfinite(it->second) && std::isfinite(best) ? it->second / best : kMiss;
    s.ratio[workload] = r;
    ratios.push_back(r);
  }
  const double step = (kTauMax - 1.0) / (kProfilePoints - 1);
  for (int k = 0; k < kProfilePoints; ++k) {
    const double tau = 1.0 + step * k;
    double rho = 0;
    for (double r : ratios) rho += r <= tau ? 1.0 / double(ratios.size()) : 0.0;
    if (k > 0) s.score += 0.5 * (rho + s.profile.back().second) * step;  // trapezoid
    s.profile.push_back({tau, rho});
  }
  s.score /= kTauMax - 1.0;
  return s;
}

}  // namespace

std::map<std::string, MethodScore> score_methods(
    const std::map<std::string, std::map<std::string, double>>& times,
    const std::vector<std::string>& methods) {
  std::map<std::string, MethodScore> out;
  for (const std::string& m : methods) out[m] = score_one(times, m);
  return out;
}

std::optional<QuadraticFit> quadratic_fit(const std::vector<std::pair<double, double>>& points) {
  if (points.size() < 3) return std::nullopt;
  // Normal equations: Σ x^(i+j) c_j = Σ x^i y, i, j ∈ {0, 1, 2}.
  double s[5] = {0, 0, 0, 0, 0}, t[3] = {0, 0, 0};
  for (const auto& [x, y] : points) {
    double p = 1;
    for (int k = 0; k < 5; ++k) {
      s[k] += p;
      if (k < 3) t[k] += p * y;
      p *= x;
    }
  }
  const double m[3][3] = {{s[0], s[1], s[2]}, {s[1], s[2], s[3]}, {s[2], s[3], s[4]}};
  auto det = [](const double a[3][3]) {
    return a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) -
           a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
           a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
  };
  const double d = det(m);
  if (std::abs(d) < 1e-12) return std::nullopt;
  double c[3];
  for (int k = 0; k < 3; ++k) {  // Cramer: column k replaced by t
    double mk[3][3];
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) mk[i][j] = j == k ? t[i] : m[i][j];
    c[k] = det(mk) / d;
  }
  return QuadraticFit{c[0], c[1], c[2]};
}

}  // namespace wavg::study
