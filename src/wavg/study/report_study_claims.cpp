// The study report's sections of issue 25 (schema study-v4): every ratio with its paired per-seed
// ratios, the exact bootstrap 95 % interval over seeds and a verdict that claims "faster" or
// "slower" only where the interval excludes 1; the robustness column; the bank on one grid; the
// leave-one-seed-out tuned rows beside the pre-registered ones and the paper's; the fixed-budget
// values with paired gains.
#include <cmath>
#include <sstream>
#include <utility>
#include <vector>

#include "wavg/core/format.h"
#include "wavg/study/report_html.h"
#include "wavg/study/report_study.h"

namespace wavg::report {

std::string percent_value(const JsonView& v) {
  const double x = steps_value(v);
  if (std::isinf(x)) return "&infin;";
  return std::isfinite(x) ? cell_fixed(100 * x, 1) + "%" : "&ndash;";
}

std::string ratio_with_interval(const JsonView& e) {
  std::string s = percent_value(e["ratio"]) + " [" + percent_value(e["ci95"][0]) + ", " +
                  percent_value(e["ci95"][1]) + "]";
  if (e["open_above"].boolean()) s += " (open above)";
  return s;
}

std::string verdict_cell(const JsonView& e) {
  const std::string v = e["verdict"].text();
  return v == "within noise" ? v : "<b>" + html_escape(v) + "</b>";
}

std::vector<std::pair<std::string, JsonView>> study_parts_of(const StudyResults& r) {
  std::vector<std::pair<std::string, JsonView>> parts;
  for (const StudyWorkload& sw : r.workloads) parts.push_back({sw.name, sw.w});
  if (r.root.has("lm_protocol")) parts.push_back({"lm_protocol", r.root["lm_protocol"]});
  return parts;
}

namespace {

std::string per_seed_ratios(const JsonView& e) {
  std::string s;
  for (const JsonView& v : e["per_seed_ratio"].elements())
    s += (v.is_null() ? std::string("both miss") : percent_value(v)) + " ";
  return s;
}

std::string comparison_row(const std::string& part, const std::string& what, const JsonView& e) {
  std::string h = "<tr><td>" + html_escape(part) + "</td><td>" + what + "</td><td>" +
                  std::to_string(e["eval_every"].integer()) + " (" +
                  cell_fixed(100 * e["resolution"].number(), 2) + "% of H)</td><td>" +
                  per_seed_ratios(e) + "</td><td>" + ratio_with_interval(e) + "</td><td>" +
                  verdict_cell(e) + "</td><td>";
  if (e.has("seeds_for_5_percent") && !e["seeds_for_5_percent"].is_null())
    h += "<small>(a &plusmn;5&nbsp;% interval: ~" +
         std::to_string(e["seeds_for_5_percent"].integer()) + " seeds by the per-seed spread)</small> ";
  if (e.has("robustness")) {
    const JsonView rb = e["robustness"];
    h += percent_value(rb["subsample_2x"]) + " / " + percent_value(rb["subsample_4x"]) + " / " +
         percent_value(rb["trailing_mean_3"]);
  } else {
    h += "&ndash;";
  }
  return h + "</td></tr>\n";
}

std::string tuned_note(const std::string& part, const JsonView& t) {
  std::string chosen;
  for (const JsonView& rot : t["rotations"].elements())
    chosen += (chosen.empty() ? "" : ", ") + std::string("seed ") +
              std::to_string(rot["held_out_seed"].integer()) + ": " +
              html_escape(rot["chosen"].text());
  return note(html_escape(part) + ", tuned leave-one-seed-out: " + chosen + "; the paper's tuned "
              "averaging: " + cell_fixed(100 * t["paper_tuned_ratio"].number(), 0) + "%.");
}

}  // namespace

std::string intervals_section(const StudyResults& r) {
  std::string h =
      "<h2>Intervals over seeds: pre-registered and tuned averages against the raw model</h2>\n"
      "<p>Steps to target as AlgoPerf counts them, each pair compared on one grid of evaluations. "
      "Ratio: the average's median over seeds divided by the raw model's (a miss counts as "
      "&infin;); interval: the 95&nbsp;% percentile interval of that ratio over every resample of "
      "the seeds with replacement (n<sup>n</sup> of them, paired: the same seeds on both sides), "
      "open above when a resample's average misses. &ldquo;faster&rdquo; or &ldquo;slower&rdquo; "
      "only where the interval excludes 100&nbsp;%, otherwise &ldquo;within noise&rdquo;. "
      "Robustness: the same ratio with the evaluations subsampled 2&times; and 4&times;, and "
      "under a 3-point trailing mean. Tuned: the bank's best setting chosen on the other seeds "
      "(leave one seed out), scored on the held-out seed, on the bank's grid.</p>\n"
      "<table><tr><th>part</th><th>comparison</th><th>evaluated every</th><th>per-seed ratios"
      "</th><th>ratio [95% interval]</th><th>verdict</th><th>2&times; / 4&times; / trailing "
      "mean</th></tr>\n";
  std::string notes;
  for (const auto& [name, w] : study_parts_of(r)) {
    if (!need(w, {"intervals"}, name, "intervals", &notes)) continue;
    for (const std::string& m : w["intervals"].keys())
      h += comparison_row(name, html_escape(m) + " (pre-registered)", w["intervals"][m]);
    if (w.has("added_seeds"))
      notes += note(html_escape(name) + ": the pre-registered rows (and the fixed budget and the "
                    "regime check) are over " + std::to_string(w["intervals_seeds"].size()) +
                    " seeds, with raw and pre-registered averages run again for the " +
                    std::to_string(w["added_seeds"].size()) + " added ones; the bank and the "
                    "tuned row over the part's own " + std::to_string(w["scoring_seeds"].size()) +
                    ".");
    if (w.has("tuned")) {
      h += comparison_row(name, "tuned (leave-one-seed-out)", w["tuned"]);
      notes += tuned_note(name, w["tuned"]);
    } else {
      notes += note(html_escape(name) + ": no bank, so no tuned row.");
    }
  }
  return h + "</table>\n" + notes;
}

std::string one_grid_section(const StudyResults& r) {
  std::string h = "<h2>The bank on one grid</h2>\n<p>Each setting once, compared with the raw "
                  "model subsampled onto the bank's grid of evaluations (its resolution in "
                  "brackets); a pre-registered setting that the bank holds too is counted "
                  "once.</p>\n";
  for (const auto& [name, w] : study_parts_of(r)) {
    if (name == "lm_protocol" && !w.has("one_grid")) continue;  // no LM bank (an lm_bank addition)
    if (!need(w, {"one_grid"}, name, "one-grid comparison", &h)) continue;
    const JsonView og = w["one_grid"];
    std::ostringstream s;
    s << "<p><b>" << html_escape(name) << "</b>: every " << og["eval_every"].integer()
      << " steps (" << cell_fixed(100 * og["resolution"].number(), 2)
      << "% of H); raw model on this grid: median " << steps_cell(steps_value(og["raw_median"]))
      << ".</p>\n<table><tr><th>setting</th><th>horizon</th><th>median steps</th>"
      << "<th>interpolated median</th><th>ratio to raw [95% interval]</th><th>verdict</th></tr>\n";
    for (const JsonView& g : og["settings"].elements())
      s << "<tr><td>" << html_escape(g["name"].text())
        << (g["pre_registered"].boolean() ? " (pre-registered)" : "") << "</td><td>"
        << cell(100 * g["horizon"].number(), 2) << "%</td><td>"
        << steps_cell(steps_value(g["median"])) << "</td><td>"
        << cell_fixed(steps_value(g["interpolated_median"]), 1) << "</td><td>"
        << ratio_with_interval(g) << "</td><td>" << verdict_cell(g) << "</td></tr>\n";
    s << "</table>\n";
    for (const JsonView& n : og["notes"].elements()) s << note(html_escape(n.text()));
    h += s.str();
  }
  return h;
}

namespace {

std::string gain_cell(const JsonView& g) {
  return cell(g["mean"].number(), 3) + " [" + cell(g["ci95"][0].number(), 3) + ", " +
         cell(g["ci95"][1].number(), 3) + "] " + verdict_cell(g);
}

std::string mean_std_cell(const JsonView& row, const std::string& key) {
  return cell(row[key + "_mean"].number()) + " &plusmn; " + cell(row[key + "_std"].number(), 2);
}

}  // namespace

std::string fixed_budget_rows(const std::string& part, const JsonView& fb) {
  std::string h;
  for (const std::string& m : fb.keys()) {
    const JsonView row = fb[m];
    h += "<tr><td>" + html_escape(part) + "</td><td>" + html_escape(m) + "</td><td>" +
         mean_std_cell(row, "best") + "</td><td>" +
         (row.has("best_gain") ? gain_cell(row["best_gain"]) : "&ndash;") + "</td><td>" +
         mean_std_cell(row, "at_H") + "</td><td>" +
         (row.has("at_H_gain") ? gain_cell(row["at_H_gain"]) : "&ndash;") + "</td></tr>\n";
  }
  return h;
}

std::string fixed_budget_header() {
  return "<table><tr><th>part</th><th>method</th><th>best value (mean &plusmn; std)</th><th>gain "
         "over the baseline [95% interval]</th><th>value at H</th><th>gain over the baseline "
         "[95% interval]</th></tr>\n";
}

std::string fixed_budget_section(const StudyResults& r) {
  std::string h = "<h2>Fixed budget: best value and value at H (the paper's Table 4)</h2>\n"
                  "<p>Per seed, the best validation value within H and the value at H; gain: the "
                  "mean over seeds of the paired difference to the raw model of the same seed, "
                  "positive when the average is better in the metric's direction, with the exact "
                  "bootstrap 95&nbsp;% interval of that mean. &ldquo;better&rdquo; or "
                  "&ldquo;worse&rdquo; only where the interval excludes 0.</p>\n" +
                  fixed_budget_header();
  std::string notes;
  for (const auto& [name, w] : study_parts_of(r)) {
    if (!need(w, {"fixed_budget"}, name, "fixed-budget values", &notes)) continue;
    h += fixed_budget_rows(name, w["fixed_budget"]);
  }
  return h + "</table>\n" + notes;
}

}  // namespace wavg::report
