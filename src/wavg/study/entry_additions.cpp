// Runs added to a committed part (issue 25; schema study-v4-addition): more scoring seeds, and
// analysis 6 on more seeds (see entry_analyses.h).
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "wavg/core/error.h"
#include "wavg/study/analyses.h"
#include "wavg/study/entry_part.h"
#include "wavg/study/intervals.h"

namespace wavg::study::entry {

namespace {

// The models an addition's runs must carry: the raw model and the pre-registered averages.
constexpr const char* kAddedModels[3] = {"raw", "lawa_rec", "ema_rec"};

// An added run's curves, checked against the part: the same budget and evaluation interval.
std::map<std::string, Curve> added_run(const JsonView& run, const Part& p, int64_t steps) {
  WAVG_CHECK(run["steps"].integer() == steps && run["eval_every"].integer() == p.eval_every,
             "study: the added run ", run.path(), " has ", run["steps"].integer(), " steps every ",
             run["eval_every"].integer(), ", the part ", steps, " every ", p.eval_every);
  std::map<std::string, Curve> out;
  for (const std::string& m : run["curves"].keys()) out[m] = parse_curve(run["curves"][m]);
  return out;
}

}  // namespace

// The part's raw model and pre-registered averages, with the added scoring seeds appended.
Part with_added_seeds(const Part& p, const JsonView& addition) {
  Part all = p;
  all.curves.clear();
  for (const char* m : kAddedModels) all.curves[m] = curves_of(p.curves, m);
  for (const std::string& name : addition["runs"].keys()) {
    const JsonView run = addition["runs"][name];
    const std::string seed = std::to_string(run["seed"].integer());
    WAVG_CHECK(std::find(all.seeds.begin(), all.seeds.end(), seed) == all.seeds.end(),
               "study: the added run ", run.path(), " repeats scoring seed ", seed);
    const std::map<std::string, Curve> c = added_run(run, p, p.H);
    for (auto& [m, curves] : all.curves) {
      WAVG_CHECK(c.count(m), "study: the added run ", run.path(), " has no curve of ", m);
      curves.push_back(c.at(m));
    }
    all.seeds.push_back(seed);
  }
  return all;
}

namespace {

// One schedule's values on one seed: best values and AlgoPerf steps of raw, LAWA, EMA.
struct ScheduleSeed {
  double best[3], steps[3];
};

ScheduleSeed schedule_seed(const Part& p, const std::map<std::string, Curve>& c) {
  ScheduleSeed r{};
  for (int k = 0; k < 3; ++k) {
    const auto it = c.find(kAddedModels[k]);
    WAVG_CHECK(it != c.end(), "study: an added schedule run has no curve of ", kAddedModels[k]);
    r.best[k] = best_value(it->second, p.lower);
    r.steps[k] = steps_or_miss(it->second, p.target, p.lower);
  }
  return r;
}

ScheduleSeed schedule_row_seed(const JsonView& row) {
  ScheduleSeed r{};
  const char* keys[3] = {"raw", "lawa", "ema"};
  for (int k = 0; k < 3; ++k) {
    r.best[k] = row[std::string(keys[k]) + "_best"].number();
    const JsonView st = row[std::string(keys[k]) + "_steps_to_target"];
    r.steps[k] = st.is_null() ? kMiss : st.number();
  }
  return r;
}

}  // namespace

// Analysis 6 over seed 0 (the part's rows) and the added seeds: per schedule and seed the best
// values and steps to target of raw, LAWA and EMA; whether averaging without decay reaches the
// decayed run's best value, and the shorter schedule against averaging, with intervals.
json schedules_over_seeds(const Part& p, const JsonView& e, const JsonView& addition) {
  std::vector<int64_t> seeds = {0};
  for (const std::string& name : addition["runs"].keys()) {
    const int64_t s = addition["runs"][name]["seed"].integer();
    if (std::find(seeds.begin(), seeds.end(), s) == seeds.end()) seeds.push_back(s);
  }
  // Per schedule, the seeds it has: seed 0 (the part's row), the baseline's every scoring seed,
  // the others' added runs (an addition may hold only some of them).
  std::map<std::string, std::map<int64_t, ScheduleSeed>> by_label;
  json rows = json::array();
  for (const JsonView& row : e["schedules"].elements()) {
    const std::string dir = row["dir"].text(), base = dir.substr(dir.rfind('/') + 1);
    std::map<int64_t, ScheduleSeed>& v = by_label[row["schedule"].text()];
    v[0] = schedule_row_seed(row);
    for (size_t i = 1; i < seeds.size(); ++i) {
      const std::string sid = std::to_string(seeds[i]), run = base + "_seed" + sid;
      if (base == "seed_0") {  // the baseline is the scoring run of that seed
        const size_t k = std::find(p.seeds.begin(), p.seeds.end(), sid) - p.seeds.begin();
        WAVG_CHECK(k < p.seeds.size(), "study: no scoring run of seed ", sid, " for analysis 6");
        std::map<std::string, Curve> c;
        for (const char* m : kAddedModels) c[m] = curves_of(p.curves, m)[k];
        v[seeds[i]] = schedule_seed(p, c);
      } else if (addition["runs"].has(run)) {
        v[seeds[i]] = schedule_seed(p, added_run(addition["runs"][run], p, p.H));
      }
    }
    json r = {{"schedule", row["schedule"].text()}, {"final_fraction", row["final_fraction"].number()},
              {"decay_fraction", row["decay_fraction"].number()}, {"seeds", json::array()}};
    for (const auto& [seed, x] : v) r["seeds"].push_back(seed);
    for (int k = 0; k < 3; ++k) {
      json b = json::array(), t = json::array();
      for (const auto& [seed, x] : v) b.push_back(x.best[k]), t.push_back(steps_or_inf(x.steps[k]));
      r[std::string(kAddedModels[k]) + "_best"] = b;
      r[std::string(kAddedModels[k]) + "_steps"] = t;
    }
    rows.push_back(r);
  }
  json out = {{"seeds", seeds}, {"rows", rows}};
  std::string base_label;  // cosine to 0 over H: the scoring run of each seed
  for (const JsonView& r : e["schedules"].elements())
    if (r["final_fraction"].number() == 0.0 && r["decay_fraction"].number() == 1.0)
      base_label = r["schedule"].text();
  WAVG_CHECK(!base_label.empty(), "study: analysis 6 has no cosine-to-0 baseline row");
  // Columns of two schedules over the seeds both have.
  auto columns = [&](const std::string& a, bool best_a, int ka, bool best_b, int kb) {
    std::pair<std::vector<double>, std::vector<double>> c;
    for (const auto& [seed, x] : by_label.at(a)) {
      const auto it = by_label.at(base_label).find(seed);
      if (it == by_label.at(base_label).end()) continue;
      c.first.push_back(best_a ? x.best[ka] : x.steps[ka]);
      c.second.push_back(best_b ? it->second.best[kb] : it->second.steps[kb]);
    }
    return c;
  };
  for (const JsonView& row : e["schedules"].elements()) {
    const std::string label = row["schedule"].text();
    if (row["final_fraction"].number() == 1.0) {  // averaging without decay vs decay, best value
      const auto [v, b] = columns(label, true, 1, true, 0);
      const GainEstimate g = gain_estimate(v, b, p.lower);
      out["no_decay_lawa_vs_decayed_raw"] = {{"per_seed", g.per_seed}, {"mean", g.mean},
                                            {"ci95", interval_json(g.ci)}, {"verdict", g.verdict}};
    }
    if (row["decay_fraction"].number() < 1.0) {  // a shorter decay vs averaging the long one
      const auto [t, b] = columns(label, false, 0, false, 1);
      out["short_raw_vs_lawa"] = ratio_json(ratio_estimate(t, b));
    }
  }
  return out;
}

}  // namespace wavg::study::entry
