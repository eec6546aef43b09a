// Report rendering: tables in HTML, figures by gnuplot as inline SVG.
#include "wavg/study/report.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "wavg/core/error.h"
#include "wavg/io/atomic_file.h"

namespace wavg {

namespace {

using json = nlohmann::json;


std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  WAVG_CHECK(f.good(), "report: cannot read ", p);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::string fmt(double v, const char* f = "%.4g") {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string gnuplot_svg(const std::string& script, int width, int height) {
  char tmpl[] = "/tmp/wavg_plot_XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::string gp = dir + "/plot.gp", svg = dir + "/plot.svg";
  {
    std::ofstream f(gp);
    f << "set terminal svg size " << width << "," << height
      << " dynamic noenhanced font 'Helvetica,12' background rgb 'white'\n"
      << "set output '" << svg << "'\n"
      << "set grid lc rgb '#dddddd'\nset key outside right top\nset border lc rgb '#555555'\n"
      << script << "\n";
  }
  const int rc = std::system(("cd '" + dir + "' && gnuplot plot.gp > plot.log 2>&1").c_str());
  std::string out;
  if (rc == 0 && file_exists(svg)) out = slurp(svg);
  const std::string log = file_exists(dir + "/plot.log") ? slurp(dir + "/plot.log") : "";
  std::system(("rm -rf '" + dir + "'").c_str());
  WAVG_CHECK(rc == 0 && !out.empty(), "report: gnuplot failed (install it with 'apt-get install ",
             "gnuplot-nox' or scripts/setup.sh): ", log.substr(0, 200));
  const auto start = out.find("<svg");
  return start == std::string::npos ? out : out.substr(start);
}

namespace {

// Writes `rows` as a whitespace-separated data file block for gnuplot's inline data ($name).
std::string datablock(const std::string& name, const std::vector<std::pair<double, double>>& rows) {
  std::string s = "$" + name + " << EOD\n";
  for (const auto& [x, y] : rows) s += fmt(x, "%.10g") + " " + fmt(y, "%.10g") + "\n";
  return s + "EOD\n";
}

std::string run_report(const std::string& dir) {
  const json summary = json::parse(slurp(dir + "/summary.json"));
  const std::string metric = summary.at("metric");
  const double target = summary.at("target");
  const bool lower = summary.at("lower_is_better");
  std::map<std::string, std::vector<std::pair<double, double>>> curves;
  std::vector<std::string> order;
  std::vector<std::pair<double, double>> lr;
  std::ifstream in(dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    const json j = json::parse(line);
    const std::string m = j.at("model");
    if (!curves.count(m)) order.push_back(m);
    curves[m].push_back({j.at("step").get<double>(), j.at("value").get<double>()});
    if (m == "raw") lr.push_back({j.at("step").get<double>(), j.at("lr").get<double>()});
  }
  std::ostringstream h;
  h << "<h1>wavg run: " << html_escape(summary.at("workload").get<std::string>()) << "</h1>\n";
  // Findings.
  const json& models = summary.at("models");
  const json& raw = models.at(0);
  h << "<h2>Summary</h2>\n<ul>\n";
  for (const auto& m : models) {
    if (m.at("model") == "raw") continue;
    h << "<li><b>" << html_escape(m.at("model").get<std::string>()) << "</b>: ";
    if (!m.at("steps_to_target").is_null() && !raw.at("steps_to_target").is_null())
      h << "reached the target in " << fmt(100.0 * m.at("steps_to_target").get<double>() /
                                               raw.at("steps_to_target").get<double>(), "%.1f")
        << "% of the raw model's steps";
    else if (m.at("steps_to_target").is_null())
      h << "did not reach the target";
    else
      h << "reached the target; the raw model did not";
    if (!m.at("best_value").is_null() && !raw.at("best_value").is_null())
      h << "; best " << html_escape(metric) << " " << fmt(m.at("best_value").get<double>())
        << " vs raw " << fmt(raw.at("best_value").get<double>());
    h << ".</li>\n";
  }
  h << "</ul>\n<h2>Steps to target</h2>\n<p>Target: validation " << html_escape(metric)
    << (lower ? " &le; " : " &ge; ") << fmt(target) << "; " << summary.at("steps_done")
    << " steps, " << fmt(summary.at("train_wall_s").get<double>(), "%.1f")
    << " s of training (evaluation excluded).</p>\n<table><tr><th>model</th><th>description</th>"
       "<th>steps to target</th><th>% of raw</th><th>best value (step)</th></tr>\n";
  for (const auto& m : models) {
    h << "<tr><td>" << html_escape(m.at("model").get<std::string>()) << "</td><td>"
      << html_escape(m.at("description").get<std::string>()) << "</td><td>"
      << (m.at("steps_to_target").is_null() ? std::string("not reached")
                                            : std::to_string(m.at("steps_to_target").get<int64_t>()))
      << "</td><td>";
    if (!m.at("steps_to_target").is_null() && !raw.at("steps_to_target").is_null())
      h << fmt(100.0 * m.at("steps_to_target").get<double>() /
                   raw.at("steps_to_target").get<double>(), "%.1f");
    else
      h << "&ndash;";
    h << "</td><td>"
      << (m.at("best_value").is_null() ? std::string("&ndash;")
                                       : fmt(m.at("best_value").get<double>()) + " (" +
                                             std::to_string(m.at("best_step").get<int64_t>()) + ")")
      << "</td></tr>\n";
  }
  h << "</table>\n";
  // Figure: validation curves with the target line, full run (log scale) and the second half.
  std::string data, plot;
  for (size_t i = 0; i < order.size(); ++i) {
    data += datablock("m" + std::to_string(i), curves[order[i]]);
    plot += std::string(i ? ", " : "plot ") + "$m" + std::to_string(i) +
            " using 1:2 with linespoints pt 7 ps 0.4 lw 2 title '" + order[i] + "'";
  }
  plot += ", " + fmt(target, "%.10g") + " with lines dt 2 lw 2 lc rgb '#444444' title 'target'";
  const double T = summary.at("steps").get<double>();
  h << "<h2>Validation curves</h2>\n<figure>"
    << gnuplot_svg(data + "set xlabel 'step'\nset ylabel 'validation " + metric +
                   "'\nset logscale y\nset title 'raw model vs averages'\n" + plot)
    << "<figcaption>Validation " << html_escape(metric)
    << " against the step, log scale; dashed: the target.</figcaption></figure>\n";
  h << "<figure>"
    << gnuplot_svg(data + "set xlabel 'step'\nset ylabel 'validation " + metric +
                   "'\nset xrange [" + fmt(T / 2, "%.0f") + ":*]\nset title 'second half of the run'\n" +
                   plot)
    << "<figcaption>The second half, linear scale: where averaging helps most before the "
       "learning rate has decayed.</figcaption></figure>\n";
  h << "<figure>"
    << gnuplot_svg(datablock("lr", lr) +
                       "set xlabel 'step'\nset ylabel 'learning rate'\nset title 'schedule'\n"
                       "plot $lr using 1:2 with lines lw 2 title 'learning rate'",
                   760, 260)
    << "<figcaption>The learning-rate schedule.</figcaption></figure>\n";

  // Sweep, if present.
  if (file_exists(dir + "/sweep_summary.csv")) {
    std::ifstream cs(dir + "/sweep_summary.csv");
    std::getline(cs, line);
    std::map<std::string, std::vector<std::pair<double, double>>> stt, best;
    h << "<h2>Offline sweep</h2>\n<table><tr><th>setting</th><th>horizon (% of T)</th>"
         "<th>steps to target</th><th>best value (step)</th></tr>\n";
    while (std::getline(cs, line)) {
      std::vector<std::string> f;
      std::stringstream ss(line);
      std::string cell;
      while (std::getline(ss, cell, ',')) f.push_back(cell);
      if (f.size() < 10) continue;
      const double horizon = std::atof(f[6].c_str());
      h << "<tr><td>" << html_escape(f[0]) << "</td><td>" << fmt(100 * horizon, "%.2f")
        << "</td><td>" << (f[7].empty() ? "not reached" : f[7]) << "</td><td>"
        << fmt(std::atof(f[8].c_str())) << " (" << f[9] << ")</td></tr>\n";
      if (horizon > 0) {
        if (!f[7].empty()) stt[f[1]].push_back({100 * horizon, std::atof(f[7].c_str())});
        best[f[1]].push_back({100 * horizon, std::atof(f[8].c_str())});
      }
    }
    h << "</table>\n";
    std::string d, p1, p2;
    int k = 0;
    for (auto& [scheme, pts] : best) {
      d += datablock("b" + std::to_string(k), pts);
      p2 += std::string(k ? ", " : "plot ") + "$b" + std::to_string(k) + " using 1:2 with points pt 7 ps 1 title '" + scheme + "'";
      if (stt.count(scheme)) {
        d += datablock("s" + std::to_string(k), stt[scheme]);
        p1 += std::string(p1.empty() ? "plot " : ", ") + "$s" + std::to_string(k) + " using 1:2 with points pt 7 ps 1 title '" + scheme + "'";
      }
      ++k;
    }
    if (!p1.empty())
      h << "<figure>"
        << gnuplot_svg(d + "set logscale x\nset xlabel 'horizon (% of the run)'\nset ylabel "
                           "'steps to target'\nset title 'steps to target against the horizon'\n" + p1)
        << "<figcaption>Settings that reached the target.</figcaption></figure>\n";
    if (!p2.empty())
      h << "<figure>"
        << gnuplot_svg(d + "set logscale x\nset xlabel 'horizon (% of the run)'\nset ylabel "
                           "'best validation " + metric + "'\nset title 'best value against the horizon'\n" + p2)
        << "</figure>\n";
  }
  return h.str();
}

const char* kStyle = R"(<style>
body{font-family:Helvetica,Arial,sans-serif;max-width:980px;margin:2em auto;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:0.6em 0;font-size:0.92em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f3f3}
figure{margin:1em 0}figcaption{font-size:0.88em;color:#555}svg{max-width:100%;height:auto}
.note{color:#555;font-size:0.9em}.miss{color:#b00;font-weight:bold}
</style>)";

}  // namespace

void write_report(const std::string& dir, const std::string& out_html) {
  std::string body;
  if (file_exists(dir + "/results.json")) {
    body = study_report(dir);
  } else if (file_exists(dir + "/summary.json") && file_exists(dir + "/metrics.jsonl")) {
    body = run_report(dir);
  } else {
    throw Error("report: " + dir + " holds neither a run (summary.json, metrics.jsonl) nor a study "
                "(results.json)");
  }
  const std::string html = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                           "<title>wavg report</title>" + std::string(kStyle) +
                           "</head><body>\n" + body +
                           "<p class=\"note\">Written by wavg report.</p>\n</body></html>\n";
  write_file_atomic(out_html, html);
}

}  // namespace wavg
