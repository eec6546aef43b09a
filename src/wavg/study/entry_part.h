// Internals of entry_analyses.cpp and entry_additions.cpp: one part's entry as the analyses of
// issue 25 read it (direction, target, budget, per-seed curves), and the conversions they share.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "wavg/study/intervals.h"
#include "wavg/study/json_view.h"
#include "wavg/study/scoring.h"

namespace wavg::study::entry {

using json = nlohmann::ordered_json;
using report::JsonView;

// What every analysis of one part reads: its direction, target, grid and per-seed curves.
struct Part {
  bool lower = true;
  double target = 0;
  int64_t H = 0, eval_every = 0;
  std::vector<std::string> seeds;                 // scoring seeds, as the curves' keys
  std::map<std::string, std::vector<Curve>> curves;  // model -> curve per seed
};

Curve parse_curve(const JsonView& points);
// The per-seed curves of every model in `curves` (a workload's or an arm's).
std::map<std::string, std::vector<Curve>> parse_curves(const JsonView& curves,
                                                       const std::vector<std::string>& seeds);
Part parse_part(const JsonView& e);
const std::vector<Curve>& curves_of(const std::map<std::string, std::vector<Curve>>& c,
                                    const std::string& model);
// Steps to target (AlgoPerf's count, or interpolated) per seed of curves after `transform`.
template <typename Transform>
std::vector<double> times(const std::vector<Curve>& curves, const Part& p, bool interpolated,
                          Transform transform) {
  std::vector<double> t;
  for (const Curve& c : curves) {
    const Curve tc = transform(c);
    t.push_back(interpolated ? interpolated_or_miss(tc, p.target, p.lower)
                             : steps_or_miss(tc, p.target, p.lower));
  }
  return t;
}
// The same on the grid of `every` steps (and H).
std::vector<double> times_on_grid(const std::vector<Curve>& curves, const Part& p, int64_t every,
                                  bool interpolated = false);
// A steps array of a settings row (null: a miss).
std::vector<double> row_times(const JsonView& a);
json ratio_json(const RatioEstimate& r);
json times_json(const std::vector<double>& t);
json interval_json(const Interval& ci);

// Runs added to a part (entry_additions.cpp): the part with the added scoring seeds appended, and
// analysis 6 over seed 0 and the added seeds (see entry_analyses.h).
Part with_added_seeds(const Part& p, const JsonView& addition);
json schedules_over_seeds(const Part& p, const JsonView& e, const JsonView& addition);

}  // namespace wavg::study::entry
