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

double study_target(const std::vector<Curve>& raw_by_seed, int64_t T, bool lower_is_better) {
  std::vector<double> bests;
  for (const Curve& c : raw_by_seed) {
    const double b = best_value(c, lower_is_better, T);
    WAVG_CHECK(!std::isnan(b), "study: a seed run has no evaluation within the first ", T,
               " steps, so the target is undefined");
    bests.push_back(b);
  }
  WAVG_CHECK(!bests.empty(), "study: no seed runs to set the target from");
  // The median of bests that are all finite: negating the values negates it exactly.
  return median(bests);
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
