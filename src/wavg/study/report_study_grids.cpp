// The study report's ν×L and ν×β grids (analysis 3, tables and heat maps) and the schedule
// comparison (analysis 6), from results.json alone.
#include <cmath>
#include <map>
#include <set>

#include "wavg/core/format.h"
#include "wavg/study/gnuplot.h"
#include "wavg/study/report_html.h"
#include "wavg/study/report_study.h"

namespace wavg::report {

namespace {

// One scheme's settings of the bank (the recommended ones aside), by (L or β, ν).
struct Grid {
  std::string scheme;  // "lawa" or "ema"
  std::set<double> rows;
  std::set<int64_t> cols;
  std::map<std::pair<double, int64_t>, JsonView> cell;
};

Grid collect_grid(const JsonView& settings, const std::string& scheme) {
  Grid g{scheme, {}, {}, {}};
  for (const JsonView& s : settings.elements()) {
    const std::string name = s["name"].text();
    if (s["scheme"].text() != scheme || name.find("_rec") != std::string::npos) continue;
    const double row = scheme == "lawa" ? s["window"].number() : s["beta"].number();
    const int64_t col = s["every"].integer();
    g.rows.insert(row);
    g.cols.insert(col);
    g.cell.emplace(std::make_pair(row, col), s);
  }
  return g;
}

std::string grid_table(const Grid& g, const std::string& workload) {
  std::string h = "<p><b>" + html_escape(workload) + ", " + g.scheme + "</b></p><table><tr><th>" +
                  (g.scheme == "lawa" ? "L" : "&beta;") + " \\ &nu;</th>";
  for (int64_t c : g.cols) h += "<th>" + std::to_string(c) + "</th>";
  h += "</tr>\n";
  for (double r : g.rows) {
    h += "<tr><th>" + cell(r) + "</th>";
    for (int64_t c : g.cols) {
      h += "<td>";
      const auto it = g.cell.find({r, c});
      if (it != g.cell.end()) {
        const JsonView& s = it->second;
        h += steps_cell(s["median_steps_to_target"].number()) + " <small>[";
        for (const JsonView& v : s["steps_to_target"].elements()) h += steps_cell(v.number()) + " ";
        h += "] h=" + cell(100 * s["horizon"].number(), 2) + "%</small>";
      }
      h += "</td>";
    }
    h += "</tr>\n";
  }
  return h + "</table>\n";
}

// The grid as a heat map: colour = median steps to target relative to NAdamW's (or the steps
// themselves when NAdamW missed, `base` NaN), ✗ on the cells that missed the target.
std::string grid_figure(const Grid& g, const std::string& workload, double base) {
  std::vector<DataRow> rows;
  bool any = false;
  int y = 0;
  for (double r : g.rows) {
    int x = 0;
    for (int64_t c : g.cols) {
      const auto it = g.cell.find({r, c});
      if (it != g.cell.end()) {
        const double m = it->second["median_steps_to_target"].number();
        if (!std::isfinite(m)) {
          rows.push_back({{double(x), double(y), NAN}, "✗"});
        } else if (!std::isfinite(base)) {
          rows.push_back({{double(x), double(y), m}, format_fixed(m, 0)});
        } else {
          rows.push_back({{double(x), double(y), 100 * m / base}, format_fixed(100 * m / base, 0) + "%"});
        }
        any = any || std::isfinite(m);
      }
      ++x;
    }
    ++y;
  }
  std::string xt = "(", yt = "(";
  int k = 0;
  for (int64_t c : g.cols) xt += (k ? ", '" : "'") + std::to_string(c) + "' " + std::to_string(k), ++k;
  k = 0;
  for (double r : g.rows) yt += (k ? ", '" : "'") + format_number(r, 4) + "' " + std::to_string(k), ++k;
  const std::string what = std::isfinite(base) ? "median steps to target, % of NAdamW"
                                               : "median steps to target";
  const bool lawa = g.scheme == "lawa";
  return "<figure>" +
         gnuplot_svg(workload + " " + g.scheme + " grid",
                     data_block("g", rows) + "set xtics " + xt + ")\nset ytics " + yt +
                         ")\nset xrange [-0.5:" + std::to_string(g.cols.size()) +
                         "-0.5]\nset yrange [-0.5:" + std::to_string(g.rows.size()) +
                         "-0.5]\nset xlabel 'sampling period ν (steps)'\nset ylabel '" +
                         (lawa ? "window L" : "β") + "'\nset cblabel '" + what + "'\n" +
                         (any ? "" : "set cbrange [0:1]\n") +
                         "set palette defined (0 '#2c7bb6', 1 '#ffffbf', 2 '#d7191c')\n"
                         "set title " + gnuplot_quote(workload + ", " + (lawa ? "LAWA" : "EMA") +
                                                      " (✗ = target not reached)") +
                         "\nplot $g using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 "
                         "noborder lc palette notitle, $g using 1:2:4 with labels font ',12' "
                         "notitle",
                     620, 260 + 40 * int(g.rows.size())) +
         "</figure>\n";
}

}  // namespace

std::string grids_section(const StudyResults& r) {
  std::string h = "<h2>3. &nu;&times;L and &nu;&times;&beta; grids (median steps to target; per "
                  "seed in brackets; &#x2717; = target not reached)</h2>\n";
  for (const auto& [name, w] : study_parts_of(r)) {
    if (name == "lm_protocol" && !w.has("settings")) continue;  // no LM bank (an lm_bank addition)
    if (!need(w, {"settings"}, name, "grids (analysis 3)", &h)) continue;
    const bool has_base = w.has("methods") && w["methods"].has("nadamw");
    const double base =
        has_base ? w["methods"]["nadamw"]["median_steps_to_target"].number() : NAN;
    for (const char* scheme : {"lawa", "ema"}) {
      const Grid g = collect_grid(w["settings"], scheme);
      if (g.rows.empty()) continue;
      h += grid_table(g, name) + grid_figure(g, name, base);
    }
  }
  return h;
}

namespace {

// Analysis 6 over seeds ("schedules_over_seeds", runs added to the part), with its two claims.
std::string schedules_over_seeds(const JsonView& o) {
  std::string seeds;
  for (const JsonView& s : o["seeds"].elements()) seeds += " " + std::to_string(s.integer());
  std::string h = "<p>Over seeds" + seeds + " (per seed; a schedule whose added runs did not all "
                  "finish has fewer):</p><table><tr><th>schedule</th><th>seeds</th>"
                  "<th>best raw</th><th>best LAWA</th><th>best EMA</th><th>steps raw</th>"
                  "<th>steps LAWA</th><th>steps EMA</th></tr>\n";
  for (const JsonView& row : o["rows"].elements()) {
    std::string row_seeds;
    for (const JsonView& s : row["seeds"].elements()) row_seeds += std::to_string(s.integer()) + " ";
    h += "<tr><td>" + html_escape(row["schedule"].text()) + "</td><td>" + row_seeds + "</td>";
    for (const char* k : {"raw_best", "lawa_rec_best", "ema_rec_best"}) {
      h += "<td>";
      for (const JsonView& v : row[k].elements()) h += cell(v.number()) + " ";
      h += "</td>";
    }
    for (const char* k : {"raw_steps", "lawa_rec_steps", "ema_rec_steps"}) {
      h += "<td>";
      for (const JsonView& v : row[k].elements()) h += steps_cell(steps_value(v)) + " ";
      h += "</td>";
    }
    h += "</tr>\n";
  }
  h += "</table>\n";
  if (o.has("no_decay_lawa_vs_decayed_raw")) {
    const JsonView g = o["no_decay_lawa_vs_decayed_raw"];
    h += note("LAWA without decay against the raw model with cosine decay, best value (the seeds "
              "both have): gain " +
              cell(g["mean"].number(), 3) + " [" + cell(g["ci95"][0].number(), 3) + ", " +
              cell(g["ci95"][1].number(), 3) + "], " + verdict_cell(g) +
              " (negative: the decayed run is better).");
  }
  if (o.has("short_raw_vs_lawa"))
    h += note("The shorter decay's raw model against LAWA on the full cosine, steps to target (the "
              "seeds both have): " +
              ratio_with_interval(o["short_raw_vs_lawa"]) + ", " +
              verdict_cell(o["short_raw_vs_lawa"]) + ".");
  return h;
}

}  // namespace

std::string schedules_section(const StudyResults& r) {
  std::string h;
  for (const StudyWorkload& sw : r.workloads) {
    if (!sw.w.has("schedules")) continue;
    h += "<h2>6. Averaging and learning-rate decay (" + html_escape(sw.name) +
         ", seed 0, hard budget)</h2>\n<table><tr><th>schedule</th><th>best raw</th>"
         "<th>best LAWA</th><th>best EMA</th><th>steps to target raw / LAWA / EMA</th></tr>\n";
    std::vector<std::vector<double>> rows;
    std::string xt;
    int k = 0;
    for (const JsonView& s : sw.w["schedules"].elements()) {
      const double raw = s["raw_best"].number(), lawa = s["lawa_best"].number(),
                   ema = s["ema_best"].number();
      h += "<tr><td>" + html_escape(s["schedule"].text()) + "</td><td>" + cell(raw) + "</td><td>" +
           cell(lawa) + "</td><td>" + cell(ema) + "</td><td>" +
           steps_cell(s["raw_steps_to_target"].number()) + " / " +
           steps_cell(s["lawa_steps_to_target"].number()) + " / " +
           steps_cell(s["ema_steps_to_target"].number()) + "</td></tr>\n";
      rows.push_back({double(k), raw, lawa, ema});
      xt += std::string(k ? ", " : "") + gnuplot_quote(s["schedule"].text()) + " " + std::to_string(k);
      ++k;
    }
    h += "</table>\n";
    if (sw.w.has("schedules_over_seeds")) h += schedules_over_seeds(sw.w["schedules_over_seeds"]);
    if (rows.empty()) continue;
    h += "<figure>" +
         gnuplot_svg(sw.name + " schedules",
                     data_block("s", rows) + "set style fill solid 0.8\nset boxwidth 0.25\n"
                     "set xtics (" + xt + ") rotate by -15\nset xrange [-0.6:" +
                     std::to_string(k) + "-0.4]\nset ylabel " +
                     gnuplot_quote("best validation " + sw.metric + " (" +
                                   better_word(sw.lower_is_better) + " is better)") +
                     "\nset title 'raw vs averaged, by schedule'\nplot $s u ($1-0.27):2 w boxes "
                     "t 'raw', $s u 1:3 w boxes t 'LAWA', $s u ($1+0.27):4 w boxes t 'EMA'",
                     760, 380) +
         "<figcaption>Paper: averaging acts like a shorter decay but does not replace it: without "
         "decay the averaged model stays behind a decayed one.</figcaption></figure>\n";
  }
  return h;
}

}  // namespace wavg::report
