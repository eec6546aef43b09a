// Exact bootstrap intervals over seeds and the robustness transforms of curves (see intervals.h).
#include "wavg/study/intervals.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "wavg/core/error.h"

namespace wavg::study {

namespace {

// Every multiset of n draws from n items, as counts, with its number of orderings n!/∏c_i!.
void for_each_resample(size_t n, const std::function<void(const Counts&, int64_t)>& visit) {
  WAVG_CHECK(n >= 1 && n <= kMaxBootstrapItems, "study: the exact bootstrap enumerates 1 to ",
             kMaxBootstrapItems, " seeds, got ", n);
  std::vector<int64_t> factorial(n + 1, 1);
  for (size_t k = 1; k <= n; ++k) factorial[k] = factorial[k - 1] * int64_t(k);
  Counts c(n, 0);
  // Item i takes 0..left draws; the last item takes what is left.
  std::function<void(size_t, int, int64_t)> rec = [&](size_t i, int left, int64_t denom) {
    if (i + 1 == n) {
      c[i] = left;
      visit(c, factorial[n] / (denom * factorial[size_t(left)]));
      return;
    }
    for (int k = 0; k <= left; ++k) {
      c[i] = k;
      rec(i + 1, left - k, denom * factorial[size_t(k)]);
    }
  };
  rec(0, int(n), 1);
}

// The values at positions ⌊0.025·N⌋ and ⌈0.975·N⌉ − 1 of the weighted values sorted ascending.
Interval weighted_percentiles(std::vector<std::pair<double, int64_t>> v) {
  std::sort(v.begin(), v.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  int64_t total = 0;
  for (const auto& p : v) total += p.second;
  // ⌊0.025·N⌋ = ⌊N/40⌋; ⌈0.975·N⌉ − 1 = N − 1 − ⌊N/40⌋ (exact in integers).
  const int64_t lo_pos = total / 40, hi_pos = total - 1 - total / 40;
  auto at = [&](int64_t pos) {
    int64_t seen = 0;
    for (const auto& p : v) {
      seen += p.second;
      if (pos < seen) return p.first;
    }
    return v.back().first;
  };
  return {at(lo_pos), at(hi_pos)};
}

}  // namespace

Interval bootstrap_interval(size_t n, const std::function<double(const Counts&)>& stat) {
  std::vector<std::pair<double, int64_t>> values;
  for_each_resample(n, [&](const Counts& c, int64_t w) {
    const double s = stat(c);
    WAVG_ASSERT(!std::isnan(s));
    values.push_back({s, w});
  });
  return weighted_percentiles(std::move(values));
}

Interval bootstrap_interval2(size_t m, size_t n,
                             const std::function<double(const Counts&, const Counts&)>& stat) {
  std::vector<std::pair<double, int64_t>> values;
  for_each_resample(m, [&](const Counts& a, int64_t wa) {
    for_each_resample(n, [&](const Counts& b, int64_t wb) {
      const double s = stat(a, b);
      WAVG_ASSERT(!std::isnan(s));
      values.push_back({s, wa * wb});
    });
  });
  return weighted_percentiles(std::move(values));
}

std::vector<double> resampled(const std::vector<double>& values, const Counts& counts) {
  WAVG_ASSERT(values.size() == counts.size());
  std::vector<double> out;
  for (size_t i = 0; i < values.size(); ++i) out.insert(out.end(), size_t(counts[i]), values[i]);
  return out;
}

double time_ratio(double t, double base) {
  if (std::isinf(t) && std::isinf(base)) return 1.0;
  if (std::isinf(base)) return 0.0;
  return t / base;  // ∞ when only t misses
}

double ratio_of_medians(const std::vector<double>& t, const std::vector<double>& base,
                        const Counts& counts) {
  return time_ratio(median(resampled(t, counts)), median(resampled(base, counts)));
}

RatioEstimate ratio_estimate(const std::vector<double>& t, const std::vector<double>& base) {
  WAVG_CHECK(t.size() == base.size() && !t.empty(), "study: a paired ratio needs the same seeds ",
             "on both sides, got ", t.size(), " and ", base.size());
  RatioEstimate r;
  for (size_t i = 0; i < t.size(); ++i)
    r.per_seed.push_back(std::isinf(t[i]) && std::isinf(base[i]) ? std::nan("")
                                                                 : time_ratio(t[i], base[i]));
  r.ratio = time_ratio(median(t), median(base));
  r.ci = bootstrap_interval(t.size(), [&](const Counts& c) { return ratio_of_medians(t, base, c); });
  r.verdict = t.size() < 2        ? "one seed: not resolved"
              : r.ci.hi < 1.0     ? "faster"
              : r.ci.lo > 1.0     ? "slower"
                                  : "within noise";
  return r;
}

GainEstimate gain_estimate(const std::vector<double>& value, const std::vector<double>& base,
                           bool lower_is_better) {
  WAVG_CHECK(value.size() == base.size() && !value.empty(), "study: a paired gain needs the same ",
             "seeds on both sides, got ", value.size(), " and ", base.size());
  GainEstimate g;
  for (size_t i = 0; i < value.size(); ++i)
    g.per_seed.push_back(lower_is_better ? base[i] - value[i] : value[i] - base[i]);
  g.mean = mean_std(g.per_seed).mean;
  g.ci = bootstrap_interval(value.size(),
                            [&](const Counts& c) { return mean_std(resampled(g.per_seed, c)).mean; });
  g.verdict = value.size() < 2 ? "one seed: not resolved"
              : g.ci.lo > 0    ? "better"
              : g.ci.hi < 0    ? "worse"
                               : "within noise";
  return g;
}

Curve on_grid(const Curve& curve, int64_t every, int64_t last) {
  WAVG_CHECK(every >= 1, "study: an evaluation grid needs a positive interval, got ", every);
  Curve out;
  for (const CurvePoint& p : curve)
    if (p.step % every == 0 || p.step == last) out.push_back(p);
  return out;
}

Curve trailing_mean(const Curve& curve, size_t window) {
  WAVG_CHECK(window >= 1, "study: a trailing mean needs a window of at least 1");
  Curve out;
  for (size_t i = window - 1; i < curve.size(); ++i) {
    double sum = 0;
    for (size_t k = i + 1 - window; k <= i; ++k) sum += curve[k].value;
    out.push_back({curve[i].step, sum / double(window)});
  }
  return out;
}

}  // namespace wavg::study
