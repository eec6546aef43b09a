// One part's entry as issue 25's analyses read it (see entry_part.h).
#include "wavg/study/entry_part.h"

#include <cmath>

#include "wavg/core/error.h"
#include "wavg/study/analyses.h"

namespace wavg::study::entry {

Curve parse_curve(const JsonView& points) {
  Curve c;
  for (const JsonView& p : points.elements()) c.push_back({p[0].integer(), p[1].number()});
  return c;
}

std::map<std::string, std::vector<Curve>> parse_curves(const JsonView& curves,
                                                       const std::vector<std::string>& seeds) {
  std::map<std::string, std::vector<Curve>> out;
  for (const std::string& s : seeds)
    for (const std::string& m : curves[s].keys()) out[m].push_back(parse_curve(curves[s][m]));
  for (const auto& [m, c] : out)
    WAVG_CHECK(c.size() == seeds.size(), "study: ", curves.file(), ": the model ", m,
               " has curves on ", c.size(), " of ", seeds.size(), " seeds");
  return out;
}

Part parse_part(const JsonView& e) {
  Part p;
  p.lower = parse_direction(e["direction"].text());
  p.target = e["target"].number();
  p.H = e["budget_H"].integer();
  p.eval_every = e["eval_every"].integer();
  for (const JsonView& s : e["scoring_seeds"].elements())
    p.seeds.push_back(std::to_string(s.integer()));
  p.curves = parse_curves(e["curves"], p.seeds);
  return p;
}

const std::vector<Curve>& curves_of(const std::map<std::string, std::vector<Curve>>& c,
                                    const std::string& model) {
  const auto it = c.find(model);
  WAVG_CHECK(it != c.end(), "study: results.json has no curves of the model ", model);
  return it->second;
}

std::vector<double> times_on_grid(const std::vector<Curve>& curves, const Part& p, int64_t every,
                                  bool interpolated) {
  return times(curves, p, interpolated, [&](const Curve& c) { return on_grid(c, every, p.H); });
}

std::vector<double> row_times(const JsonView& a) {
  std::vector<double> t;
  for (const JsonView& v : a.elements()) t.push_back(v.is_null() ? kMiss : v.number());
  return t;
}

json ratio_json(const RatioEstimate& r) {
  json per = json::array();
  for (double x : r.per_seed) per.push_back(std::isnan(x) ? json(nullptr) : steps_or_inf(x));
  return {{"per_seed_ratio", per}, {"ratio", steps_or_inf(r.ratio)},
          {"ci95", json::array({steps_or_inf(r.ci.lo), steps_or_inf(r.ci.hi)})},
          {"open_above", std::isinf(r.ci.hi)}, {"verdict", r.verdict}};
}

json times_json(const std::vector<double>& t) {
  json a = json::array();
  for (double x : t) a.push_back(steps_or_inf(x));
  return a;
}


json interval_json(const Interval& ci) { return json::array({ci.lo, ci.hi}); }

}  // namespace wavg::study::entry
