// The report of a run directory: findings, the steps-to-target table, validation curves and the
// schedule (metrics.jsonl), and the offline sweep if there is one (sweep_summary.csv).
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/io/atomic_file.h"
#include "wavg/io/metrics_log.h"
#include "wavg/study/gnuplot.h"
#include "wavg/study/json_view.h"
#include "wavg/study/report_html.h"

namespace wavg::report {

namespace {

// steps_to_target of `m` as a percentage of the raw model's; NaN if either missed.
double percent_of_raw(const JsonView& m, const JsonView& raw) {
  return 100.0 * m["steps_to_target"].number() / raw["steps_to_target"].number();
}

std::string run_findings(const JsonView& s) {
  const std::string metric = s["metric"].text();
  const JsonView raw = s["models"][0];
  std::ostringstream h;
  h << "<h2>Summary</h2>\n<ul>\n";
  for (const JsonView& m : s["models"].elements()) {
    if (m["model"].text() == "raw") continue;
    h << "<li><b>" << html_escape(m["model"].text()) << "</b>: ";
    if (!m["steps_to_target"].is_null() && !raw["steps_to_target"].is_null())
      h << "reached the target in " << cell_fixed(percent_of_raw(m, raw), 1)
        << "% of the raw model's steps";
    else if (m["steps_to_target"].is_null())
      h << "did not reach the target";
    else
      h << "reached the target; the raw model did not";
    if (!m["best_value"].is_null() && !raw["best_value"].is_null())
      h << "; best " << html_escape(metric) << " " << cell(m["best_value"].number()) << " vs raw "
        << cell(raw["best_value"].number());
    h << ".</li>\n";
  }
  h << "</ul>\n";
  return h.str();
}

std::string run_table(const JsonView& s) {
  const bool lower = s["lower_is_better"].boolean();
  const JsonView raw = s["models"][0];
  std::ostringstream h;
  h << "<h2>Steps to target</h2>\n<p>Target: validation " << html_escape(s["metric"].text()) << " "
    << target_relation(lower) << " " << cell(s["target"].number()) << "; "
    << s["steps_done"].integer() << " steps, " << cell_fixed(s["train_wall_s"].number(), 1)
    << " s of training (evaluation excluded).</p>\n<table><tr><th>model</th><th>description</th>"
       "<th>steps to target</th><th>% of raw</th><th>best value (step)</th></tr>\n";
  for (const JsonView& m : s["models"].elements()) {
    h << "<tr><td>" << html_escape(m["model"].text()) << "</td><td>"
      << html_escape(m["description"].text()) << "</td><td>"
      << (m["steps_to_target"].is_null() ? std::string("not reached")
                                         : std::to_string(m["steps_to_target"].integer()))
      << "</td><td>" << cell_fixed(percent_of_raw(m, raw), 1) << "</td><td>"
      << (m["best_value"].is_null() ? std::string("&ndash;")
                                    : cell(m["best_value"].number()) + " (" +
                                          std::to_string(m["best_step"].integer()) + ")")
      << "</td></tr>\n";
  }
  h << "</table>\n";
  return h.str();
}

std::string run_curve_figures(const JsonView& s, const std::vector<MetricRecord>& records) {
  const std::string metric = s["metric"].text();
  const std::vector<ModelCurve> curves = curves_by_model(records);
  std::string data, plot;
  bool positive = true;  // a log scale needs positive values
  for (size_t i = 0; i < curves.size(); ++i) {
    std::vector<std::vector<double>> rows;
    for (const CurvePoint& p : curves[i].points) {
      rows.push_back({double(p.step), p.value});
      positive = positive && !(p.value <= 0);
    }
    data += data_block("m" + std::to_string(i), rows);
    plot += std::string(i ? ", " : "plot ") + "$m" + std::to_string(i) +
            " using 1:2 with linespoints pt 7 ps 0.4 lw 2 title " + gnuplot_quote(curves[i].model);
  }
  plot += ", " + format_exact(s["target"].number()) +
          " with lines dt 2 lw 2 lc rgb '#444444' title 'target'";
  const std::string labels =
      "set xlabel 'step'\nset ylabel " + gnuplot_quote("validation " + metric) + "\n";
  std::vector<std::vector<double>> lr;
  for (const MetricRecord& r : records)
    if (r.model == "raw") lr.push_back({double(r.step), r.lr});
  std::ostringstream h;
  h << "<h2>Validation curves</h2>\n<figure>"
    << gnuplot_svg("validation curves", data + labels + (positive ? "set logscale y\n" : "") +
                                            "set title 'raw model vs averages'\n" + plot)
    << "<figcaption>Validation " << html_escape(metric) << " against the step"
    << (positive ? ", log scale" : "") << "; dashed: the target.</figcaption></figure>\n";
  h << "<figure>"
    << gnuplot_svg("second half", data + labels + "set xrange [" +
                                      format_fixed(s["steps"].number() / 2, 0) +
                                      ":*]\nset title 'second half of the run'\n" + plot)
    << "<figcaption>The second half, linear scale: where averaging helps most before the "
       "learning rate has decayed.</figcaption></figure>\n";
  h << "<figure>"
    << gnuplot_svg("schedule", data_block("lr", lr) +
                                   "set xlabel 'step'\nset ylabel 'learning rate'\nset title "
                                   "'schedule'\nplot $lr using 1:2 with lines lw 2 title "
                                   "'learning rate'",
                   760, 260)
    << "<figcaption>The learning-rate schedule.</figcaption></figure>\n";
  return h.str();
}

// One row of sweep_summary.csv:
// name,scheme,window,beta,every,start,horizon,steps_to_target,best_value,best_step.
struct SweepRow {
  std::string name, scheme, steps_to_target, best_step;
  double horizon = 0, best_value = 0;
};

std::vector<SweepRow> read_sweep_csv(const std::string& path) {
  std::ifstream in(path);
  WAVG_CHECK(in.good(), "report: cannot read ", path);
  std::string line;
  std::getline(in, line);  // the header
  std::vector<SweepRow> rows;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string field;
    while (std::getline(ss, field, ',')) f.push_back(field);
    WAVG_CHECK(f.size() == 10, "report: ", path, ": a row has ", f.size(), " fields, not 10");
    rows.push_back({f[0], f[1], f[7], f[9], std::atof(f[6].c_str()), std::atof(f[8].c_str())});
  }
  return rows;
}

std::string sweep_section(const std::string& path, const std::string& metric) {
  const std::vector<SweepRow> rows = read_sweep_csv(path);
  std::map<std::string, std::vector<std::vector<double>>> steps, best;  // by scheme
  std::ostringstream h;
  h << "<h2>Offline sweep</h2>\n<table><tr><th>setting</th><th>horizon (% of T)</th>"
       "<th>steps to target</th><th>best value (step)</th></tr>\n";
  for (const SweepRow& r : rows) {
    h << "<tr><td>" << html_escape(r.name) << "</td><td>" << cell_fixed(100 * r.horizon, 2)
      << "</td><td>" << (r.steps_to_target.empty() ? "not reached" : html_escape(r.steps_to_target))
      << "</td><td>" << cell(r.best_value) << " (" << html_escape(r.best_step) << ")</td></tr>\n";
    if (r.horizon <= 0) continue;
    if (!r.steps_to_target.empty())
      steps[r.scheme].push_back({100 * r.horizon, std::atof(r.steps_to_target.c_str())});
    best[r.scheme].push_back({100 * r.horizon, r.best_value});
  }
  h << "</table>\n";
  std::string data, p_steps, p_best;
  int k = 0;
  for (const auto& [scheme, points] : best) {
    const std::string b = "b" + std::to_string(k), s = "s" + std::to_string(k);
    data += data_block(b, points);
    p_best += std::string(k ? ", " : "plot ") + "$" + b +
              " using 1:2 with points pt 7 ps 1 title " + gnuplot_quote(scheme);
    if (steps.count(scheme)) {
      data += data_block(s, steps[scheme]);
      p_steps += std::string(p_steps.empty() ? "plot " : ", ") + "$" + s +
                 " using 1:2 with points pt 7 ps 1 title " + gnuplot_quote(scheme);
    }
    ++k;
  }
  const std::string x = "set logscale x\nset xlabel 'horizon (% of the run)'\n";
  if (!p_steps.empty())
    h << "<figure>"
      << gnuplot_svg("sweep: steps to target", data + x + "set ylabel 'steps to target'\nset "
                     "title 'steps to target against the horizon'\n" + p_steps)
      << "<figcaption>Settings that reached the target.</figcaption></figure>\n";
  if (!p_best.empty())
    h << "<figure>"
      << gnuplot_svg("sweep: best value", data + x + "set ylabel " +
                     gnuplot_quote("best validation " + metric) +
                     "\nset title 'best value against the horizon'\n" + p_best)
      << "</figure>\n";
  return h.str();
}

}  // namespace

std::string run_report_body(const std::string& dir) {
  const json doc = read_json_file(dir + "/summary.json");
  const JsonView s(doc, dir + "/summary.json");
  const std::vector<MetricRecord> records = read_metrics(dir + "/metrics.jsonl");
  WAVG_CHECK(!records.empty(), "report: ", dir, "/metrics.jsonl holds no evaluations yet");
  std::string h = "<h1>wavg run: " + html_escape(s["workload"].text()) + "</h1>\n";
  h += run_findings(s);
  h += run_table(s);
  h += run_curve_figures(s, records);
  if (file_exists(dir + "/sweep_summary.csv"))
    h += sweep_section(dir + "/sweep_summary.csv", s["metric"].text());
  return h;
}

}  // namespace wavg::report
