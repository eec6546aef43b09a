// Issue 25's analyses of a part's entry: intervals, one grid, tuned, fixed budget (see
// entry_analyses.h). Everything is read through JsonView, so a missing key names itself.
#include "wavg/study/entry_analyses.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "wavg/core/error.h"
#include "wavg/io/path_names.h"
#include "wavg/study/analyses.h"
#include "wavg/study/intervals.h"
#include "wavg/study/entry_part.h"
#include "wavg/study/json_view.h"
#include "wavg/study/lm_bank.h"
#include "wavg/study/scoring.h"

namespace wavg::study {

using namespace entry;
using detail::ends_with;

namespace {

// The comparison of `model` with `base` on the grid of `every` steps, with its robustness column.
json compared(const Part& p, const std::vector<Curve>& model, const std::vector<Curve>& base,
              int64_t every) {
  const std::vector<double> t = times_on_grid(model, p, every), b = times_on_grid(base, p, every);
  json j = {{"eval_every", every}, {"resolution", double(every) / double(p.H)},
            {"steps", times_json(t)}, {"baseline_steps", times_json(b)}};
  j.update(ratio_json(ratio_estimate(t, b)));
  json robust = json::object();
  for (int k : {2, 4}) {
    const std::vector<double> tk = times_on_grid(model, p, k * every),
                              bk = times_on_grid(base, p, k * every);
    robust["subsample_" + std::to_string(k) + "x"] = steps_or_inf(time_ratio(median(tk), median(bk)));
  }
  auto smooth = [&](const Curve& c) { return trailing_mean(on_grid(c, every, p.H), 3); };
  const std::vector<double> ts = times(model, p, false, smooth), bs = times(base, p, false, smooth);
  robust["trailing_mean_3"] = steps_or_inf(time_ratio(median(ts), median(bs)));
  robust["trailing_mean_3_misses"] = {
      {"model", std::count_if(ts.begin(), ts.end(), [](double x) { return std::isinf(x); })},
      {"baseline", std::count_if(bs.begin(), bs.end(), [](double x) { return std::isinf(x); })}};
  j["robustness"] = robust;
  return j;
}

// Best value and value at H per seed of `model`; with `base`, the paired gains over it.
json fixed_budget_row(const Part& p, const std::vector<Curve>& model, const std::vector<Curve>* base) {
  std::vector<double> best, at_h, base_best, base_at_h;
  for (const Curve& c : model) best.push_back(best_value(c, p.lower)), at_h.push_back(c.back().value);
  json j = {{"best", best}, {"best_mean", mean_std(best).mean}, {"best_std", mean_std(best).std},
            {"at_H", at_h}, {"at_H_mean", mean_std(at_h).mean}, {"at_H_std", mean_std(at_h).std}};
  if (!base) return j;
  for (const Curve& c : *base)
    base_best.push_back(best_value(c, p.lower)), base_at_h.push_back(c.back().value);
  for (const auto& [key, v, b] : {std::tuple{"best_gain", &best, &base_best},
                                  std::tuple{"at_H_gain", &at_h, &base_at_h}}) {
    const GainEstimate g = gain_estimate(*v, *b, p.lower);
    j[key] = {{"per_seed", g.per_seed}, {"mean", g.mean}, {"ci95", interval_json(g.ci)},
              {"verdict", g.verdict}};
  }
  return j;
}

}  // namespace

namespace {

// One bank setting on the bank's grid: its per-seed steps (AlgoPerf count and interpolated).
struct GridSetting {
  std::string name, scheme;
  double horizon = 0;
  bool pre_registered = false;
  std::vector<double> steps, interpolated;
};

// The same averager: scheme, window or β, and ν (a pre-registered setting the bank holds too).
bool same_averager(const JsonView& a, const JsonView& b) {
  if (a["scheme"].text() != b["scheme"].text() || a["every"].integer() != b["every"].integer())
    return false;
  if (a.has("window") && b.has("window") && a["window"].integer() != b["window"].integer())
    return false;
  if (a.has("alpha") != b.has("alpha") || (a.has("alpha") && a["alpha"].number() != b["alpha"].number()))
    return false;
  return !a.has("beta") || std::abs(a["beta"].number() - b["beta"].number()) < 1e-12;
}

// The grid every setting can be compared on: the coarsest evaluation interval among the settings.
int64_t common_grid(const JsonView& settings) {
  int64_t every = 0;
  for (const JsonView& s : settings.elements()) every = std::max(every, s["eval_every"].integer());
  return every;
}

// Every setting once on the grid of `every` steps: a finer one from its curves (subsampled), one
// on the grid from its row; one already in the bank under another name is left out (*notes says
// so), as is a finer one without curves.
std::vector<GridSetting> settings_on_grid(const Part& p, const JsonView& settings, int64_t every,
                                          json* notes) {
  std::vector<GridSetting> out;
  const std::vector<JsonView> rows = settings.elements();
  for (size_t i = 0; i < rows.size(); ++i) {
    const JsonView& r = rows[i];
    GridSetting g{r["name"].text(), r["scheme"].text(), r["horizon"].number(),
                  r["pre_registered"].boolean(), {}, {}};
    const auto twin = std::find_if(rows.begin(), rows.end(), [&](const JsonView& o) {
      return &o != &rows[i] && !o["pre_registered"].boolean() && same_averager(r, o);
    });
    if (g.pre_registered && twin != rows.end()) {
      notes->push_back(g.name + " is " + (*twin)["name"].text() + " on this grid: counted once");
      continue;
    }
    if (r["eval_every"].integer() == every) {
      g.steps = row_times(r["steps_to_target"]);
      g.interpolated = row_times(r["interpolated_steps_to_target"]);
    } else if (p.curves.count(g.name)) {
      g.steps = times_on_grid(p.curves.at(g.name), p, every);
      g.interpolated = times_on_grid(p.curves.at(g.name), p, every, /*interpolated=*/true);
    } else {
      notes->push_back(g.name + " is evaluated more finely and has no curves: left out");
      continue;
    }
    out.push_back(std::move(g));
  }
  return out;
}

json one_grid_json(const Part& p, const std::vector<GridSetting>& gs, int64_t every,
                   const json& notes) {
  const std::vector<double> raw = times_on_grid(curves_of(p.curves, "raw"), p, every);
  json rows = json::array();
  for (const GridSetting& g : gs) {
    json r = {{"name", g.name}, {"scheme", g.scheme}, {"horizon", g.horizon},
              {"pre_registered", g.pre_registered},
              {"steps", times_json(g.steps)}, {"median", steps_or_inf(median(g.steps))},
              {"interpolated_median", steps_or_inf(median(g.interpolated))}};
    r.update(ratio_json(ratio_estimate(g.steps, raw)));
    rows.push_back(r);
  }
  // Selected after the fact, on this grid: the smallest interpolated median (the first on ties).
  size_t best = 0;
  for (size_t i = 1; i < gs.size(); ++i)
    if (median(gs[i].interpolated) < median(gs[best].interpolated)) best = i;
  return {{"eval_every", every}, {"resolution", double(every) / double(p.H)},
          {"raw_steps", times_json(raw)}, {"raw_median", steps_or_inf(median(raw))},
          {"settings", rows}, {"best_after_the_fact", gs.empty() ? json(nullptr) : json(gs[best].name)},
          {"notes", notes}};
}

// Quadratic in log10(horizon) through the medians of the resample (of every seed: c null) of the
// settings that reach the target; x* = −c1/(2·c2) if c2 > 0.
std::optional<double> fitted_optimum(const std::vector<const GridSetting*>& gs, const Counts* c,
                                     double* range, json* fit = nullptr) {
  std::vector<std::pair<double, double>> pts;
  double lo = kMiss, hi = -kMiss;
  for (const GridSetting* g : gs) {
    const double m = median(c ? resampled(g->interpolated, *c) : g->interpolated);
    if (std::isinf(m)) continue;
    pts.push_back({std::log10(g->horizon), m});
    lo = std::min(lo, m), hi = std::max(hi, m);
  }
  if (range) *range = pts.empty() ? 0 : hi - lo;
  const std::optional<QuadraticFit> f = quadratic_fit(pts);
  if (f && fit)
    *fit = {{"c0", f->c0}, {"c1", f->c1}, {"c2", f->c2}, {"x", "log10(horizon)"},
            {"y", "interpolated median steps to target"}, {"points", pts.size()}};
  if (!f || f->c2 <= 0) return std::nullopt;
  return std::pow(10.0, -f->c1 / (2 * f->c2));
}

// Analysis 2 on one grid, each setting once (EXP windows share lawa_rec's horizon: left out).
json horizon_one_grid(const Part& p, const std::vector<GridSetting>& all, int64_t every) {
  std::vector<const GridSetting*> gs;
  for (const GridSetting& g : all)
    if (g.scheme != "lawa_exp") gs.push_back(&g);
  double range = 0;
  json fit;
  const std::optional<double> best = fitted_optimum(gs, nullptr, &range, &fit);
  json j = {{"eval_every", every}, {"settings", gs.size()}, {"range", range},
            {"resolvable", range > double(every)}};
  if (!(range > double(every))) {
    j["note"] = "not resolvable: the medians differ by no more than one evaluation interval";
    return j;
  }
  j["fit"] = fit;
  j["best_horizon"] = number_or_null(best ? *best : std::nan(""));
  // Over the seed resamples; one whose fit has no minimum counts as ∞.
  const Interval ci = bootstrap_interval(p.seeds.size(), [&](const Counts& c) {
    const std::optional<double> x = fitted_optimum(gs, &c, nullptr);
    return x ? *x : kMiss;
  });
  j["best_horizon_ci95"] = json::array({steps_or_inf(ci.lo), steps_or_inf(ci.hi)});
  j["note"] = "x = log10(horizon), y = interpolated median steps to target on one grid; the "
              "interval is over seed resamples, a resample whose fit has no minimum counted as ∞";
  return j;
}

}  // namespace

namespace {

// The setting with the smallest median interpolated steps over the seeds other than `held_out`
// (then the smallest AlgoPerf median, then the first in bank order: the pre-registered first).
size_t choose_without(const std::vector<GridSetting>& gs, size_t held_out) {
  auto others = [&](const std::vector<double>& v) {
    std::vector<double> o;
    for (size_t s = 0; s < v.size(); ++s)
      if (s != held_out) o.push_back(v[s]);
    return median(o);
  };
  size_t best = 0;
  for (size_t i = 1; i < gs.size(); ++i) {
    const double a = others(gs[i].interpolated), b = others(gs[best].interpolated);
    if (a < b || (a == b && others(gs[i].steps) < others(gs[best].steps))) best = i;
  }
  return best;
}

// Item 3 of issue 25: leave-one-seed-out tuning over the bank on one grid.
json tuned_json(const Part& p, const std::vector<GridSetting>& gs, int64_t every, double paper) {
  const std::vector<double> raw = times_on_grid(curves_of(p.curves, "raw"), p, every);
  std::vector<double> tuned;
  json rotations = json::array();
  for (size_t s = 0; s < p.seeds.size(); ++s) {
    const GridSetting& g = gs.at(choose_without(gs, s));
    tuned.push_back(g.steps.at(s));
    rotations.push_back({{"held_out_seed", std::stoll(p.seeds[s])}, {"chosen", g.name},
                         {"horizon", g.horizon}, {"steps", steps_or_inf(g.steps[s])},
                         {"raw_steps", steps_or_inf(raw[s])}});
  }
  json j = {{"rule", "per held-out seed, the setting with the smallest median interpolated steps "
                     "to target over the other seeds (one grid, each setting once), scored by "
                     "AlgoPerf's count on the held-out seed"},
            {"eval_every", every}, {"resolution", double(every) / double(p.H)},
            {"rotations", rotations}, {"steps", times_json(tuned)},
            {"median", steps_or_inf(median(tuned))}, {"raw_median", steps_or_inf(median(raw))},
            {"paper_tuned_ratio", paper}};
  j.update(ratio_json(ratio_estimate(tuned, raw)));
  return j;
}

// The regime check's gain (raw at T minus decayed at T, in the better direction) with the
// two-sample bootstrap interval over target-setting and scoring seeds.
json regime_interval_json(const Part& p, const JsonView& e) {
  const int64_t T = e["budget_T"].integer();
  std::vector<double> decayed, raw;
  for (const JsonView& v : e["target_setting"]["final_values"].elements()) decayed.push_back(v.number());
  for (const Curve& c : curves_of(p.curves, "raw")) raw.push_back(value_at(c, T));
  auto gain = [&](const std::vector<double>& d, const std::vector<double>& r) {
    return p.lower ? median(r) - median(d) : median(d) - median(r);
  };
  const Interval ci = bootstrap_interval2(decayed.size(), raw.size(),
                                          [&](const Counts& a, const Counts& b) {
                                            return gain(resampled(decayed, a), resampled(raw, b));
                                          });
  const double spread = mean_std(raw).std;
  return {{"gain", gain(decayed, raw)}, {"ci95", interval_json(ci)},
          {"decayed_at_T", median(decayed)}, {"raw_at_T", median(raw)},
          {"scoring_seeds", raw.size()}, {"seed_spread", spread},
          {"passes", gain(decayed, raw) > spread},
          {"verdict", ci.lo > 0 ? "decay helps at T" : ci.hi < 0 ? "decay hurts at T"
                                                                 : "within noise"},
          {"note", "gain = median raw value at T (scoring seeds) minus median decayed value at T "
                   "(target-setting seeds), positive when the decayed run is better; two-sample "
                   "exact bootstrap; passes: the pre-registered check (gain > seed_spread) over these seeds"}};
}

// Seeds a 95 % interval of ± half_width around the mean per-seed ratio would need, from their
// spread (normal approximation: n = ⌈(1.96·sd/half_width)²⌉; the seeds where either misses are left
// out); null with fewer than 2 finite ratios.
json seeds_for_half_width(const json& per_seed, double half_width) {
  std::vector<double> r;
  for (const json& x : per_seed)
    if (x.is_number() && x.get<double>() > 0) r.push_back(x.get<double>());
  if (r.size() < 2) return nullptr;
  const double sd = mean_std(r).std;
  return std::ceil(std::pow(1.96 * sd / half_width, 2));
}

// The pre-registered averages against the raw model on the grid of `every` steps.
json intervals_json(const Part& p, const std::map<std::string, std::vector<Curve>>& curves,
                    const std::string& prefix, const std::vector<Curve>& base, int64_t every) {
  json j = json::object();
  for (const auto& [suffix, model] : {std::pair{"+lawa", "lawa_rec"}, std::pair{"+ema", "ema_rec"}}) {
    json c = compared(p, curves_of(curves, model), base, every);
    c["model"] = model;
    c["seeds_for_5_percent"] = seeds_for_half_width(c["per_seed_ratio"], 0.05);
    j[prefix + suffix] = c;
  }
  return j;
}

json fixed_budget_json(const Part& p, const std::map<std::string, std::vector<Curve>>& curves,
                       const std::string& prefix, const std::vector<Curve>& base) {
  const std::vector<Curve>& own = curves_of(curves, "raw");
  json j = {{prefix, fixed_budget_row(p, own, &own == &base ? nullptr : &base)}};
  j[prefix + "+lawa"] = fixed_budget_row(p, curves_of(curves, "lawa_rec"), &base);
  j[prefix + "+ema"] = fixed_budget_row(p, curves_of(curves, "ema_rec"), &base);
  return j;
}

// An arm against NAdamW's raw model (the workload's baseline) and against its own raw model.
void add_arm_analyses(const Part& p, json* arm) {
  const json in = *arm;
  const JsonView a(in, "results.json");
  const std::string name = a["name"].text();
  const auto curves = parse_curves(a["curves"], p.seeds);
  const std::vector<Curve>& nadamw = curves_of(p.curves, "raw");
  json vs_nadamw = intervals_json(p, curves, name, nadamw, p.eval_every);
  vs_nadamw[name] = compared(p, curves_of(curves, "raw"), nadamw, p.eval_every);
  (*arm)["intervals"] = {{"vs_nadamw", vs_nadamw},
                         {"vs_own_raw", intervals_json(p, curves, name, curves_of(curves, "raw"),
                                                       p.eval_every)}};
  (*arm)["fixed_budget"] = {{"vs_nadamw", fixed_budget_json(p, curves, name, nadamw)}};
}

// Kaddour's EXP windows against uniform LAWA at the same L and ν (lawa_rec, the same grid).
json exp_vs_uniform_json(const JsonView& settings) {
  json out = json::array();
  std::optional<JsonView> uniform;
  for (const JsonView& s : settings.elements())
    if (s["name"].text() == "lawa_rec") uniform = s;
  if (!uniform) return out;
  for (const JsonView& s : settings.elements()) {
    if (s["scheme"].text() != "lawa_exp") continue;
    WAVG_CHECK(s["eval_every"].integer() == (*uniform)["eval_every"].integer(), "study: ",
               s["name"].text(), " is not evaluated on lawa_rec's grid");
    json j = {{"name", s["name"].text()}, {"baseline", "lawa_rec"},
              {"eval_every", s["eval_every"].integer()}};
    j.update(ratio_json(ratio_estimate(row_times(s["steps_to_target"]),
                                       row_times((*uniform)["steps_to_target"]))));
    out.push_back(j);
  }
  return out;
}

}  // namespace

void add_entry_analyses(json* entry, bool lm, const std::vector<json>& additions) {
  for (const json& a : additions)
    if (lm && a.value("job", "") == "lm_bank") {  // the bank's rows first: analysed as a workload's
      const LmBank b = lm_bank(JsonView(*entry, "results.json"), JsonView(a, "the lm_bank addition"));
      (*entry)["bank_eval_every"] = b.eval_every;
      (*entry)["bank_reproduction"] = b.reproduction;
      (*entry)["settings"] = b.settings;
    }
  const json in = *entry;  // read from a copy: adding keys to *entry may move its values
  const JsonView e(in, "results.json");
  const Part p = parse_part(e);
  Part all = p;
  json& out = *entry;
  for (const json& a : additions) {
    const JsonView av(a, "an addition to " + (lm ? std::string("lm_protocol") : "the part"));
    const std::string job = av["job"].text();
    if (ends_with(job, "_seeds")) {
      const size_t before = all.seeds.size();
      all = with_added_seeds(all, av);
      for (size_t i = before; i < all.seeds.size(); ++i)
        out["added_seeds"].push_back(std::stoll(all.seeds[i]));
    } else if (ends_with(job, "_schedules")) {
      out["schedules_over_seeds"] = schedules_over_seeds(p, e, av);
    } else if (job == "lm_bank") {
      continue;  // read above
    } else if (job.rfind("lm_grid", 0) == 0) {
      for (const std::string& name : av["runs"].keys())
        out["grid_added"][name] = {
            {"lr", av["runs"][name]["optimizer"]["lr"].number()},
            {"final_fraction", av["runs"][name]["schedule"]["final_fraction"].number()},
            {"best_value", best_value(parse_curve(av["runs"][name]["curves"]["raw"]), p.lower)}};
    } else {
      av["job"].invalid("a job named *_seeds, *_schedules, lm_grid* or lm_bank");
    }
  }
  const std::vector<Curve>& raw = curves_of(all.curves, "raw");
  out["intervals"] = intervals_json(all, all.curves, "nadamw", raw, all.eval_every);
  for (const std::string& seed : all.seeds) out["intervals_seeds"].push_back(std::stoll(seed));
  out["fixed_budget"] = fixed_budget_json(all, all.curves, "nadamw", raw);
  if (!lm) out["regime_interval"] = regime_interval_json(all, e);
  if (e.has("settings")) {
    // Analysis 3's ratios against the raw model on each setting's own grid (a study-v3 part
    // divided by the raw model's 1 %-grid median), and no fit over mixed grids.
    out.erase("horizon_fit");
    for (json& row : out["settings"]) {
      const std::vector<double> base =
          times_on_grid(curves_of(p.curves, "raw"), p, row.at("eval_every").get<int64_t>());
      const double t = median(row_times(JsonView(row, "results.json")["steps_to_target"]));
      row["relative_steps"] = std::isfinite(t) && std::isfinite(median(base))
                                  ? json(t / median(base)) : json(nullptr);
      row["relative_to"] = "the raw model on this setting's grid";
    }
    const int64_t every = common_grid(e["settings"]);
    json notes = json::array();
    const std::vector<GridSetting> gs = settings_on_grid(p, e["settings"], every, &notes);
    out["one_grid"] = one_grid_json(p, gs, every, notes);
    out["horizon_fit_one_grid"] = horizon_one_grid(p, gs, every);
    out["tuned"] = tuned_json(p, gs, every, lm ? kPaperLmRatio : kPaperAlgoPerfRatio);
    const json exp = exp_vs_uniform_json(e["settings"]);
    if (!exp.empty()) out["exp_vs_uniform"] = exp;
  }
  if (e.has("arms"))
    for (json& arm : out["arms"]) add_arm_analyses(p, &arm);
}

}  // namespace wavg::study
