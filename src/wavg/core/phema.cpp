// Post-hoc EMA: σ_rel <-> γ, β_t, response correlations and the least-squares solve (EDM2).
#include "wavg/core/phema.h"

#include <cmath>
#include <utility>

#include "wavg/core/error.h"
#include "wavg/core/format.h"

namespace wavg {

namespace {

// σ_rel² as a function of γ: (γ+1) / ((γ+2)²(γ+3)); increases on (−1, γ_peak], decreases after.
double sigma_rel_squared(double g) { return (g + 1) / ((g + 2) * (g + 2) * (g + 3)); }
// Where d/dγ ln σ² = 1/(γ+1) − 2/(γ+2) − 1/(γ+3) vanishes: γ² + 3γ + 1 = 0.
const double kPeakGamma = (std::sqrt(5.0) - 3.0) / 2.0;

}  // namespace

double phema_max_sigma_rel() { return std::sqrt(sigma_rel_squared(kPeakGamma)); }

double phema_gamma(double sigma_rel) {
  WAVG_CHECK(std::isfinite(sigma_rel) && sigma_rel > 0 && sigma_rel <= phema_max_sigma_rel(),
             "phema: sigma_rel must be in (0, ", format_number(phema_max_sigma_rel(), 6),
             "], got ", format_exact(sigma_rel));
  // The largest root of the cubic is the one on the decreasing branch γ >= γ_peak: bisect there
  // (σ² falls monotonically from its peak to 0 as γ grows), then polish with Newton on the cubic.
  const double target = sigma_rel * sigma_rel;
  double lo = kPeakGamma, hi = 1.0;
  while (sigma_rel_squared(hi) > target) hi *= 2;  // σ² ~ 1/γ²: ends for any σ_rel > 0
  for (int k = 0; k < 200 && hi - lo > 1e-15 * std::max(1.0, std::abs(hi)); ++k) {
    const double mid = 0.5 * (lo + hi);
    (sigma_rel_squared(mid) > target ? lo : hi) = mid;
  }
  const double t = 1.0 / target;
  double g = 0.5 * (lo + hi);
  for (int k = 0; k < 3; ++k) {
    const double p = ((g + 7) * g + (16 - t)) * g + (12 - t);
    const double dp = (3 * g + 14) * g + (16 - t);
    if (dp == 0) break;
    const double next = g - p / dp;
    if (!(next >= lo && next <= hi)) break;
    g = next;
  }
  return g;
}

double phema_sigma_rel(double gamma) {
  WAVG_CHECK(std::isfinite(gamma) && gamma > -1, "phema: gamma must be > -1, got ",
             format_exact(gamma));
  return std::sqrt(sigma_rel_squared(gamma));
}

double phema_beta(double gamma, int64_t step, int64_t every) {
  if (step <= every) return 0.0;
  return std::pow(1.0 - double(every) / double(step), gamma + 1.0);
}

double phema_correlation(const PhemaProfile& a, const PhemaProfile& b) {
  const double ga = phema_gamma(a.sigma_rel), gb = phema_gamma(b.sigma_rel);
  const double ta = double(a.step), tb = double(b.step);
  const double e = ta < tb ? gb : -ga;
  return (ga + 1) * (gb + 1) * std::pow(ta / tb, e) / ((ga + gb + 1) * std::max(ta, tb));
}

std::vector<double> phema_coefficients(const std::vector<PhemaProfile>& inputs,
                                       const PhemaProfile& output) {
  const size_t n = inputs.size();
  WAVG_CHECK(n > 0, "phema: no snapshot to reconstruct from");
  for (const PhemaProfile& p : inputs)
    WAVG_CHECK(p.step >= 1, "phema: snapshot steps must be >= 1, got ", p.step);
  WAVG_CHECK(output.step >= 1, "phema: the step to reconstruct must be >= 1, got ", output.step);
  // A (n × n) | b, solved by Gaussian elimination with partial pivoting (LU, as numpy's solve).
  std::vector<std::vector<double>> a(n, std::vector<double>(n + 1));
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) a[i][j] = phema_correlation(inputs[i], inputs[j]);
    a[i][n] = phema_correlation(inputs[i], output);
  }
  for (size_t col = 0; col < n; ++col) {
    size_t pivot = col;
    for (size_t r = col + 1; r < n; ++r)
      if (std::abs(a[r][col]) > std::abs(a[pivot][col])) pivot = r;
    WAVG_CHECK(a[pivot][col] != 0, "phema: the snapshots' system is singular (a snapshot listed ",
               "twice?)");
    std::swap(a[col], a[pivot]);
    for (size_t r = col + 1; r < n; ++r) {
      const double f = a[r][col] / a[col][col];
      for (size_t j = col; j <= n; ++j) a[r][j] -= f * a[col][j];
    }
  }
  std::vector<double> c(n);
  for (size_t i = n; i-- > 0;) {
    double s = a[i][n];
    for (size_t j = i + 1; j < n; ++j) s -= a[i][j] * c[j];
    c[i] = s / a[i][i];
  }
  double sum = 0;
  for (double v : c) sum += v;
  WAVG_CHECK(std::isfinite(sum) && sum != 0, "phema: the coefficients do not normalise (sum ",
             format_exact(sum), ")");
  for (double& v : c) v /= sum;
  return c;
}

}  // namespace wavg
