// The study report's protocol sections (schema study-v3, issue 12): steps to target of the
// pre-registered methods and of the setting selected after the fact, AlgoPerf's count and the
// interpolated one side by side; the regime checks; the language-model protocol of the paper's §7.
#include <cmath>
#include <optional>
#include <sstream>

#include "wavg/core/format.h"
#include "wavg/study/gnuplot.h"
#include "wavg/study/report_html.h"
#include "wavg/study/report_study.h"

namespace wavg::report {

double steps_value(const JsonView& v) {
  if (!v.is_string()) return v.number();
  if (v.text() != "inf") v.invalid("a number of steps or \"inf\"");
  return INFINITY;
}

namespace {

std::string percent_of(double t, double base) {
  return std::isfinite(t) && std::isfinite(base) && base > 0 ? cell_fixed(100 * t / base, 1) + "%"
                                                            : "&ndash;";
}

// The ratio of a bank setting to the raw model on the bank's grid ("one_grid"), if there is one.
std::string one_grid_ratio(const JsonView* one_grid, const std::string& model) {
  if (one_grid)
    for (const JsonView& g : (*one_grid)["settings"].elements())
      if (g["name"].text() == model)
        return ratio_with_interval(g) + " <small>(raw on the bank's grid)</small>";
  return "&ndash;";
}

// One table of steps_to_target: a row per method, both counts, relative to NAdamW on the same grid
// (a setting evaluated on the bank's coarser grid: from `one_grid`, else not compared).
std::string steps_table(const std::string& name, const JsonView& stt,
                        const JsonView* one_grid = nullptr) {
  std::ostringstream h;
  h << "<table><tr><th>" << html_escape(name) << "</th><th>model</th><th>settings</th>"
    << "<th>evaluated every</th><th>steps per seed (AlgoPerf: first evaluation at/past target)</th>"
    << "<th>median</th><th>relative</th><th>interpolated per seed</th>"
    << "<th>interpolated median</th><th>relative</th></tr>\n";
  const double base = stt.has("nadamw") ? steps_value(stt["nadamw"]["median"]) : NAN;
  const double base_i = stt.has("nadamw") ? steps_value(stt["nadamw"]["interpolated_median"]) : NAN;
  for (const std::string& m : stt.keys()) {
    const JsonView e = stt[m];
    h << "<tr><td>" << html_escape(m) << "</td><td>" << html_escape(e["model"].text()) << "</td><td>"
      << (e["pre_registered"].boolean() ? "pre-registered" : "<b>selected after the fact</b>")
      << "</td><td>" << e["eval_every"].integer() << "</td><td>";
    for (const JsonView& s : e["per_seed"].elements()) h << steps_cell(steps_value(s)) << " ";
    const double med = steps_value(e["median"]), imed = steps_value(e["interpolated_median"]);
    const bool same_grid = e["pre_registered"].boolean();
    h << "</td><td>" << steps_cell(med) << "</td><td>"
      << (same_grid ? percent_of(med, base) : one_grid_ratio(one_grid, e["model"].text()))
      << "</td><td>";
    for (const JsonView& s : e["interpolated_per_seed"].elements())
      h << cell_fixed(steps_value(s), 1) << " ";
    h << "</td><td>" << cell_fixed(imed, 1) << "</td><td>"
      << (same_grid ? percent_of(imed, base_i) : "&ndash;") << "</td></tr>\n";
  }
  h << "</table>\n";
  return h.str();
}

}  // namespace

std::string steps_section(const StudyResults& r) {
  std::string h = "<h2>Steps to target: pre-registered and selected settings</h2>\n"
                  "<p>The AlgoPerf count (the first evaluation at or past the target; the score "
                  "uses it) beside a linearly interpolated count. Pre-registered: LAWA L = 20 and "
                  "EMA &beta; = 19/21 at &nu; = max(1, round(0.01&middot;H/20)), fixed before the "
                  "study ran. The selected setting is the bank's best by interpolated median, "
                  "chosen after looking (the paper tunes per workload); the bank is evaluated "
                  "less often, so its AlgoPerf count is coarser and it is compared with the raw "
                  "model subsampled onto the bank's grid.</p>\n";
  for (const StudyWorkload& sw : r.workloads) {
    if (!need(sw.w, {"steps_to_target"}, sw.name, "steps to target", &h)) continue;
    const JsonView* og = nullptr;
    std::optional<JsonView> one_grid;
    if (sw.w.has("one_grid")) one_grid = sw.w["one_grid"], og = &*one_grid;
    h += steps_table(sw.name, sw.w["steps_to_target"], og);
  }
  return h;
}

namespace {

std::string regime_interval_cell(const JsonView& w) {
  if (!w.has("regime_interval")) return "&ndash;";
  const JsonView g = w["regime_interval"];
  std::string c = cell(g["gain"].number(), 3) + " [" + cell(g["ci95"][0].number(), 3) + ", " +
                  cell(g["ci95"][1].number(), 3) + "] " + html_escape(g["verdict"].text());
  const int64_t n = g["scoring_seeds"].integer();
  if (n != int64_t(w["scoring_seeds"].size()))  // seeds were added to the part
    c += "; over " + std::to_string(n) + " scoring seeds: raw at T " + cell(g["raw_at_T"].number()) +
         ", spread " + cell(g["seed_spread"].number(), 3) + ", passes: " +
         (g["passes"].boolean() ? "yes" : "no");
  return c;
}

}  // namespace

std::string regime_section(const StudyResults& r) {
  std::string h = "<h2>Regime check (from the baseline alone)</h2>\n<p>decayed at T: median over "
                  "the target-setting runs (schedule decayed at T) of their value at T; raw at T: "
                  "median over the scoring runs (schedule over H, learning rate still ~15&nbsp;% "
                  "of its peak) of the raw value at step T; the check passes when the first beats "
                  "the second by more than the scoring seeds' standard deviation.</p>\n"
                  "<table><tr><th>workload</th><th>decayed at T</th><th>raw at T</th>"
                  "<th>seed spread</th><th>passes</th><th>label</th><th>decay's gain at T "
                  "[95% interval over both sets of seeds]</th></tr>\n";
  std::string notes;
  for (const StudyWorkload& sw : r.workloads) {
    if (!need(sw.w, {"regime_check"}, sw.name, "regime check", &notes)) continue;
    const JsonView c = sw.w["regime_check"];
    const bool passes = c["passes"].boolean();
    h += "<tr><td>" + html_escape(sw.name) + "</td><td>" + cell(c["decayed_at_T"].number()) +
         "</td><td>" + cell(c["raw_at_T"].number()) + "</td><td>" +
         cell(c["seed_spread"].number(), 3) + "</td><td>" + (passes ? "yes" : "no") + "</td><td>" +
         (passes ? "in the paper's regime" : "<b>outside the paper's regime</b>") + "</td><td>" +
         regime_interval_cell(sw.w) + "</td></tr>\n";
  }
  return h + "</table>\n" + notes;
}

std::string lm_section(const StudyResults& r) {
  std::string h = "<h2>Language-model protocol (paper &sect;7)</h2>\n";
  if (!r.root.has("lm_protocol")) return h + note("no LM protocol in this study");
  const JsonView lm = r.root["lm_protocol"];
  if (!need(lm, {"grid", "target", "target_step", "budget_H", "steps_to_target", "direction"},
            "the LM protocol", "results", &h))
    return h;
  const bool lower = lm["direction"].text() == "min";
  std::ostringstream s;
  s << "<p>AdamW tuned over a grid by its best validation value within H = "
    << lm["budget_H"].integer() << " steps; target = the median over the target seeds of the tuned "
    << "baseline's value at step &lfloor;H/3&rfloor; = " << lm["target_step"].integer() << ": "
    << html_escape(lm.has("metric") ? lm["metric"].text() : "value") << " "
    << target_relation(lower) << " " << cell(lm["target"].number())
    << ". Paper: AdamW 3200 steps, LAWA 2240 / EMA 2200 (~70&nbsp;%).</p>\n"
    << "<table><tr><th>lr</th><th>final lr</th><th>warmup</th><th>weight decay</th>"
    << "<th>clip norm</th><th>best value</th></tr>\n";
  for (const JsonView& g : lm["grid"].elements())
    s << "<tr><td>" << cell(g["lr"].number()) << (g["chosen"].boolean() ? " (chosen)" : "")
      << "</td><td>" << cell(g["final_fraction"].number()) << "&middot;lr</td><td>"
      << cell(g["warmup"].number()) << "</td><td>" << cell(g["weight_decay"].number())
      << "</td><td>" << cell(g["clip_norm"].number()) << "</td><td>"
      << cell(g["best_value"].number()) << "</td></tr>\n";
  if (lm.has("grid_added"))
    for (const std::string& name : lm["grid_added"].keys()) {
      const JsonView g = lm["grid_added"][name];
      s << "<tr><td>" << cell(g["lr"].number()) << " (added, seed 0)</td><td>"
        << cell(g["final_fraction"].number()) << "&middot;lr</td><td colspan=\"3\">as the grid"
        << "</td><td>" << cell(g["best_value"].number()) << "</td></tr>\n";
    }
  s << "</table>\n" << steps_table("LM protocol", lm["steps_to_target"]);
  return h + s.str();
}

}  // namespace wavg::report
