// Timing helpers for the benchmarks: interleaved repetitions and medians, so that two variants
// measured side by side see the same machine noise.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

namespace wavg::bench {

inline double seconds_of(const std::function<void()>& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Runs every variant once per round, `rounds` times (after one warm-up round), and returns the
// median time of each.
inline std::vector<double> interleaved(const std::vector<std::function<void()>>& variants,
                                       int rounds) {
  std::vector<std::vector<double>> times(variants.size());
  for (int r = -1; r < rounds; ++r)
    for (size_t i = 0; i < variants.size(); ++i) {
      const double t = seconds_of(variants[i]);
      if (r >= 0) times[i].push_back(t);
    }
  std::vector<double> out;
  for (auto& t : times) out.push_back(median(t));
  return out;
}

}  // namespace wavg::bench
