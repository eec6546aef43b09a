// The LM protocol's bank from the lm_bank addition (see lm_bank.h).
#include "wavg/study/lm_bank.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "wavg/core/error.h"
#include "wavg/study/analyses.h"
#include "wavg/study/entry_part.h"
#include "wavg/study/plan.h"
#include "wavg/study/scoring.h"

namespace wavg::study {

namespace {

using report::JsonView;

BankSetting setting_of(const JsonView& b, int64_t H) {
  const std::string scheme = b["scheme"].text();
  if (scheme == "lawa")
    return lawa_setting(b["name"].text(), b["window"].integer(), b["every"].integer(), H,
                        b["eval_every"].integer());
  if (scheme != "ema") b["scheme"].invalid("lawa or ema");
  return ema_setting(b["name"].text(), b["beta"].number(), b["every"].integer(), H,
                     b["eval_every"].integer());
}

// The scoring run of `seed` in the addition, checked against the part's budget.
JsonView run_of(const JsonView& addition, int64_t seed, int64_t H) {
  const std::string name = "seed_" + std::to_string(seed);
  WAVG_CHECK(addition["runs"].has(name), "study: the lm_bank addition has no run ", name,
             " (every scoring seed of the LM protocol is needed)");
  const JsonView run = addition["runs"][name];
  WAVG_CHECK(run["seed"].integer() == seed && run["steps"].integer() == H, "study: the added run ",
             run.path(), " has seed ", run["seed"].integer(), " and ", run["steps"].integer(),
             " steps, the LM protocol seed ", seed, " and ", H);
  return run;
}

// Exact agreement of two curves of the raw model on the steps both evaluated.
void compare_raw(const Curve& added, const Curve& part, int64_t* shared, int64_t* equal,
                 double* max_diff) {
  std::map<int64_t, double> by_step;
  for (const CurvePoint& p : part) by_step[p.step] = p.value;
  for (const CurvePoint& p : added) {
    const auto it = by_step.find(p.step);
    if (it == by_step.end()) continue;
    ++*shared;
    *equal += it->second == p.value;
    *max_diff = std::max(*max_diff, std::abs(it->second - p.value));
  }
}

}  // namespace

LmBank lm_bank(const JsonView& entry, const JsonView& addition) {
  const int64_t H = entry["budget_H"].integer();
  WorkloadData d;
  d.lower_is_better = parse_direction(entry["direction"].text());
  d.H = H;
  LmBank out;
  for (const JsonView& b : addition["bank"].elements()) {
    d.bank.push_back(setting_of(b, H));
    if (b["curves"].text() == "addition") out.eval_every = std::max(out.eval_every, b["eval_every"].integer());
  }
  int64_t shared = 0, equal = 0;
  double max_diff = 0;
  const JsonView curves = entry["curves"];
  for (const JsonView& s : entry["scoring_seeds"].elements()) {
    const JsonView run = run_of(addition, s.integer(), H);
    const JsonView mine = curves[std::to_string(s.integer())];
    ModelCurves m;
    for (const JsonView& b : addition["bank"].elements()) {
      const std::string name = b["name"].text();
      m[name] = entry::parse_curve(b["curves"].text() == "part" ? mine[name] : run["curves"][name]);
    }
    compare_raw(entry::parse_curve(run["curves"]["raw"]), entry::parse_curve(mine["raw"]),
                &shared, &equal, &max_diff);
    d.seeds.push_back(std::move(m));
  }
  out.settings = bank_rows(d, entry["target"].number());
  out.reproduction = {{"shared_evaluations", shared}, {"bit_identical", equal},
                      {"max_abs_difference", max_diff},
                      {"note", "the addition's raw model against the part's at the steps both "
                               "evaluated (the same seed, configuration and binary family)"}};
  return out;
}

}  // namespace wavg::study
