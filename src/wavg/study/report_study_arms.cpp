// The study report's optimizer arms (issue 13: Shampoo, Schedule-Free AdamW, Lookahead beside
// NAdamW + cosine, each ± the pre-registered LAWA and EMA) and Kaddour's EXP windows against
// uniform LAWA, from results.json alone.
#include <algorithm>
#include <cmath>
#include <sstream>
#include <vector>

#include "wavg/core/target.h"
#include "wavg/study/report_html.h"
#include "wavg/study/report_study.h"

namespace wavg::report {

namespace {

// One method of the comparison: NAdamW's from steps_to_target, an arm's from arms[i].methods.
struct Row {
  std::string method, optimizer, lr;
  JsonView e;     // a steps_entry
  JsonView best;  // the entry with best_mean/best_std: NAdamW's "methods" row, or the arm's e
  bool baseline;  // NAdamW's
};

std::string percent(const JsonView& v, const char* key, const char* field) {
  const double x = v.has(key) ? v[key][field].number() : NAN;
  return std::isfinite(x) ? cell_fixed(100 * x, 1) + "%" : "&ndash;";
}

std::string best_cell(const JsonView& e) {
  if (!e.has("best_mean")) return "&ndash;";
  return cell(e["best_mean"].number()) + " &plusmn; " + cell(e["best_std"].number(), 2);
}

// The chosen learning rate, marked when it lies at an end of its grid (`lrs`): a grid that stops
// there may be short of the optimizer's best.
std::string lr_cell(double lr, const std::vector<double>& lrs) {
  double lo = INFINITY, hi = -INFINITY;
  for (double v : lrs) lo = std::min(lo, v), hi = std::max(hi, v);
  return cell(lr) + (lrs.size() > 1 && (lr == lo || lr == hi) ? " (grid edge)" : "");
}

std::vector<double> grid_lrs(const JsonView& rows) {
  std::vector<double> lrs;
  for (const JsonView& g : rows.elements()) lrs.push_back(g["lr"].number());
  return lrs;
}

std::vector<Row> comparison_rows(const StudyWorkload& sw) {
  std::vector<Row> rows;
  const JsonView st = sw.w["steps_to_target"];
  std::string lr;  // NAdamW's, marked against its grid (analysis 4's rows)
  if (sw.w.has("best_config") && sw.w.has("lr_sensitivity"))
    lr = lr_cell(sw.w["best_config"]["lr"].number(), grid_lrs(sw.w["lr_sensitivity"]));
  for (const char* m : {"nadamw", "nadamw+lawa", "nadamw+ema"})
    if (st.has(m) && sw.w.has("methods") && sw.w["methods"].has(m))
      rows.push_back({m, "nadamw + cosine", lr, st[m], sw.w["methods"][m], true});
  for (const JsonView& a : sw.w["arms"].elements()) {
    std::string opt = a["optimizer"].text();
    if (a["lookahead_k"].integer() > 0)
      opt += " + Lookahead (k " + std::to_string(a["lookahead_k"].integer()) + ", &alpha; " +
             cell(a["lookahead_alpha"].number()) + ")";
    opt += a["decay"].boolean() ? " + cosine" : " (no schedule)";
    const std::string lr = lr_cell(a["chosen_lr"].number(), grid_lrs(a["grid"]));
    for (const std::string& m : a["methods"].keys())
      rows.push_back({m, opt, lr, a["methods"][m], a["methods"][m], false});
  }
  return rows;
}

// ", against NAdamW: 87.0% [..] faster" for an arm's method with an interval; "" otherwise.
std::string against_nadamw(const StudyWorkload& sw, const std::string& method) {
  for (const JsonView& a : sw.w["arms"].elements())
    if (a.has("intervals") && a["intervals"]["vs_nadamw"].has(method)) {
      const JsonView e = a["intervals"]["vs_nadamw"][method];
      return ", against NAdamW " + ratio_with_interval(e) + " " + verdict_cell(e);
    }
  return "";
}

// "Which wins where": the fastest method by the AlgoPerf median (ties by the interpolated one)
// and the method with the best mean value.
std::string verdict(const StudyWorkload& sw, const std::vector<Row>& rows) {
  const Row* fastest = nullptr;
  double t_best = INFINITY, ti_best = INFINITY;
  for (const Row& r : rows) {
    const double t = steps_value(r.e["median"]), ti = steps_value(r.e["interpolated_median"]);
    if (std::isfinite(t) && (t < t_best || (t == t_best && ti < ti_best)))
      fastest = &r, t_best = t, ti_best = ti;
  }
  std::string best_method;
  double best_value = NAN;
  for (const Row& r : rows) {
    if (!r.best.has("best_mean")) continue;
    const double v = r.best["best_mean"].number();
    if (std::isnan(best_value) || better(v, best_value, sw.lower_is_better))
      best_value = v, best_method = r.method;
  }
  std::ostringstream s;
  s << "<p><b>" << html_escape(sw.name) << "</b>: ";
  if (fastest)
    s << "fastest median to the target: <b>" << html_escape(fastest->method) << "</b> (" << t_best
      << " steps; interpolated " << cell(ti_best) << ")" << against_nadamw(sw, fastest->method);
  else
    s << "no method reached the target";
  if (!best_method.empty())
    s << "; best " << html_escape(sw.metric) << " within H (mean over seeds): <b>"
      << html_escape(best_method) << "</b> (" << cell(best_value) << ")";
  s << ".</p>\n";
  return s.str();
}

std::string arms_table(const StudyWorkload& sw) {
  const std::vector<Row> rows = comparison_rows(sw);
  std::string h = verdict(sw, rows);
  h += "<table><tr><th>method</th><th>optimizer</th><th>lr</th><th>steps per seed</th>"
       "<th>median</th><th>interpolated median</th><th>relative to NAdamW (AlgoPerf / "
       "interpolated)</th><th>relative to its own raw model</th><th>best " +
       html_escape(sw.metric) + " (mean &plusmn; std)</th></tr>\n";
  for (const Row& r : rows) {
    std::string per;
    for (const JsonView& v : r.e["per_seed"].elements()) per += steps_cell(steps_value(v)) + " ";
    const std::string rel = r.baseline ? "(baseline)"
                                 : percent(r.e, "relative_to_nadamw", "steps") + " / " +
                                       percent(r.e, "relative_to_nadamw", "interpolated");
    const std::string own = r.e.has("relative_to_own_raw")
                                ? percent(r.e, "relative_to_own_raw", "steps") + " / " +
                                      percent(r.e, "relative_to_own_raw", "interpolated")
                                : "&ndash;";
    h += "<tr><td>" + html_escape(r.method) + "</td><td>" + r.optimizer + "</td><td>" + r.lr +
         "</td><td>" + per + "</td><td>" + steps_cell(steps_value(r.e["median"])) + "</td><td>" +
         cell(steps_value(r.e["interpolated_median"])) + "</td><td>" + rel + "</td><td>" + own +
         "</td><td>" + best_cell(r.best) + "</td></tr>\n";
  }
  return h + "</table>\n";
}

// Every arm's comparisons with their intervals: against NAdamW's raw model and against the arm's
// own raw model; then the arms' fixed-budget values.
std::string arm_intervals(const StudyWorkload& sw) {
  std::string h = "<table><tr><th>comparison</th><th>per-seed ratios</th><th>ratio [95% "
                  "interval]</th><th>verdict</th><th>2&times; / 4&times; / trailing mean</th>"
                  "</tr>\n";
  std::string fb;
  for (const JsonView& a : sw.w["arms"].elements()) {
    if (!a.has("intervals")) continue;
    for (const auto& [key, base] : {std::pair{"vs_nadamw", "nadamw"}, std::pair{"vs_own_raw", ""}}) {
      const JsonView iv = a["intervals"][key];
      for (const std::string& m : iv.keys()) {
        const JsonView e = iv[m];
        std::string per;
        for (const JsonView& v : e["per_seed_ratio"].elements())
          per += (v.is_null() ? std::string("both miss") : percent_value(v)) + " ";
        const JsonView rb = e["robustness"];
        h += "<tr><td>" + html_escape(m) + " / " +
             html_escape(*base ? base : a["name"].text()) + "</td><td>" + per + "</td><td>" +
             ratio_with_interval(e) + "</td><td>" + verdict_cell(e) + "</td><td>" +
             percent_value(rb["subsample_2x"]) + " / " + percent_value(rb["subsample_4x"]) +
             " / " + percent_value(rb["trailing_mean_3"]) + "</td></tr>\n";
      }
    }
    fb += fixed_budget_rows(sw.name, a["fixed_budget"]["vs_nadamw"]);
  }
  if (fb.empty()) return "";
  return "<p>" + html_escape(sw.name) + ", steps to target with intervals (paired over the "
         "scoring seeds; &ldquo;faster&rdquo;/&ldquo;slower&rdquo; only where the interval "
         "excludes 100&nbsp;%):</p>" + h + "</table>\n<p>" + html_escape(sw.name) +
         ", fixed budget (gains over NAdamW's raw model of the same seed):</p>" +
         fixed_budget_header() + fb + "</table>\n";
}

// An EXP window's ratio to uniform LAWA with its interval ("exp_vs_uniform"), if there is one.
std::string exp_interval(const JsonView& w, const std::string& name) {
  if (!w.has("exp_vs_uniform")) return "&ndash;";
  for (const JsonView& e : w["exp_vs_uniform"].elements())
    if (e["name"].text() == name) return ratio_with_interval(e) + " " + verdict_cell(e);
  return "&ndash;";
}

// Kaddour's EXP windows against uniform LAWA at the same L and ν (both in the bank).
std::string exp_table(const StudyWorkload& sw) {
  if (!sw.w.has("settings")) return "";
  std::string body;
  for (const JsonView& s : sw.w["settings"].elements()) {
    const std::string scheme = s["scheme"].text();
    if (!(scheme == "lawa_exp" || s["name"].text() == "lawa_rec")) continue;
    body += "<tr><td>" + html_escape(s["name"].text()) + "</td><td>" +
            (scheme == "lawa_exp" ? "EXP, &alpha; " + cell(s["alpha"].number()) : "uniform") +
            "</td><td>" + std::to_string(s["window"].integer()) + "</td><td>" +
            std::to_string(s["every"].integer()) + "</td><td>" +
            steps_cell(steps_value(s["median_steps_to_target"])) + "</td><td>" +
            cell(steps_value(s["interpolated_median"])) + "</td><td>" +
            cell(s["best_mean"].number()) + "</td><td>" + exp_interval(sw.w, s["name"].text()) +
            "</td></tr>\n";
  }
  if (body.find("EXP") == std::string::npos) return "";
  return "<p><b>" + html_escape(sw.name) + "</b>: LAWA's window with uniform and with "
         "exponentially decayed weights (Kaddour 2022, App. C), same samples, evaluated as often"
         "</p><table><tr><th>setting</th><th>weights</th><th>L</th><th>&nu;</th><th>median steps "
         "to target</th><th>interpolated median</th><th>best " + html_escape(sw.metric) +
         " (mean)</th><th>EXP / uniform [95% interval]</th></tr>\n" + body + "</table>\n";
}

}  // namespace

std::string arms_section(const StudyResults& r) {
  std::string arms, exps;
  for (const StudyWorkload& sw : r.workloads) {
    if (sw.w.has("arms") && sw.w.has("steps_to_target")) arms += arms_table(sw) + arm_intervals(sw);
    exps += exp_table(sw);
  }
  if (arms.empty() && exps.empty()) return "";  // the default study has neither
  std::string h;
  if (!arms.empty())
    h += "<h2>Optimizers under averaging: Shampoo, Schedule-Free AdamW, Lookahead</h2>\n"
         "<p>Each arm was tuned over its own learning-rate grid at T (seed 0, best raw value) and "
         "run with the scoring seeds at H against the workload's NAdamW target, with the "
         "pre-registered LAWA and EMA riding and evaluated as often as NAdamW's. Schedule-Free "
         "AdamW runs without a schedule and is evaluated (and averaged) at its x sequence. "
         "Paper: averaging speeds up Shampoo as it does NAdamW (Fig. 5); its &sect;8 asks how "
         "averaging compares with and combines with schedule-free methods. Kaddour (2022, "
         "App. B) compares LAWA with Lookahead.</p>\n" + arms;
  if (!exps.empty()) h += "<h2>Kaddour's EXP window against uniform LAWA</h2>\n" + exps;
  return h;
}

}  // namespace wavg::report
