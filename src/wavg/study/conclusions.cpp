// The paper's claims marked from results.json (see conclusions.h). The rules, fixed before the
// numbers of the LM bank, mri_recon and the breadth study's rerun were seen:
// - a ratio "faster" / "slower" / "within noise" is the verdict of its 95 % interval against 100 %;
// - speed-up: a part agrees where LAWA and EMA are both faster, disagrees where either is slower;
// - size (tuned): agrees where the interval covers the paper's ratio and lies below 100 %,
//   disagrees where it excludes the paper's ratio, else not resolved;
// - horizon "~1 %": read as 0.5–2 % of the run; agrees where the fitted optimum's interval lies
//   inside that band, disagrees where it lies outside, else (or without a fit) not resolved;
// - best value: a part agrees where both averages' best-value gains are better, disagrees where
//   either is worse and neither better;
// - decay: "does not replace decay" agrees where LAWA without decay is worse than the decayed raw
//   model; "like a shorter decay" agrees where the ratio's interval lies within 90–110 %
//   (equivalent within ±10 %), disagrees where it excludes 100 %.
#include "wavg/study/conclusions.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

namespace wavg::study {

namespace {

constexpr const char* kAgrees = "agrees";
constexpr const char* kDisagrees = "disagrees";
constexpr const char* kOpen = "not resolved";

// A number of results.json: "inf" / "-inf" strings are ±∞, null is NaN.
double value(const json& v) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const double inf = std::numeric_limits<double>::infinity();
    return v.get<std::string>() == "-inf" ? -inf : v.get<std::string>() == "inf" ? inf : NAN;
  }
  return NAN;
}

std::string fixed(double x, int digits) {
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, x);
  return b;
}

std::string sig(double x) {
  char b[64];
  std::snprintf(b, sizeof b, "%.2g", x);
  return b;
}

std::string pct(double x) { return std::isinf(x) ? "inf" : fixed(100 * x, 1); }

// "96.4 % [90.2, 98.8] faster"
std::string ratio_text(const json& e) {
  return pct(value(e.at("ratio"))) + " % [" + pct(value(e.at("ci95")[0])) + ", " +
         pct(value(e.at("ci95")[1])) + "] " + e.at("verdict").get<std::string>();
}

std::string gain_text(const json& g) {
  return sig(value(g.at("mean"))) + " [" + sig(value(g.at("ci95")[0])) + ", " +
         sig(value(g.at("ci95")[1])) + "] " + g.at("verdict").get<std::string>();
}

// The overall mark from the parts' (and a part's from its comparisons').
std::string combine(const std::vector<std::string>& marks) {
  size_t agree = 0, disagree = 0;
  for (const std::string& m : marks) agree += m == kAgrees, disagree += m == kDisagrees;
  if (!marks.empty() && agree == marks.size()) return kAgrees;
  return disagree > 0 && agree == 0 ? kDisagrees : kOpen;
}

std::string verdict_mark(const std::string& verdict, const char* yes, const char* no) {
  return verdict == yes ? kAgrees : verdict == no ? kDisagrees : kOpen;
}

struct Part {
  std::string name, label;  // label: the regime, where the part has a check
  const json* e;
};

std::vector<Part> parts_of(const json& r) {
  std::vector<Part> out;
  if (r.contains("workloads"))
    for (const auto& [name, e] : r["workloads"].items()) {
      std::string label;
      if (e.contains("regime_check") && e["regime_check"].contains("label"))
        label = e["regime_check"]["label"].get<std::string>();
      out.push_back({name, label, &e});
    }
  if (r.contains("lm_protocol")) out.push_back({"lm_protocol", "no regime check", &r["lm_protocol"]});
  return out;
}

json claim(const std::string& name, const std::string& paper, const std::string& rule,
           const json& parts) {
  std::vector<std::string> marks;
  for (const json& p : parts) marks.push_back(p["mark"].get<std::string>());
  return {{"claim", name}, {"paper", paper}, {"rule", rule}, {"parts", parts},
          {"mark", combine(marks)}};
}

json part_row(const Part& p, const std::string& evidence, const std::string& mark) {
  return {{"part", p.name}, {"regime", p.label}, {"evidence", evidence}, {"mark", mark}};
}

// Pre-registered LAWA and EMA against the raw model of `prefix` (intervals of a part or an arm).
json speed_row(const Part& p, const json& intervals, const std::string& prefix) {
  const json &l = intervals.at(prefix + "+lawa"), &m = intervals.at(prefix + "+ema");
  const std::string mark =
      combine({verdict_mark(l.at("verdict"), "faster", "slower"),
               verdict_mark(m.at("verdict"), "faster", "slower")});
  return part_row(p, "LAWA " + ratio_text(l) + "; EMA " + ratio_text(m), mark);
}

json speed_up(const std::vector<Part>& parts) {
  json rows = json::array();
  for (const Part& p : parts)
    if (p.e->contains("intervals")) rows.push_back(speed_row(p, p.e->at("intervals"), "nadamw"));
  return claim("speed-up", "averaging (LAWA, EMA) reaches the validation target in fewer steps "
               "than the raw model (Figs. 1-2; pre-registered settings here)",
               "a part agrees where LAWA and EMA are both faster (interval below 100 %)", rows);
}

json tuned_size(const std::vector<Part>& parts) {
  json rows = json::array();
  for (const Part& p : parts) {
    if (!p.e->contains("tuned")) continue;
    const json& t = p.e->at("tuned");
    const double paper = value(t.at("paper_tuned_ratio")), lo = value(t.at("ci95")[0]),
                 hi = value(t.at("ci95")[1]);
    const std::string mark = lo <= paper && paper <= hi ? (hi < 1 ? kAgrees : kOpen) : kDisagrees;
    rows.push_back(part_row(p, "tuned " + ratio_text(t) + " vs the paper's " + pct(paper) + " %",
                            mark));
  }
  return claim("size of the speed-up (tuned)", "tuned averaging needs ~82 % of the baseline's "
               "steps on AlgoPerf and ~70 % on a 124M GPT (Table 4, Sec. 7)",
               "leave-one-seed-out tuned row; agrees where its interval covers the paper's ratio "
               "and lies below 100 %, disagrees where it excludes the paper's ratio", rows);
}

json horizon(const std::vector<Part>& parts) {
  constexpr double kLo = 0.005, kHi = 0.02;
  json rows = json::array();
  for (const Part& p : parts) {
    if (!p.e->contains("horizon_fit_one_grid")) continue;
    const json& f = p.e->at("horizon_fit_one_grid");
    if (!f.at("resolvable").get<bool>() || !f.contains("best_horizon") ||
        std::isnan(value(f["best_horizon"]))) {
      rows.push_back(part_row(p, "no fit: the bank's medians differ by at most one evaluation "
                                 "interval, or the fit has no minimum", kOpen));
      continue;
    }
    const double lo = value(f.at("best_horizon_ci95")[0]), hi = value(f.at("best_horizon_ci95")[1]);
    const std::string mark = lo >= kLo && hi <= kHi ? kAgrees : hi < kLo || lo > kHi ? kDisagrees : kOpen;
    rows.push_back(part_row(p, "fitted optimum " + pct(value(f["best_horizon"])) + " % of H [" +
                                   pct(lo) + ", " + pct(hi) + "] (one grid, every " +
                                   std::to_string(f.at("eval_every").get<int64_t>()) + " steps)",
                            mark));
  }
  return claim("horizon", "the best averaging horizon is ~1 % of the run (Sec. 5)",
               "'~1 %' read as 0.5-2 % of H; agrees where the fitted optimum's interval lies "
               "inside that band, disagrees where it lies outside", rows);
}

json best_value(const std::vector<Part>& parts) {
  json rows = json::array();
  for (const Part& p : parts) {
    if (!p.e->contains("fixed_budget")) continue;
    const json &l = p.e->at("fixed_budget").at("nadamw+lawa").at("best_gain"),
               &m = p.e->at("fixed_budget").at("nadamw+ema").at("best_gain");
    rows.push_back(part_row(p, "best-value gain LAWA " + gain_text(l) + "; EMA " + gain_text(m),
                            combine({verdict_mark(l.at("verdict"), "better", "worse"),
                                     verdict_mark(m.at("verdict"), "better", "worse")})));
  }
  return claim("best value at a fixed budget", "averaging improves the best validation value "
               "reached within the budget (Table 4)",
               "paired gain over the raw model of the same seed; a part agrees where both are "
               "better (interval above 0)", rows);
}

void decay_claims(const std::vector<Part>& parts, json* out) {
  for (const Part& p : parts) {
    if (!p.e->contains("schedules_over_seeds")) continue;
    const json& s = p.e->at("schedules_over_seeds");
    if (s.contains("no_decay_lawa_vs_decayed_raw")) {
      const json& g = s["no_decay_lawa_vs_decayed_raw"];
      out->push_back(claim("averaging does not replace decay", "averaging without learning-rate "
                           "decay does not reach the decayed run's quality (Sec. 6)",
                           "LAWA without decay against the raw model with cosine decay, best "
                           "value; agrees where it is worse (interval below 0)",
                           json::array({part_row(p, "gain " + gain_text(g),
                                                    verdict_mark(g.at("verdict"), "worse", "better"))})));
    }
    if (s.contains("short_raw_vs_lawa")) {
      const json& r = s["short_raw_vs_lawa"];
      const double lo = value(r.at("ci95")[0]), hi = value(r.at("ci95")[1]);
      const std::string mark = lo >= 0.9 && hi <= 1.1 ? kAgrees : lo > 1 || hi < 1 ? kDisagrees : kOpen;
      out->push_back(claim("averaging acts like a shorter decay", "averaging behaves like a "
                           "shorter learning-rate decay (Sec. 6)",
                           "the raw model of a cosine over 0.75 H against LAWA on the full cosine, "
                           "steps to target; agrees where the interval lies within 90-110 %, "
                           "disagrees where it excludes 100 %",
                           json::array({part_row(p, ratio_text(r), mark)})));
    }
  }
}

// Per arm (the breadth study): averaging its own raw model.
void arm_claims(const std::vector<Part>& parts, json* out) {
  std::vector<std::string> names;
  for (const Part& p : parts)
    if (p.e->contains("arms"))
      for (const json& a : p.e->at("arms"))
        if (std::find(names.begin(), names.end(), a.at("name").get<std::string>()) == names.end())
          names.push_back(a.at("name").get<std::string>());
  for (const std::string& n : names) {
    json rows = json::array();
    for (const Part& p : parts)
      if (p.e->contains("arms"))
        for (const json& a : p.e->at("arms"))
          if (a.at("name") == n && a.contains("intervals"))
            rows.push_back(speed_row(p, a["intervals"].at("vs_own_raw"), n));
    out->push_back(claim("speed-up with " + n, "averaging speeds up other optimizers too (Fig. 5: "
                         "Shampoo)", "this arm's LAWA and EMA against its own raw model; a part "
                         "agrees where both are faster", rows));
  }
}

}  // namespace

json conclusions_json(const json& results) {
  const std::vector<Part> parts = parts_of(results);
  json out = json::array();
  for (json c : {speed_up(parts), tuned_size(parts), horizon(parts), best_value(parts)})
    if (!c["parts"].empty()) out.push_back(std::move(c));
  decay_claims(parts, &out);
  arm_claims(parts, &out);
  return out;
}

}  // namespace wavg::study
