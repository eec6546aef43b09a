// The study report from results.json alone: the workloads and their directions, the introduction,
// the findings, the scoring, and the order of the sections (the analyses are in
// report_study_sections.cpp).
#include "wavg/study/report_study.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "wavg/core/error.h"
#include "wavg/core/target.h"
#include "wavg/study/gnuplot.h"
#include "wavg/study/report_html.h"

namespace wavg::report {

std::string note(const std::string& text) { return "<p class=\"note\">" + text + "</p>\n"; }

bool need(const JsonView& v, std::initializer_list<const char*> keys, const std::string& who,
          const std::string& what, std::string* html) {
  const std::vector<std::string> missing = v.missing(keys);
  if (missing.empty()) return true;
  std::string list;
  for (const std::string& k : missing) list += (list.empty() ? "'" : ", '") + k + "'";
  *html += note(html_escape(who) + ": no " + what + " (" + html_escape(list) +
                " not in results.json: a partial study, or one written by an older wavg)");
  return false;
}

StudyResults study_results(const JsonView& root) {
  const std::string schema = root.has("schema") && root["schema"].is_string()
                                 ? root["schema"].text() : std::string("none");
  WAVG_CHECK(schema == "study-v4", "report: ", root.file(), " has schema '", schema, "', written ",
             "by an older wavg; this wavg reports schema 'study-v4' only (a study-v3 study: `wavg ",
             "study --merge-only` merges its parts again; an older one must be rerun)");
  StudyResults r{root, {}, ""};
  const JsonView all = root["workloads"];
  for (const std::string& name : all.keys()) {
    const JsonView w = all[name];
    if (!need(w, {"metric", "target"}, name, "sections", &r.skipped)) continue;
    if (!need(w, {"direction"}, name, "sections", &r.skipped)) continue;
    const std::string d = w["direction"].text();
    if (d != "min" && d != "max") w["direction"].invalid("\"min\" or \"max\"");
    const bool lower = d == "min";
    r.workloads.push_back({name, w, lower, w["metric"].text(), w["target"].number()});
  }
  WAVG_CHECK(!r.workloads.empty() || !r.skipped.empty() || root.has("lm_protocol"),
             "report: results.json holds no workloads yet");
  return r;
}

namespace {

std::string join_keys(const JsonView& v) {
  std::string s;
  for (const std::string& k : v.keys()) s += (s.empty() ? "" : ", ") + k;
  return s;
}

}  // namespace

std::string study_intro(const StudyResults& r) {
  std::string h = "<h1>wavg study: when, where and why to average weights, on a CPU</h1>\n";
  if (!need(r.root, {"protocol"}, "the study", "protocol", &h)) return h + r.skipped;
  const JsonView p = r.root["protocol"];
  if (!need(p, {"seeds", "target", "recommended_horizon"}, "the study", "protocol", &h))
    return h + r.skipped;
  std::ostringstream s;
  s << "<p>Protocol (AlgoPerf's, DESIGN.md &sect;4): per workload a small NAdamW grid (seed 0, "
       "budget T, decaying at T); target-setting runs of the best point at T with "
    << (p.has("target_seeds") ? std::to_string(p["target_seeds"].integer()) : std::string("?"))
    << " seeds apart from the scoring seeds. Target: " << html_escape(p["target"].text())
    << ". Scoring: " << p["seeds"].integer() << " seeds at the hard budget H = "
       "&lceil;4/3&middot;T&rceil;, the schedule over H, the bank riding each trajectory; the raw "
       "model and the pre-registered averages evaluated every "
    << (p.has("eval_fraction") ? cell(100 * p["eval_fraction"].number(), 3) : std::string("?"))
    << "% of H. <i>nadamw+lawa</i> is LAWA with L = 20 at a horizon of "
    << cell(100 * p["recommended_horizon"].number(), 2) << "% of H, <i>nadamw+ema</i> the EMA "
       "with &beta; = 19/21 at the same &nu; (pre-registered).";
  if (r.root.has("lm_protocol"))
    s << " The language-model protocol of the paper's &sect;7 is reported on its own, and only it "
         "is compared with the paper's ~70&nbsp;%.";
  if (p.has("arms"))
    s << " Further optimizers (arms: " << html_escape(join_keys(p["arms"])) << ") run under the "
         "same protocol and target; see their section.";
  if (r.root.has("workload_definitions")) {
    const JsonView d = r.root["workload_definitions"];
    std::string list;
    for (const std::string& w : d.keys())
      list += (list.empty() ? "" : ", ") + html_escape(w) + " " + std::to_string(d[w].integer());
    s << " Its runs were made under these workload definitions (model and data generator; the "
         "merge refuses a part made under another): " << list << ".";
  }
  s << "</p>\n";
  if (r.root.has("missing_parts")) {
    s << "<p class=\"note\">Parts not run yet:";
    for (const JsonView& m : r.root["missing_parts"].elements()) s << " " << html_escape(m.text());
    s << ".</p>\n";
  }
  return h + s.str() + r.skipped;
}

namespace {

// Analysis 6 in one sentence: how much of the gain that decaying the learning rate brings does
// averaging recover on a run without decay?
std::string schedule_finding(const StudyWorkload& sw) {
  if (!sw.w.has("schedules")) return "";
  const JsonView* decayed = nullptr;   // cosine to 0 over the whole budget
  const JsonView* constant = nullptr;  // no decay
  const std::vector<JsonView> rows = sw.w["schedules"].elements();
  for (const JsonView& s : rows) {
    if (!s.has("final_fraction") || !s.has("decay_fraction")) continue;  // an older file
    const double f = s["final_fraction"].number(), d = s["decay_fraction"].number();
    if (f == 0.0 && d == 1.0) decayed = &s;
    if (f == 1.0) constant = &s;
  }
  if (!decayed || !constant) return "";
  const bool lower = sw.lower_is_better;
  const double raw_decay = (*decayed)["raw_best"].number();
  const double raw_const = (*constant)["raw_best"].number();
  const double lawa = (*constant)["lawa_best"].number(), ema = (*constant)["ema_best"].number();
  const double avg_const = better(ema, lawa, lower) ? ema : lawa;
  const double sign = lower ? 1 : -1;  // sign·(a − b) > 0: b is better than a
  std::ostringstream s;
  s << "<li><b>" << html_escape(sw.name) << "</b>, learning-rate decay (seed 0): best "
    << html_escape(sw.metric) << " " << cell(raw_decay) << " with cosine decay to 0, "
    << cell(raw_const) << " without decay, and " << cell(avg_const)
    << " for the better average of the run without decay";
  const double gap = sign * (raw_const - raw_decay);
  if (gap > 0) {
    const double recovered = sign * (raw_const - avg_const) / gap;
    s << ": averaging recovers " << cell_fixed(100 * recovered, 0) << "% of what decay gains"
      << (recovered >= 1 ? " (within one seed; compare with the spread over seeds in analysis 5)"
                         : "");
  }
  s << ".</li>\n";
  return s.str();
}

// "LAWA 91.0% [84.2%, 103.1%] within noise" for the comparisons of an "intervals" object.
std::string intervals_finding(const JsonView& w) {
  std::string s;
  for (const std::string& m : w["intervals"].keys())
    s += (s.empty() ? "" : "; ") + html_escape(m) + " " +
         ratio_with_interval(w["intervals"][m]) + " " + verdict_cell(w["intervals"][m]);
  return s;
}

std::string part_finding(const std::string& name, const JsonView& w) {
  const bool lower = w["direction"].text() == "min";
  std::ostringstream h;
  h << "<li><b>" << html_escape(name) << "</b>: target "
    << html_escape(w.has("metric") ? w["metric"].text() : "value") << " "
    << target_relation(lower) << " " << cell(w["target"].number()) << " (" << better_word(lower)
    << " is better). Steps to target relative to the raw model, pre-registered: "
    << (w.has("intervals") ? intervals_finding(w) : "&ndash;");
  if (w.has("tuned"))
    h << "; tuned (leave-one-seed-out, the bank's grid): " << ratio_with_interval(w["tuned"]) << " "
      << verdict_cell(w["tuned"]) << " (paper, tuned: "
      << cell_fixed(100 * w["tuned"]["paper_tuned_ratio"].number(), 0) << "%)";
  if (w.has("regime_check") && !w["regime_check"].is_null()) {
    h << "; " << (w["regime_check"]["passes"].boolean() ? "in" : "<b>outside</b>")
      << " the paper's regime";
    if (w.has("regime_interval"))
      h << " (decay's gain at T " << cell(w["regime_interval"]["gain"].number(), 3) << " ["
        << cell(w["regime_interval"]["ci95"][0].number(), 3) << ", "
        << cell(w["regime_interval"]["ci95"][1].number(), 3) << "])";
  }
  if (w.has("horizon_fit_one_grid") && w["horizon_fit_one_grid"].has("best_horizon") &&
      !w["horizon_fit_one_grid"]["best_horizon"].is_null()) {
    const JsonView f = w["horizon_fit_one_grid"];
    h << "; the one-grid horizon fit has its minimum at "
      << cell(100 * f["best_horizon"].number(), 2) << "% of H [" << percent_value(f["best_horizon_ci95"][0])
      << ", " << percent_value(f["best_horizon_ci95"][1]) << "]";
  }
  h << ".</li>\n";
  return h.str();
}

}  // namespace

std::string study_findings(const StudyResults& r) {
  std::ostringstream h;
  h << "<h2>Findings</h2>\n<ul>\n";
  for (const auto& [name, w] : study_parts_of(r)) {
    h << part_finding(name, w);
    for (const StudyWorkload& sw : r.workloads)
      if (sw.name == name) h << schedule_finding(sw);
  }
  if (r.root.has("scoring") && r.root["scoring"].has("score")) {
    const JsonView score = r.root["scoring"]["score"];
    h << "<li>Benchmark score (area under the performance profile, 1 = fastest everywhere): ";
    for (const std::string& m : score.keys())
      h << html_escape(m) << " " << cell_fixed(score[m].number(), 3) << "; ";
    h << "</li>\n";
  }
  h << "</ul>\n";
  return h.str();
}

std::string scoring_section(const StudyResults& r) {
  std::string h = "<h2>Scoring (AlgoPerf): performance ratios and profile</h2>\n";
  if (!need(r.root, {"scoring"}, "the study", "scoring", &h)) return h;
  const JsonView sc = r.root["scoring"];
  if (!need(sc, {"ratios", "score", "profile"}, "the study", "scoring", &h)) return h;
  h += "<table><tr><th>method</th>";
  for (const StudyWorkload& sw : r.workloads) h += "<th>" + html_escape(sw.name) + "</th>";
  h += "<th>score</th></tr>\n";
  std::string data, plot;
  int k = 0;
  for (const std::string& m : sc["ratios"].keys()) {
    const JsonView ratios = sc["ratios"][m];
    h += "<tr><td>" + html_escape(m) + "</td>";
    for (const StudyWorkload& sw : r.workloads)
      h += "<td>" + (ratios.has(sw.name) ? cell_fixed(ratios[sw.name].number(), 3) : "&ndash;") +
           "</td>";
    h += "<td>" + cell_fixed(sc["score"][m].number(), 3) + "</td></tr>\n";
    std::vector<std::vector<double>> rows;
    for (const JsonView& p : sc["profile"][m].elements()) rows.push_back({p[0].number(), p[1].number()});
    data += data_block("p" + std::to_string(k), rows);
    plot += std::string(k ? ", " : "plot ") + "$p" + std::to_string(k) + " u 1:2 w steps lw 2 t " +
            gnuplot_quote(m);
    ++k;
  }
  h += "</table>\n";
  if (k > 0)
    h += "<figure>" +
         gnuplot_svg("performance profile",
                     data + "set xlabel 'tau'\nset ylabel 'fraction of workloads within tau of "
                            "the best'\nset yrange [0:1.05]\nset title 'performance profile'\n" +
                         plot,
                     760, 360) +
         "</figure>\n";
  return h;
}

std::string study_report_body(const std::string& dir) {
  const std::string path = dir + "/results.json";
  const json doc = read_json_file(path);
  const StudyResults r = study_results(JsonView(doc, path));
  std::string h;  // section by section, in order (an error names the first part that fails)
  for (std::string (*section)(const StudyResults&) :
       {study_intro, study_findings, conclusions_section, regime_section, steps_section, intervals_section,
        one_grid_section, speedup_section, horizon_section, grids_section, lr_section,
        best_value_section, fixed_budget_section, schedules_section, lm_section, arms_section,
        scoring_section})
    h += section(r);
  return h;
}

}  // namespace wavg::report
