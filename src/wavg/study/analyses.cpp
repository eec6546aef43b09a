// The study's analyses 1–7 and its scoring, from curves to results.json (see analyses.h).
#include "wavg/study/analyses.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "wavg/core/error.h"
#include "wavg/study/intervals.h"

namespace wavg::study {

const std::vector<Method>& study_methods() {
  static const std::vector<Method> kMethods = {
      {"nadamw", "raw"}, {"nadamw+lawa", "lawa_rec"}, {"nadamw+ema", "ema_rec"}};
  return kMethods;
}

const std::vector<std::string>& plotted_models() {
  static const std::vector<std::string> kModels = {"raw", "lawa_rec", "ema_rec"};
  return kModels;
}

json number_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json steps_or_inf(double v) { return std::isfinite(v) ? json(v) : json("inf"); }

namespace {

json numbers_or_null(const std::vector<double>& v) {
  json a = json::array();
  for (double x : v) a.push_back(number_or_null(x));
  return a;
}

// t / base, or null when either is a miss.
json relative(double t, double base) {
  return std::isfinite(t) && std::isfinite(base) ? json(t / base) : json(nullptr);
}

}  // namespace

size_t choose_grid_point(const std::vector<GridRun>& grid, bool lower_is_better) {
  std::vector<double> bests;
  for (const GridRun& g : grid) bests.push_back(best_value(model_curve(g.curves, "raw"), lower_is_better));
  return best_index(bests, lower_is_better);
}

json lr_sensitivity_rows(const WorkloadData& d, double target) {
  const bool lower = d.lower_is_better;
  json rows = json::array();
  for (size_t i = 0; i < d.grid.size(); ++i) {
    const GridRun& g = d.grid[i];
    const Curve& raw = model_curve(g.curves, "raw");
    const Curve& lawa = model_curve(g.curves, "lawa_rec");
    const Curve& ema = model_curve(g.curves, "ema_rec");
    rows.push_back({{"lr", g.lr}, {"weight_decay", g.weight_decay}, {"warmup", g.warmup},
                    {"raw_best", number_or_null(best_value(raw, lower))},
                    {"lawa_best", number_or_null(best_value(lawa, lower))},
                    {"ema_best", number_or_null(best_value(ema, lower))},
                    {"raw_steps_to_target", number_or_null(steps_or_miss(raw, target, lower))},
                    {"lawa_steps_to_target", number_or_null(steps_or_miss(lawa, target, lower))},
                    {"ema_steps_to_target", number_or_null(steps_or_miss(ema, target, lower))},
                    {"chosen", i == d.chosen}});
  }
  return rows;
}

json method_rows(const WorkloadData& d, double target, std::map<std::string, double>* method_time) {
  json methods = json::object();
  for (const Method& m : study_methods()) {
    std::vector<double> steps, bests;
    for (const ModelCurves& c : d.seeds) {
      steps.push_back(steps_or_miss(model_curve(c, m.model), target, d.lower_is_better));
      bests.push_back(best_value(model_curve(c, m.model), d.lower_is_better));
    }
    const MeanStd ms = mean_std(bests);
    (*method_time)[m.name] = median(steps);
    methods[m.name] = {{"model", m.model}, {"steps_to_target", numbers_or_null(steps)},
                       {"median_steps_to_target", number_or_null(median(steps))},
                       {"best_values", numbers_or_null(bests)},
                       {"best_mean", number_or_null(ms.mean)}, {"best_std", number_or_null(ms.std)}};
  }
  // Analyses 1 and 7: relative steps and compute saved, against NAdamW.
  const double raw_t = method_time->at("nadamw");
  for (const Method& m : study_methods()) {
    const double t = method_time->at(m.name);
    json& row = methods[m.name];
    row["relative_steps"] = relative(t, raw_t);
    row["steps_saved"] = number_or_null(raw_t - t);
    row["seconds_saved"] = number_or_null((raw_t - t) * d.train_s_per_step);
  }
  return methods;
}

json bank_rows(const WorkloadData& d, double target) {
  json rows = json::array();
  for (const BankSetting& s : d.bank) {
    const SchemeOptions& o = s.options;
    std::vector<double> steps, interp, bests;
    for (const ModelCurves& c : d.seeds) {
      const Curve& curve = model_curve(c, o.name());
      steps.push_back(steps_or_miss(curve, target, d.lower_is_better));
      interp.push_back(interpolated_or_miss(curve, target, d.lower_is_better));
      bests.push_back(best_value(curve, d.lower_is_better));
    }
    json row = {{"name", o.name()}, {"scheme", scheme_name(o.scheme())}};
    if (window_of(o) > 0) row["window"] = window_of(o);
    if (const auto* e = o.as<EmaOptions>()) row["beta"] = e->beta();
    if (const auto* x = o.as<LawaExpOptions>()) row["alpha"] = x->alpha();
    row["every"] = o.every();
    row["horizon"] = s.horizon;
    row["eval_every"] = s.eval_every;
    row["pre_registered"] = o.name() == "lawa_rec" || o.name() == "ema_rec";
    row["steps_to_target"] = numbers_or_null(steps);
    row["median_steps_to_target"] = number_or_null(median(steps));
    row["interpolated_steps_to_target"] = numbers_or_null(interp);
    row["interpolated_median"] = number_or_null(median(interp));
    row["best_mean"] = number_or_null(mean_std(bests).mean);
    rows.push_back(row);
  }
  return rows;
}

json schedule_rows(const WorkloadData& d, double target) {
  const bool lower = d.lower_is_better;
  json rows = json::array();
  for (const ScheduleRun& s : d.schedules) {
    const Curve& raw = model_curve(s.curves, "raw");
    const Curve& lawa = model_curve(s.curves, "lawa_rec");
    const Curve& ema = model_curve(s.curves, "ema_rec");
    rows.push_back({{"schedule", s.label}, {"dir", s.dir},
                    {"final_fraction", s.final_fraction}, {"decay_fraction", s.decay_fraction},
                    {"raw_best", number_or_null(best_value(raw, lower))},
                    {"lawa_best", number_or_null(best_value(lawa, lower))},
                    {"ema_best", number_or_null(best_value(ema, lower))},
                    {"raw_steps_to_target", number_or_null(steps_or_miss(raw, target, lower))},
                    {"lawa_steps_to_target", number_or_null(steps_or_miss(lawa, target, lower))},
                    {"ema_steps_to_target", number_or_null(steps_or_miss(ema, target, lower))}});
  }
  return rows;
}

namespace {

// The median of a steps_entry field ("median" or "interpolated_median") as a number (kMiss).
double entry_median(const json& e, const char* key) {
  return e.at(key).is_string() ? kMiss : e.at(key).get<double>();
}

}  // namespace

json arm_rows(const WorkloadData& d, double target) {
  const bool lower = d.lower_is_better;
  const json base = steps_entry(d.seeds, "raw", target, lower, true, d.eval_every);
  json rows = json::array();
  for (const ArmRuns& a : d.arms) {
    json grid = json::array();
    for (const GridRun& g : a.grid)
      grid.push_back({{"lr", g.lr}, {"best_raw", number_or_null(best_value(
                                                     model_curve(g.curves, "raw"), lower))}});
    json methods = json::object();
    json own;
    for (const auto& [suffix, model] : {std::pair{"", "raw"}, std::pair{"+lawa", "lawa_rec"},
                                        std::pair{"+ema", "ema_rec"}}) {
      json e = steps_entry(a.seeds, model, target, lower, true, d.eval_every);
      std::vector<double> bests;
      for (const ModelCurves& c : a.seeds) bests.push_back(best_value(model_curve(c, model), lower));
      e["best_values"] = numbers_or_null(bests);
      e["best_mean"] = number_or_null(mean_std(bests).mean);
      e["best_std"] = number_or_null(mean_std(bests).std);
      // Against NAdamW's raw model (the workload's baseline) and the arm's own raw model.
      for (const auto& [key, ref] :
           {std::pair{"relative_to_nadamw", &base},
            std::pair{"relative_to_own_raw", &std::as_const(own)}}) {
        if (ref->is_null()) continue;
        e[key] = {{"steps", relative(entry_median(e, "median"), entry_median(*ref, "median"))},
                  {"interpolated", relative(entry_median(e, "interpolated_median"),
                                            entry_median(*ref, "interpolated_median"))}};
      }
      if (own.is_null()) own = e;
      methods[a.name + suffix] = e;
    }
    rows.push_back({{"name", a.name}, {"optimizer", a.optimizer}, {"decay", a.decay},
                    {"lookahead_k", a.lookahead_k}, {"lookahead_alpha", a.lookahead_alpha},
                    {"grid", grid}, {"chosen_lr", a.grid.at(a.chosen).lr}, {"methods", methods},
                    {"curves", curves_json(a.seeds, d.scoring_seeds, plotted_models())}});
  }
  return rows;
}

json curves_json(const std::vector<ModelCurves>& seeds, const std::vector<int64_t>& seed_ids,
                 const std::vector<std::string>& models) {
  json out = json::object();
  for (size_t s = 0; s < seeds.size(); ++s) {
    json by_model = json::object();
    for (const std::string& m : models) {
      json points = json::array();
      for (const CurvePoint& p : model_curve(seeds[s], m))
        points.push_back(json::array({p.step, number_or_null(p.value)}));
      by_model[m] = points;
    }
    out[std::to_string(seed_ids.at(s))] = by_model;
  }
  return out;
}

json steps_entry(const std::vector<ModelCurves>& seeds, const std::string& model, double target,
                 bool lower, bool pre_registered, int64_t eval_every) {
  std::vector<double> steps, interp;
  json per = json::array(), per_i = json::array();
  for (const ModelCurves& c : seeds) {
    steps.push_back(steps_or_miss(model_curve(c, model), target, lower));
    interp.push_back(interpolated_or_miss(model_curve(c, model), target, lower));
    per.push_back(steps_or_inf(steps.back()));
    per_i.push_back(steps_or_inf(interp.back()));
  }
  return {{"model", model}, {"pre_registered", pre_registered}, {"eval_every", eval_every},
          {"per_seed", per}, {"interpolated_per_seed", per_i},
          {"median", steps_or_inf(median(steps))},
          {"interpolated_median", steps_or_inf(median(interp))}};
}

size_t select_setting(const WorkloadData& d, double target) {
  // One grid for every setting: the coarsest evaluation interval of the bank.
  int64_t every = d.eval_every;
  for (const BankSetting& s : d.bank) every = std::max(every, s.eval_every);
  std::vector<double> interp, bests;
  for (const BankSetting& s : d.bank) {
    std::vector<double> t, b;
    for (const ModelCurves& c : d.seeds) {
      t.push_back(interpolated_or_miss(on_grid(model_curve(c, s.options.name()), every, d.H), target,
                                       d.lower_is_better));
      b.push_back(best_value(model_curve(c, s.options.name()), d.lower_is_better));
    }
    interp.push_back(median(t));
    bests.push_back(mean_std(b).mean);
  }
  size_t best = 0;
  for (size_t i = 1; i < interp.size(); ++i)
    if (interp[i] < interp[best]) best = i;
  if (std::isfinite(interp[best])) return best;
  return best_index(bests, d.lower_is_better);
}

namespace {

json regime_json(const RegimeCheck& r) {
  return {{"decayed_at_T", r.decayed_at_T}, {"raw_at_T", r.raw_at_T},
          {"seed_spread", r.seed_spread}, {"passes", r.passes},
          {"label", r.passes ? "in the paper's regime" : "outside the paper's regime"}};
}

// steps_to_target of the pre-registered methods and the selected setting; their AlgoPerf medians.
json steps_to_target_json(const std::vector<ModelCurves>& seeds, double target, bool lower,
                          int64_t eval_every, const BankSetting* selected,
                          std::map<std::string, double>* method_time) {
  json out = json::object();
  for (const Method& m : study_methods()) {
    out[m.name] = steps_entry(seeds, m.model, target, lower, true, eval_every);
    std::vector<double> t;
    for (const ModelCurves& c : seeds)
      t.push_back(steps_or_miss(model_curve(c, m.model), target, lower));
    (*method_time)[m.name] = median(t);
  }
  if (selected) {
    out["selected"] = steps_entry(seeds, selected->options.name(), target, lower, false,
                                  selected->eval_every);
    out["selected"]["label"] = "selected after the fact (best interpolated median of the bank)";
  }
  return out;
}

}  // namespace

WorkloadAnalysis analyse_workload(const WorkloadData& d) {
  WAVG_CHECK(!d.grid.empty() && d.chosen < d.grid.size() && !d.seeds.empty() &&
                 !d.target_runs.empty(),
             "study: workload ", d.name, " has no grid, target-setting or scoring runs to analyse");
  std::vector<Curve> raw_by_seed;
  for (const ModelCurves& c : d.seeds) raw_by_seed.push_back(model_curve(c, "raw"));
  const double target = study_target(d.target_runs, d.lower_is_better);
  const RegimeCheck regime = regime_check(d.target_runs, raw_by_seed, d.T, d.lower_is_better);
  const GridRun& best = d.grid[d.chosen];
  const size_t sel = select_setting(d, target);
  WorkloadAnalysis a;
  json& W = a.results;
  W["metric"] = d.metric;
  W["direction"] = direction_name(d.lower_is_better);
  W["budget_T"] = d.T;
  W["budget_H"] = d.H;
  W["eval_every"] = d.eval_every;
  W["bank_eval_every"] = d.bank_eval_every;
  W["best_config"] = {{"lr", best.lr}, {"weight_decay", best.weight_decay}, {"warmup", best.warmup}};
  W["target"] = target;
  json bests = json::array(), finals = json::array();
  for (const Curve& c : d.target_runs) {
    bests.push_back(number_or_null(best_value(c, d.lower_is_better)));
    finals.push_back(number_or_null(c.back().value));
  }
  W["target_setting"] = {{"seeds", d.target_seeds}, {"best_values", bests},
                         {"final_values", finals}};
  W["scoring_seeds"] = d.scoring_seeds;
  W["regime_check"] = regime_json(regime);
  W["steps_to_target"] = steps_to_target_json(d.seeds, target, d.lower_is_better, d.eval_every,
                                              &d.bank[sel], &a.method_time);
  W["selected_setting"] = d.bank[sel].options.name();
  W["train_s_per_step"] = d.train_s_per_step;
  W["time_s"] = {{"train", d.train_s}, {"eval", d.eval_s},
                 {"eval_share", d.train_s + d.eval_s > 0 ? d.eval_s / (d.train_s + d.eval_s) : 0.0}};
  W["lr_sensitivity"] = lr_sensitivity_rows(d, target);
  std::map<std::string, double> unused;
  W["methods"] = method_rows(d, target, &unused);
  W["settings"] = bank_rows(d, target);  // relative_steps and the horizon fit: on one grid, at merge
  if (!d.schedules.empty()) W["schedules"] = schedule_rows(d, target);
  if (!d.arms.empty()) W["arms"] = arm_rows(d, target);
  std::vector<std::string> models = plotted_models();
  if (std::find(models.begin(), models.end(), d.bank[sel].options.name()) == models.end())
    models.push_back(d.bank[sel].options.name());
  W["curves"] = curves_json(d.seeds, d.scoring_seeds, models);
  return a;
}

size_t choose_lm_point(const std::vector<LmGridRun>& grid, bool lower_is_better) {
  std::vector<double> bests;
  for (const LmGridRun& g : grid) bests.push_back(best_value(g.raw, lower_is_better));
  return best_index(bests, lower_is_better);
}

WorkloadAnalysis analyse_lm(const LmData& d) {
  WAVG_CHECK(!d.grid.empty() && !d.target_runs.empty() && !d.seeds.empty(),
             "study: the LM protocol has no grid, target or scoring runs to analyse");
  std::vector<double> at_step, bests;
  for (const Curve& c : d.target_runs) {
    const double v = value_at(c, d.target_step);
    WAVG_CHECK(!std::isnan(v), "study: an LM target run has no evaluation at step ", d.target_step);
    at_step.push_back(v);
    bests.push_back(best_value(c, d.lower_is_better));
  }
  const double target = median(at_step);
  WorkloadAnalysis a;
  json& W = a.results;
  W["workload"] = d.name;
  W["metric"] = d.metric;
  W["direction"] = direction_name(d.lower_is_better);
  W["budget_T"] = nullptr;  // no target-setting budget: the target is a value at ⌊H/3⌋
  W["budget_H"] = d.H;
  W["eval_every"] = d.eval_every;
  W["target_step"] = d.target_step;
  json grid = json::array();
  for (size_t i = 0; i < d.grid.size(); ++i) {
    const LmGridRun& g = d.grid[i];
    grid.push_back({{"lr", g.lr}, {"final_fraction", g.final_fraction}, {"warmup", g.warmup},
                    {"weight_decay", g.weight_decay}, {"clip_norm", g.clip_norm},
                    {"best_value", number_or_null(best_value(g.raw, d.lower_is_better))},
                    {"chosen", i == d.chosen}});
  }
  W["grid"] = grid;
  W["target"] = target;
  W["target_setting"] = {{"seeds", d.target_seeds}, {"values_at_target_step", at_step},
                         {"best_values", bests}};
  W["scoring_seeds"] = d.scoring_seeds;
  W["regime_check"] = nullptr;  // the §7 protocol has no decayed-at-T baseline
  W["steps_to_target"] = steps_to_target_json(d.seeds, target, d.lower_is_better, d.eval_every,
                                              nullptr, &a.method_time);
  W["curves"] = curves_json(d.seeds, d.scoring_seeds, plotted_models());
  return a;
}

json scoring_json(const std::map<std::string, std::map<std::string, double>>& times) {
  std::vector<std::string> names;
  for (const Method& m : study_methods()) names.push_back(m.name);
  const std::map<std::string, MethodScore> scores = score_methods(times, names);
  json ratios = json::object(), profile = json::object(), score = json::object();
  for (const std::string& m : names) {
    const MethodScore& s = scores.at(m);
    json r = json::object();
    for (const auto& [w, ratio] : s.ratio) r[w] = number_or_null(ratio);
    ratios[m] = r;
    json p = json::array();
    for (size_t k = 0; k < s.profile.size(); k += 10)
      p.push_back(json::array({s.profile[k].first, s.profile[k].second}));
    profile[m] = p;
    score[m] = s.score;
  }
  return {{"ratios", ratios}, {"profile", profile}, {"score", score},
          {"note", "score = area under the performance profile over tau in [1, 4] (trapezoid rule "
                   "over 301 points), divided by 3"}};
}

}  // namespace wavg::study
