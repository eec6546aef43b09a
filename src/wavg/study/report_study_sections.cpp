// The study report's analyses 1–7, one function per section, each drawing only from results.json
// and saying in a note what a partial or older results.json lacks.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "wavg/core/format.h"
#include "wavg/study/gnuplot.h"
#include "wavg/study/report_html.h"
#include "wavg/study/report_study.h"

namespace wavg::report {

namespace {

std::string percent_cell(double fraction) {
  return std::isfinite(fraction) ? cell_fixed(100 * fraction, 1) + "%" : "&ndash;";
}

// gnuplot xtics naming the workloads at 0, 1, ...: "('a' 0, 'b' 1)".
std::string workload_tics(const std::vector<std::string>& names) {
  std::string t = "(";
  for (size_t i = 0; i < names.size(); ++i)
    t += (i ? ", " : "") + gnuplot_quote(names[i]) + " " + std::to_string(i);
  return t + ")";
}

// The method a model of the curves stands for.
std::string model_title(const std::string& model) {
  if (model == "raw") return "nadamw";
  if (model == "lawa_rec") return "nadamw+lawa";
  if (model == "ema_rec") return "nadamw+ema";
  return model + " (selected after the fact)";
}

std::string speedup_table(const StudyResults& r, std::string* figures) {
  std::string h = "<table><tr><th>workload</th><th>method</th><th>steps to target per seed</th>"
                  "<th>median</th><th>relative to NAdamW</th><th>steps saved</th>"
                  "<th>seconds saved (analysis 7)</th></tr>\n";
  std::vector<std::vector<double>> bars;  // x, % of NAdamW, method index
  std::vector<std::string> methods, names;
  std::string notes;
  for (const StudyWorkload& sw : r.workloads) {
    names.push_back(sw.name);
    if (!need(sw.w, {"methods"}, sw.name, "speed-up table (analysis 1)", &notes)) continue;
    for (const std::string& m : sw.w["methods"].keys()) {
      const JsonView row = sw.w["methods"][m];
      const size_t mi = std::find(methods.begin(), methods.end(), m) - methods.begin();
      if (mi == methods.size()) methods.push_back(m);
      h += "<tr><td>" + html_escape(sw.name) + "</td><td>" + html_escape(m) + "</td><td>";
      for (const JsonView& s : row["steps_to_target"].elements()) h += steps_cell(s.number()) + " ";
      h += "</td><td>" + steps_cell(row["median_steps_to_target"].number()) + "</td><td>" +
           percent_cell(row["relative_steps"].number()) + "</td><td>" +
           cell_fixed(row["steps_saved"].number(), 0) + "</td><td>" +
           cell_fixed(row["seconds_saved"].number(), 1) + "</td></tr>\n";
      const double rel = row["relative_steps"].number();
      if (std::isfinite(rel))
        bars.push_back({double(names.size() - 1) + 0.25 * (double(mi) - 1), 100 * rel, double(mi)});
    }
  }
  h += "</table>\n" + notes;
  if (bars.empty()) return h;
  std::string plot;
  for (size_t mi = 0; mi < methods.size(); ++mi)
    plot += std::string(mi ? ", " : "plot ") + "$b using 1:($3==" + std::to_string(mi) +
            "?$2:1/0) with boxes title " + gnuplot_quote(methods[mi]);
  *figures += "<figure>" +
              gnuplot_svg("relative steps to target",
                          data_block("b", bars) + "set style fill solid 0.8\nset boxwidth 0.22\n"
                          "set offsets 0, 0, 12, 0\nset xtics " + workload_tics(names) +
                          "\nset xrange [-0.6:" + std::to_string(names.size()) + "-0.4]\n"
                          "set yrange [0:*]\nset ylabel 'steps to target, % of NAdamW'\n"
                          "set title 'relative steps to target (median over seeds)'\n" + plot +
                          ", 100 with lines dt 2 lc rgb '#444444' notitle") +
              "<figcaption>Paper: ~82 % on AlgoPerf, ~70 % on a 124M GPT.</figcaption></figure>\n";
  return h;
}

// The validation curves of the first seed in results.json's "curves", with the target.
std::string curves_figure(const StudyWorkload& sw) {
  std::string h;
  if (!need(sw.w, {"curves"}, sw.name, "validation curves", &h)) return h;
  const JsonView curves = sw.w["curves"];
  if (curves.size() == 0) return note(html_escape(sw.name) + ": no seed curves in results.json");
  const std::string seed = curves.keys().front();
  std::string data, plot;
  double lo = INFINITY, hi = -INFINITY, last = 0;
  int k = 0;
  for (const std::string& model : curves[seed].keys()) {
    std::vector<std::vector<double>> rows;
    for (const JsonView& p : curves[seed][model].elements()) rows.push_back({p[0].number(), p[1].number()});
    if (rows.empty()) continue;
    last = std::max(last, rows.back()[0]);
    data += data_block("c" + std::to_string(k), rows);
    plot += std::string(k ? ", " : "plot ") + "$c" + std::to_string(k) +
            " w lp pt 7 ps 0.4 lw 2 t " + gnuplot_quote(model_title(model));
    ++k;
  }
  if (k == 0) return note(html_escape(sw.name) + ": the seed curves in results.json are empty");
  // Zoom on the part that decides the target: values after the first quarter of the run.
  for (const std::string& model : curves[seed].keys())
    for (const JsonView& p : curves[seed][model].elements())
      if (p[0].number() >= 0.25 * last && std::isfinite(p[1].number()))
        lo = std::min(lo, p[1].number()), hi = std::max(hi, p[1].number());
  lo = std::min(lo, sw.target), hi = std::max(hi, sw.target);
  const std::string yrange = hi > lo ? "set yrange [" + format_exact(lo - 0.05 * (hi - lo)) + ":" +
                                           format_exact(hi + 0.05 * (hi - lo)) + "]\n"
                                     : "";
  return "<figure>" +
         gnuplot_svg(sw.name + " curves",
                     data + yrange + "set xlabel 'step'\nset ylabel " +
                         gnuplot_quote("validation " + sw.metric) + "\nset title " +
                         gnuplot_quote(sw.name + ", seed " + seed) + "\n" + plot + ", " +
                         format_exact(sw.target) + " w l dt 2 lw 2 lc rgb '#444444' t 'target'",
                     760, 360) +
         "<figcaption>Validation " + html_escape(sw.metric) + " (" +
         better_word(sw.lower_is_better) + " is better); dashed: the target.</figcaption></figure>\n";
}

}  // namespace

std::string speedup_section(const StudyResults& r) {
  std::string figures;
  std::string h = "<h2>1. Speed-up: steps to target</h2>\n" + speedup_table(r, &figures) + figures;
  for (const StudyWorkload& sw : r.workloads) h += curves_figure(sw);
  return h;
}

namespace {

// The caption of analysis 2's figure: the one-grid fit's minimum and its interval, or why not.
std::string horizon_caption(const JsonView& fit, std::string* plot) {
  if (fit.has("note") && !fit["resolvable"].boolean())
    return "No fit: " + html_escape(fit["note"].text()) + ".";
  std::string text;
  if (fit.has("fit") && fit["fit"].has("c0")) {
    const JsonView f = fit["fit"];
    *plot += ", " + format_exact(f["c0"].number()) + " + " + format_exact(f["c1"].number()) +
             "*log10(x/100) + " + format_exact(f["c2"].number()) +
             "*log10(x/100)**2 w l lw 2 dt 3 t 'quadratic fit'";
  }
  if (fit.has("best_horizon") && !fit["best_horizon"].is_null())
    text = "Fit minimum at " + cell(100 * fit["best_horizon"].number(), 2) + "% of H";
  else
    text = "The fit has no minimum";
  return text + "; over seed resamples the minimum lies in [" +
         percent_value(fit["best_horizon_ci95"][0]) + ", " +
         percent_value(fit["best_horizon_ci95"][1]) + "] of H (&infin;: no minimum).";
}

}  // namespace

std::string horizon_section(const StudyResults& r) {
  std::string h = "<h2>2. Horizon: interpolated steps to target against &nu;&middot;L/H and "
                  "&nu;/(1&minus;&beta;)/H, on one grid</h2>\n<p>Every setting once, all on the "
                  "bank's grid of evaluations (the pre-registered ones subsampled onto it).</p>\n";
  for (const StudyWorkload& sw : r.workloads) {
    if (!need(sw.w, {"one_grid", "horizon_fit_one_grid"}, sw.name, "horizon figure (analysis 2)", &h))
      continue;
    std::vector<std::vector<double>> lawa, ema;
    for (const JsonView& s : sw.w["one_grid"]["settings"].elements()) {
      const double median = steps_value(s["interpolated_median"]);
      if (!std::isfinite(median) || s["scheme"].text() == "lawa_exp") continue;
      (s["scheme"].text() == "lawa" ? lawa : ema).push_back({100 * s["horizon"].number(), median});
    }
    if (lawa.empty() && ema.empty()) {
      h += "<p>" + html_escape(sw.name) +
           ": no setting reached the target, so there is no horizon curve.</p>\n";
      continue;
    }
    std::string data, plot;
    if (!lawa.empty()) data += data_block("a", lawa), plot += "$a u 1:2 w p pt 7 ps 1.2 t 'LAWA'";
    if (!ema.empty())
      data += data_block("e", ema),
          plot += std::string(plot.empty() ? "" : ", ") + "$e u 1:2 w p pt 5 ps 1.2 t 'EMA'";
    plot = "plot " + plot;
    const std::string text = horizon_caption(sw.w["horizon_fit_one_grid"], &plot);
    h += "<figure>" +
         gnuplot_svg(sw.name + " horizon",
                     data + "set logscale x\nset offsets graph 0.05, graph 0.05, graph 0.05, "
                            "graph 0.05\nset xlabel 'horizon (% of the run)'\nset ylabel 'median "
                            "steps to target'\nset title " + gnuplot_quote(sw.name) + "\n" + plot,
                     760, 360) +
         "<figcaption>" + text + " Settings that missed the target are not drawn (see the grids "
         "below). Paper: optimum near 1 %.</figcaption></figure>\n";
  }
  return h;
}

std::string lr_section(const StudyResults& r) {
  std::string h = "<h2>4. Learning-rate sensitivity of the gains (grid runs, budget T, seed 0)</h2>\n"
                  "<table><tr><th>workload</th><th>lr</th><th>wd</th><th>best raw</th>"
                  "<th>best LAWA</th><th>best EMA</th><th>steps to target raw / LAWA / EMA</th>"
                  "</tr>\n";
  std::string notes, data, plot;
  int k = 0;
  for (const StudyWorkload& sw : r.workloads) {
    if (!need(sw.w, {"lr_sensitivity"}, sw.name, "learning-rate table (analysis 4)", &notes)) continue;
    std::vector<std::vector<double>> rows;
    for (const JsonView& g : sw.w["lr_sensitivity"].elements()) {
      const double raw = g["raw_best"].number(), lawa = g["lawa_best"].number(),
                   ema = g["ema_best"].number();
      h += "<tr><td>" + html_escape(sw.name) + (g["chosen"].boolean() ? " (chosen)" : "") +
           "</td><td>" + cell(g["lr"].number()) + "</td><td>" + cell(g["weight_decay"].number()) +
           "</td><td>" + cell(raw) + "</td><td>" + cell(lawa) + "</td><td>" + cell(ema) +
           "</td><td>" + steps_cell(g["raw_steps_to_target"].number()) + " / " +
           steps_cell(g["lawa_steps_to_target"].number()) + " / " +
           steps_cell(g["ema_steps_to_target"].number()) + "</td></tr>\n";
      rows.push_back({g["lr"].number(), improvement_percent(lawa, raw, sw.lower_is_better),
                      improvement_percent(ema, raw, sw.lower_is_better)});
    }
    if (rows.empty()) continue;
    const std::string b = "$g" + std::to_string(k);
    data += data_block(b.substr(1), rows);
    plot += std::string(k ? ", " : "plot ") + b + " u 1:2 w lp pt 7 lw 2 t " +
            gnuplot_quote(sw.name + " LAWA") + ", " + b + " u 1:3 w lp pt 5 lw 2 dt 2 t " +
            gnuplot_quote(sw.name + " EMA");
    ++k;
  }
  h += "</table>\n" + notes;
  if (k == 0) return h;
  return h + "<figure>" +
         gnuplot_svg("learning-rate sensitivity",
                     data + "set logscale x\nset xlabel 'peak learning rate'\nset ylabel "
                            "'improvement of the best value over raw (%)'\nset title 'gain of "
                            "averaging in best validation value, by learning rate'\n" + plot,
                     760, 380) +
         "<figcaption>Positive is better: the average's best value beats the raw model's of the "
         "same run, in the metric's direction.</figcaption></figure>\n";
}

std::string best_value_section(const StudyResults& r) {
  std::vector<std::string> methods, names;  // the methods of any workload, in order
  for (const StudyWorkload& sw : r.workloads)
    if (sw.w.has("methods"))
      for (const std::string& m : sw.w["methods"].keys())
        if (std::find(methods.begin(), methods.end(), m) == methods.end()) methods.push_back(m);
  std::string h = "<h2>5. Best validation value within the hard budget (mean &plusmn; std over "
                  "seeds)</h2>\n<table><tr><th>workload</th>";
  for (const std::string& m : methods) h += "<th>" + html_escape(m) + "</th>";
  h += "</tr>\n";
  std::vector<std::vector<double>> bars;  // x, improvement %, error %, method index
  std::string notes;
  for (const StudyWorkload& sw : r.workloads) {
    if (!need(sw.w, {"methods"}, sw.name, "best-value table (analysis 5)", &notes)) continue;
    const JsonView ms = sw.w["methods"];
    names.push_back(sw.name);
    const double base = ms.has("nadamw") ? ms["nadamw"]["best_mean"].number() : NAN;
    h += "<tr><td>" + html_escape(sw.name) + "</td>";
    for (size_t mi = 0; mi < methods.size(); ++mi) {
      if (!ms.has(methods[mi])) {
        h += "<td>&ndash;</td>";
        continue;
      }
      const double mean = ms[methods[mi]]["best_mean"].number();
      const double std = ms[methods[mi]]["best_std"].number();
      h += "<td>" + cell(mean) + " &plusmn; " + cell(std, 2) + "</td>";
      if (std::isfinite(base) && base != 0 && std::isfinite(mean))
        bars.push_back({double(names.size() - 1) + 0.2 * (double(mi) - 1),
                        improvement_percent(mean, base, sw.lower_is_better),
                        100 * std / std::abs(base), double(mi)});
    }
    h += "</tr>\n";
  }
  h += "</table>\n" + notes;
  if (bars.empty()) return h;
  std::string plot;
  for (size_t mi = 0; mi < methods.size(); ++mi)
    plot += std::string(mi ? ", " : "plot ") + "$e u 1:($4==" + std::to_string(mi) +
            "?$2:1/0):3 w yerrorbars pt " + std::to_string(7 + 2 * int(mi)) + " ps 1.2 lw 2 t " +
            gnuplot_quote(methods[mi]);
  return h + "<figure>" +
         gnuplot_svg("best validation value",
                     data_block("e", bars) + "set xtics " + workload_tics(names) +
                         "\nset xrange [-0.6:" + std::to_string(names.size()) + "-0.4]\n"
                         "set ylabel 'improvement over the nadamw mean (%)'\nset title 'best "
                         "validation value (mean ± std)'\n" + plot,
                     760, 360) +
         "<figcaption>Positive is better, in each workload's direction.</figcaption></figure>\n";
}

}  // namespace wavg::report
