// The study's analyses 1–7 and its scoring, from curves to results.json (see analyses.h).
#include "wavg/study/analyses.h"

#include <cmath>

#include "wavg/core/error.h"

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

json bank_rows(const WorkloadData& d, double target, double raw_time) {
  json rows = json::array();
  for (const BankSetting& s : d.bank) {
    const AveragerOptions& o = s.options;
    std::vector<double> steps, bests;
    for (const ModelCurves& c : d.seeds) {
      steps.push_back(steps_or_miss(model_curve(c, o.name), target, d.lower_is_better));
      bests.push_back(best_value(model_curve(c, o.name), d.lower_is_better));
    }
    json row = {{"name", o.name}, {"scheme", scheme_name(o.scheme)}};
    if (o.scheme == Scheme::kLawa) row["window"] = o.window;
    if (o.scheme == Scheme::kEma) row["beta"] = o.beta;
    row["every"] = o.every;
    row["horizon"] = s.horizon;
    row["steps_to_target"] = numbers_or_null(steps);
    row["median_steps_to_target"] = number_or_null(median(steps));
    row["relative_steps"] = relative(median(steps), raw_time);
    row["best_mean"] = number_or_null(mean_std(bests).mean);
    rows.push_back(row);
  }
  return rows;
}

json horizon_fits(const json& bank_rows) {
  // Median steps to target against x = log10(horizon), over the settings that reached the target;
  // a minimum (c2 > 0) at x* = −c1/(2·c2) is the best horizon.
  std::vector<std::pair<double, double>> lawa, all;
  for (const json& row : bank_rows) {
    if (row.at("median_steps_to_target").is_null()) continue;
    const std::pair<double, double> p{std::log10(row.at("horizon").get<double>()),
                                      row.at("median_steps_to_target").get<double>()};
    all.push_back(p);
    if (row.at("scheme") == "lawa") lawa.push_back(p);
  }
  json fits = json::object();
  for (const auto& [name, points] : {std::pair{"lawa", &lawa}, std::pair{"all", &all}}) {
    const std::optional<QuadraticFit> f = quadratic_fit(*points);
    if (!f) continue;
    json j = {{"c0", f->c0}, {"c1", f->c1}, {"c2", f->c2}, {"x", "log10(horizon)"},
              {"points", points->size()}};
    if (f->c2 > 0) j["best_horizon"] = std::pow(10.0, -f->c1 / (2 * f->c2));
    fits[name] = j;
  }
  return fits;
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

json curves_json(const std::vector<ModelCurves>& seeds, const std::vector<std::string>& models) {
  json out = json::object();
  for (size_t s = 0; s < seeds.size(); ++s) {
    json by_model = json::object();
    for (const std::string& m : models) {
      json points = json::array();
      for (const CurvePoint& p : model_curve(seeds[s], m))
        points.push_back(json::array({p.step, number_or_null(p.value)}));
      by_model[m] = points;
    }
    out[std::to_string(s)] = by_model;
  }
  return out;
}

WorkloadAnalysis analyse_workload(const WorkloadData& d) {
  WAVG_CHECK(!d.grid.empty() && d.chosen < d.grid.size() && !d.seeds.empty(),
             "study: workload ", d.name, " has no grid or no seed runs to analyse");
  std::vector<Curve> raw_by_seed;
  std::vector<double> bests_T;
  for (const ModelCurves& c : d.seeds) {
    raw_by_seed.push_back(model_curve(c, "raw"));
    bests_T.push_back(best_value(raw_by_seed.back(), d.lower_is_better, d.T));
  }
  const double target = study_target(raw_by_seed, d.T, d.lower_is_better);
  const GridRun& best = d.grid[d.chosen];
  WorkloadAnalysis a;
  json& W = a.results;
  W["T"] = d.T;
  W["hard_budget"] = d.H;
  W["eval_every"] = d.eval_every;
  W["metric"] = d.metric;
  W["direction"] = direction_name(d.lower_is_better);
  W["best_config"] = {{"lr", best.lr}, {"weight_decay", best.weight_decay}, {"warmup", best.warmup}};
  W["target"] = target;
  W["seed_best_within_T"] = numbers_or_null(bests_T);
  W["train_s_per_step"] = d.train_s_per_step;
  W["lr_sensitivity"] = lr_sensitivity_rows(d, target);
  W["methods"] = method_rows(d, target, &a.method_time);
  W["settings"] = bank_rows(d, target, a.method_time.at("nadamw"));
  W["horizon_fit"] = horizon_fits(W["settings"]);
  if (!d.schedules.empty()) W["schedules"] = schedule_rows(d, target);
  W["curves"] = curves_json(d.seeds, plotted_models());
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
