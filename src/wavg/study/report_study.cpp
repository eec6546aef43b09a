// The study section of `wavg report`: findings, tables and figures from results.json.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "wavg/core/error.h"
#include "wavg/study/report.h"

namespace wavg {

namespace {

using json = nlohmann::ordered_json;

std::string f4(const json& v, const char* f = "%.4g") {
  if (v.is_null()) return "&ndash;";
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v.get<double>());
  return buf;
}
std::string steps(const json& v) {
  return v.is_null() ? std::string("<span class=\"miss\">&#x2717;</span>")
                     : std::to_string(int64_t(v.get<double>()));
}
std::string pct(const json& v) { return v.is_null() ? "&ndash;" : f4(json(100 * v.get<double>()), "%.1f%%"); }

std::string block(const std::string& name, const std::vector<std::vector<double>>& rows) {
  std::ostringstream s;
  s.precision(10);
  s << "$" << name << " << EOD\n";
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) s << (i ? " " : "") << r[i];
    s << "\n";
  }
  s << "EOD\n";
  return s.str();
}

std::vector<std::vector<double>> curve(const std::string& run_dir, const std::string& model) {
  std::vector<std::vector<double>> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    const json j = json::parse(line);
    if (j.at("model") == model) out.push_back({j.at("step").get<double>(), j.at("value").get<double>()});
  }
  return out;
}

// Analysis 6 in one sentence: how much of the gain that decaying the learning rate brings does
// averaging recover on a run without decay?
std::string schedule_finding(const std::string& name, const json& w) {
  const json* decayed = nullptr;   // cosine to 0 over the whole budget
  const json* constant = nullptr;  // no decay
  for (const auto& s : w["schedules"]) {
    if (!s.contains("final_fraction")) continue;  // results.json from before these fields
    const double f = s["final_fraction"].get<double>(), d = s["decay_fraction"].get<double>();
    if (f == 0.0 && d == 1.0) decayed = &s;
    if (f == 1.0) constant = &s;
  }
  if (!decayed || !constant) return "";
  const bool lower = w["lower_is_better"].get<bool>();
  const double sign = lower ? 1 : -1;  // > 0: better
  const double raw_decay = (*decayed)["raw_best"].get<double>(), raw_const = (*constant)["raw_best"].get<double>();
  const double avg_const = lower ? std::min((*constant)["lawa_best"].get<double>(), (*constant)["ema_best"].get<double>())
                                 : std::max((*constant)["lawa_best"].get<double>(), (*constant)["ema_best"].get<double>());
  std::ostringstream s;
  s << "<li><b>" << name << "</b>, learning-rate decay (seed 0): best " << w["metric"].get<std::string>()
    << " " << f4(json(raw_decay)) << " with cosine decay to 0, " << f4(json(raw_const))
    << " without decay, and " << f4(json(avg_const)) << " for the better average of the run without decay";
  const double gap = sign * (raw_const - raw_decay);
  if (gap > 0) {
    const double recovered = sign * (raw_const - avg_const) / gap;
    s << ": averaging recovers " << f4(json(100 * recovered), "%.0f") << "% of what decay gains"
      << (recovered >= 1 ? " (within one seed; compare with the spread over seeds in analysis 5)" : "");
  }
  s << ".</li>\n";
  return s.str();
}

// Analysis 3 as a heat map: rows L (or β), columns ν, colour = median steps to target relative to
// NAdamW (or the steps themselves when NAdamW missed), ✗ on the cells that missed the target.
std::string grid_figure(const std::string& workload, const std::string& scheme, const std::set<double>& rows,
                        const std::set<int64_t>& cols,
                        const std::map<std::pair<double, int64_t>, const json*>& cell, const json& base) {
  std::ostringstream d, xt, yt;
  d.precision(10);
  d << "$g << EOD\n";
  int y = 0;
  for (double r : rows) {
    int x = 0;
    for (int64_t c : cols) {
      const auto found = cell.find({r, c});
      if (found != cell.end()) {
        const json& m = (*found->second)["median_steps_to_target"];
        d << x << " " << y << " ";
        if (m.is_null()) {
          d << "NaN \"✗\"\n";
        } else if (base.is_null()) {
          d << m.get<double>() << " \"" << int64_t(m.get<double>()) << "\"\n";
        } else {
          const double rel = 100 * m.get<double>() / base.get<double>();
          d << rel << " \"" << f4(json(rel), "%.0f") << "%\"\n";
        }
      }
      ++x;
    }
    ++y;
  }
  d << "EOD\n";
  int k = 0;
  for (int64_t c : cols) xt << (k ? ", " : "") << "'" << c << "' " << k, ++k;
  k = 0;
  for (double r : rows) yt << (k ? ", " : "") << "'" << f4(json(r), "%.4g") << "' " << k, ++k;
  const std::string what = base.is_null() ? "median steps to target" : "median steps to target, % of NAdamW";
  return "<figure>" +
         gnuplot_svg(d.str() + "set xtics (" + xt.str() + ")\nset ytics (" + yt.str() + ")\nset xrange [-0.5:" +
                         std::to_string(cols.size()) + "-0.5]\nset yrange [-0.5:" + std::to_string(rows.size()) +
                         "-0.5]\nset xlabel 'sampling period ν (steps)'\nset ylabel '" +
                         (scheme == "lawa" ? "window L" : "β") + "'\nset cblabel '" + what +
                         "'\nset palette defined (0 '#2c7bb6', 1 '#ffffbf', 2 '#d7191c')\nset title '" + workload +
                         ", " + (scheme == "lawa" ? "LAWA" : "EMA") + " (✗ = target not reached)'\n"
                         "plot $g using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder lc palette notitle, "
                         "$g using 1:2:4 with labels font ',12' notitle",
                     620, 260 + 40 * int(rows.size())) +
         "</figure>\n";
}

}  // namespace

std::string study_report(const std::string& dir) {
  std::ifstream f(dir + "/results.json");
  WAVG_CHECK(f.good(), "report: cannot read ", dir, "/results.json");
  const json R = json::parse(f);
  const json& W = R.at("workloads");
  std::ostringstream h;
  h << "<h1>wavg study: when, where and why to average weights, on a CPU</h1>\n"
    << "<p>Protocol: per workload a small NAdamW grid (seed 0, budget T), the best point rerun "
       "with " << R["protocol"]["seeds"] << " seeds at the hard budget &lceil;4/3&middot;T&rceil; "
       "with a bank of LAWA and EMA settings riding each trajectory. Target: "
    << html_escape(R["protocol"]["target"].get<std::string>())
    << ". <i>nadamw+lawa</i> is LAWA with L = 20 at a horizon of "
    << f4(json(100 * R["protocol"]["recommended_horizon"].get<double>()), "%.2g")
    << "% of the run, <i>nadamw+ema</i> the EMA with the same &nu; and horizon &nu;/(1&minus;&beta;).</p>\n";

  // ---- findings ----
  h << "<h2>Findings</h2>\n<ul>\n";
  for (auto it = W.begin(); it != W.end(); ++it) {
    const json& w = it.value();
    h << "<li><b>" << it.key() << "</b>: target " << w["metric"].get<std::string>() << " &le; "
      << f4(w["target"]) << "; steps to target relative to NAdamW: LAWA "
      << pct(w["methods"]["nadamw+lawa"]["relative_steps"]) << ", EMA "
      << pct(w["methods"]["nadamw+ema"]["relative_steps"]);
    if (w["horizon_fit"].contains("all") && w["horizon_fit"]["all"].contains("best_horizon"))
      h << "; the quadratic fit puts the best horizon at "
        << f4(json(100 * w["horizon_fit"]["all"]["best_horizon"].get<double>()), "%.2g") << "% of the run";
    h << ".</li>\n";
    if (w.contains("schedules")) h << schedule_finding(it.key(), w);
  }
  h << "<li>Benchmark score (area under the performance profile, 1 = fastest everywhere): ";
  for (auto it = R["scoring"]["score"].begin(); it != R["scoring"]["score"].end(); ++it)
    h << it.key() << " " << f4(it.value(), "%.3f") << "; ";
  h << "</li>\n</ul>\n";

  // ---- analysis 1: speed-up ----
  h << "<h2>1. Speed-up: steps to target</h2>\n<table><tr><th>workload</th><th>method</th>"
       "<th>steps to target per seed</th><th>median</th><th>relative to NAdamW</th>"
       "<th>steps saved</th><th>seconds saved (analysis 7)</th></tr>\n";
  std::vector<std::vector<double>> bars;
  int wi = 0;
  for (auto it = W.begin(); it != W.end(); ++it, ++wi) {
    int mi = 0;
    for (auto m = it.value()["methods"].begin(); m != it.value()["methods"].end(); ++m, ++mi) {
      h << "<tr><td>" << it.key() << "</td><td>" << m.key() << "</td><td>";
      // (ordered: nadamw, nadamw+lawa, nadamw+ema, as results.json writes them)
      for (const auto& s : m.value()["steps_to_target"]) h << steps(s) << " ";
      h << "</td><td>" << steps(m.value()["median_steps_to_target"]) << "</td><td>"
        << pct(m.value()["relative_steps"]) << "</td><td>" << f4(m.value()["steps_saved"], "%.0f")
        << "</td><td>" << f4(m.value()["seconds_saved"], "%.1f") << "</td></tr>\n";
      if (!m.value()["relative_steps"].is_null())
        bars.push_back({double(wi) + 0.25 * (mi - 1), 100 * m.value()["relative_steps"].get<double>(), double(mi)});
    }
  }
  h << "</table>\n";
  if (!bars.empty()) {
    std::string xt;
    wi = 0;
    for (auto it = W.begin(); it != W.end(); ++it, ++wi)
      xt += std::string(wi ? ", " : "") + "'" + it.key() + "' " + std::to_string(wi);
    h << "<figure>"
      << gnuplot_svg(block("b", bars) + "set style fill solid 0.8\nset boxwidth 0.22\nset offsets 0, 0, 12, 0\nset xtics (" + xt +
                     ")\nset xrange [-0.6:" + std::to_string(wi) + "-0.4]\nset yrange [0:*]\n"
                     "set ylabel 'steps to target, % of NAdamW'\nset title 'relative steps to target (median over seeds)'\n"
                     "plot $b using 1:($3==0?$2:1/0) with boxes title 'nadamw', "
                     "$b using 1:($3==1?$2:1/0) with boxes title 'nadamw+lawa', "
                     "$b using 1:($3==2?$2:1/0) with boxes title 'nadamw+ema', 100 with lines dt 2 lc rgb '#444444' notitle")
      << "<figcaption>Paper: ~82 % on AlgoPerf, ~70 % on a 124M GPT.</figcaption></figure>\n";
  }
  for (auto it = W.begin(); it != W.end(); ++it) {
    const std::string run = dir + "/runs/" + it.key() + "/seed_0";
    const auto r = curve(run, "raw"), l = curve(run, "lawa_rec"), e = curve(run, "ema_rec");
    std::string data = block("r", r) + block("l", l) + block("e", e);
    // Zoom on the part that decides the target: values after the first quarter of the run.
    double lo = INFINITY, hi = -INFINITY;
    const double last = r.empty() ? 0 : r.back()[0];
    for (const auto* c : {&r, &l, &e})
      for (const auto& p : *c)
        if (p[0] >= 0.25 * last) lo = std::min(lo, p[1]), hi = std::max(hi, p[1]);
    const double tgt = it.value()["target"].get<double>();
    lo = std::min(lo, tgt), hi = std::max(hi, tgt);
    const std::string yr = std::isfinite(lo) ? "set yrange [" + f4(json(lo - 0.05 * (hi - lo)), "%.10g") + ":" +
                                                   f4(json(hi + 0.05 * (hi - lo)), "%.10g") + "]\n"
                                             : "";
    h << "<figure>"
      << gnuplot_svg(data + yr + "set xlabel 'step'\nset ylabel 'validation " +
                     it.value()["metric"].get<std::string>() + "'\nset title '" + it.key() +
                     ", seed 0'\nplot $r w lp pt 7 ps 0.4 lw 2 t 'nadamw', $l w lp pt 7 ps 0.4 lw 2 t 'nadamw+lawa', "
                     "$e w lp pt 7 ps 0.4 lw 2 t 'nadamw+ema', " + f4(it.value()["target"], "%.10g") +
                     " w l dt 2 lw 2 lc rgb '#444444' t 'target'", 760, 360)
      << "</figure>\n";
  }

  // ---- analysis 2: horizon ----
  h << "<h2>2. Horizon: steps to target against &nu;&middot;L/T and &nu;/(1&minus;&beta;)/T</h2>\n";
  for (auto it = W.begin(); it != W.end(); ++it) {
    std::vector<std::vector<double>> lawa, ema;
    for (const auto& s : it.value()["settings"]) {
      if (s["median_steps_to_target"].is_null()) continue;
      (s["scheme"] == "lawa" ? lawa : ema)
          .push_back({100 * s["horizon"].get<double>(), s["median_steps_to_target"].get<double>()});
    }
    if (lawa.empty() && ema.empty()) {
      h << "<p>" << it.key() << ": no setting reached the target, so there is no horizon curve.</p>\n";
      continue;
    }
    std::string plot, data;
    if (!lawa.empty()) data += block("a", lawa), plot += "$a u 1:2 w p pt 7 ps 1.2 t 'LAWA'";
    if (!ema.empty()) data += block("b", ema), plot += std::string(plot.empty() ? "" : ", ") + "$b u 1:2 w p pt 5 ps 1.2 t 'EMA'";
    plot = "plot " + plot;
    std::string text;
    if (it.value()["horizon_fit"].contains("all")) {
      const json& fit = it.value()["horizon_fit"]["all"];
      plot += ", " + f4(fit["c0"], "%.10g") + " + " + f4(fit["c1"], "%.10g") + "*log10(x/100) + " +
              f4(fit["c2"], "%.10g") + "*log10(x/100)**2 w l lw 2 dt 3 t 'quadratic fit'";
      if (fit.contains("best_horizon"))
        text = "Fit minimum at " + f4(json(100 * fit["best_horizon"].get<double>()), "%.2g") + "% of the run.";
    }
    h << "<figure>"
      << gnuplot_svg(data + "set logscale x\nset offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05\n"
                     "set xlabel 'horizon (% of the run)'\nset ylabel 'median steps to target'\nset title '" +
                     it.key() + "'\n" + plot, 760, 360)
      << "<figcaption>" << text << " Settings that missed the target are not drawn (see the grids below). "
                                   "Paper: optimum near 1 %.</figcaption></figure>\n";
  }

  // ---- analysis 3: grids ----
  h << "<h2>3. &nu;&times;L and &nu;&times;&beta; grids (median steps to target; per seed in brackets; "
       "&#x2717; = target not reached)</h2>\n";
  for (auto it = W.begin(); it != W.end(); ++it) {
    for (const char* scheme : {"lawa", "ema"}) {
      std::set<double> rows;
      std::set<int64_t> cols;
      std::map<std::pair<double, int64_t>, const json*> cell;
      for (const auto& s : it.value()["settings"]) {
        if (s["scheme"] != scheme || s["name"].get<std::string>().find("_rec") != std::string::npos) continue;
        const double r = s["scheme"] == "lawa" ? s["window"].get<double>() : s["beta"].get<double>();
        rows.insert(r);
        cols.insert(s["every"].get<int64_t>());
        cell[{r, s["every"].get<int64_t>()}] = &s;
      }
      if (rows.empty()) continue;
      h << "<p><b>" << it.key() << ", " << scheme << "</b></p><table><tr><th>"
        << (std::string(scheme) == "lawa" ? "L" : "&beta;") << " \\ &nu;</th>";
      for (int64_t c : cols) h << "<th>" << c << "</th>";
      h << "</tr>\n";
      for (double r : rows) {
        h << "<tr><th>" << f4(json(r), "%.4g") << "</th>";
        for (int64_t c : cols) {
          const json* s = cell.count({r, c}) ? cell[{r, c}] : nullptr;
          h << "<td>";
          if (s) {
            h << steps((*s)["median_steps_to_target"]) << " <small>[";
            for (const auto& v : (*s)["steps_to_target"]) h << steps(v) << " ";
            h << "] h=" << f4(json(100 * (*s)["horizon"].get<double>()), "%.2g") << "%</small>";
          }
          h << "</td>";
        }
        h << "</tr>\n";
      }
      h << "</table>\n";
      h << grid_figure(it.key(), scheme, rows, cols, cell, it.value()["methods"]["nadamw"]["median_steps_to_target"]);
    }
  }

  // ---- analysis 4: learning rate ----
  h << "<h2>4. Learning-rate sensitivity of the gains (grid runs, budget T, seed 0)</h2>\n"
       "<table><tr><th>workload</th><th>lr</th><th>wd</th><th>best raw</th><th>best LAWA</th>"
       "<th>best EMA</th><th>steps to target raw / LAWA / EMA</th></tr>\n";
  for (auto it = W.begin(); it != W.end(); ++it) {
    for (const auto& g : it.value()["lr_sensitivity"]) {
      h << "<tr><td>" << it.key() << (g["chosen"].get<bool>() ? " (chosen)" : "") << "</td><td>"
        << f4(g["lr"]) << "</td><td>" << f4(g["weight_decay"]) << "</td><td>" << f4(g["raw_best"])
        << "</td><td>" << f4(g["lawa_best"]) << "</td><td>" << f4(g["ema_best"]) << "</td><td>"
        << steps(g["raw_steps_to_target"]) << " / " << steps(g["lawa_steps_to_target"]) << " / "
        << steps(g["ema_steps_to_target"]) << "</td></tr>\n";
    }
  }
  h << "</table>\n";
  {
    std::string data, plot;
    int k = 0;
    for (auto it = W.begin(); it != W.end(); ++it, ++k) {
      std::vector<std::vector<double>> rows;
      for (const auto& g : it.value()["lr_sensitivity"])
        rows.push_back({g["lr"].get<double>(),
                        100 * (g["lawa_best"].get<double>() / g["raw_best"].get<double>() - 1),
                        100 * (g["ema_best"].get<double>() / g["raw_best"].get<double>() - 1)});
      data += block("g" + std::to_string(k), rows);
      plot += std::string(k ? ", " : "plot ") + "$g" + std::to_string(k) + " u 1:2 w lp pt 7 lw 2 t '" + it.key() +
              " LAWA', $g" + std::to_string(k) + " u 1:3 w lp pt 5 lw 2 dt 2 t '" + it.key() + " EMA'";
    }
    h << "<figure>"
      << gnuplot_svg(data + "set logscale x\nset xlabel 'peak learning rate'\nset ylabel 'best value vs raw (%)'\n"
                     "set title 'gain of averaging in best validation value, by learning rate'\n" + plot, 760, 380)
      << "<figcaption>Negative is better (lower metric than the raw model of the same run).</figcaption></figure>\n";
  }

  // ---- analysis 5: best value ----
  h << "<h2>5. Best validation value within the hard budget (mean &plusmn; std over seeds)</h2>\n"
       "<table><tr><th>workload</th><th>nadamw</th><th>nadamw+lawa</th><th>nadamw+ema</th></tr>\n";
  std::vector<std::vector<double>> eb;
  wi = 0;
  for (auto it = W.begin(); it != W.end(); ++it, ++wi) {
    h << "<tr><td>" << it.key() << "</td>";
    int mi = 0;
    for (auto m = it.value()["methods"].begin(); m != it.value()["methods"].end(); ++m, ++mi) {
      h << "<td>" << f4(m.value()["best_mean"]) << " &plusmn; " << f4(m.value()["best_std"], "%.2g") << "</td>";
      const double base = it.value()["methods"]["nadamw"]["best_mean"].get<double>();
      eb.push_back({double(wi) + 0.2 * (mi - 1), 100 * (m.value()["best_mean"].get<double>() / base - 1),
                    100 * m.value()["best_std"].get<double>() / base, double(mi)});
    }
    h << "</tr>\n";
  }
  h << "</table>\n";
  {
    std::string xt;
    wi = 0;
    for (auto it = W.begin(); it != W.end(); ++it, ++wi)
      xt += std::string(wi ? ", " : "") + "'" + it.key() + "' " + std::to_string(wi);
    h << "<figure>"
      << gnuplot_svg(block("e", eb) + "set xtics (" + xt + ")\nset xrange [-0.6:" + std::to_string(wi) +
                     "-0.4]\nset ylabel 'best value, % relative to nadamw mean'\nset title 'best validation value (mean ± std)'\n"
                     "plot $e u 1:($4==0?$2:1/0):3 w yerrorbars pt 7 ps 1.2 lw 2 t 'nadamw', "
                     "$e u 1:($4==1?$2:1/0):3 w yerrorbars pt 5 ps 1.2 lw 2 t 'nadamw+lawa', "
                     "$e u 1:($4==2?$2:1/0):3 w yerrorbars pt 9 ps 1.2 lw 2 t 'nadamw+ema'", 760, 360)
      << "</figure>\n";
  }

  // ---- analysis 6: schedules ----
  for (auto it = W.begin(); it != W.end(); ++it) {
    if (!it.value().contains("schedules")) continue;
    h << "<h2>6. Averaging and learning-rate decay (" << it.key() << ", seed 0, hard budget)</h2>\n"
      << "<table><tr><th>schedule</th><th>best raw</th><th>best LAWA</th><th>best EMA</th>"
         "<th>steps to target raw / LAWA / EMA</th></tr>\n";
    std::vector<std::vector<double>> rows;
    std::string xt;
    int k = 0;
    for (const auto& s : it.value()["schedules"]) {
      h << "<tr><td>" << html_escape(s["schedule"].get<std::string>()) << "</td><td>" << f4(s["raw_best"])
        << "</td><td>" << f4(s["lawa_best"]) << "</td><td>" << f4(s["ema_best"]) << "</td><td>"
        << steps(s["raw_steps_to_target"]) << " / " << steps(s["lawa_steps_to_target"]) << " / "
        << steps(s["ema_steps_to_target"]) << "</td></tr>\n";
      rows.push_back({double(k), s["raw_best"].get<double>(), s["lawa_best"].get<double>(),
                      s["ema_best"].get<double>()});
      xt += std::string(k ? ", " : "") + "'" + s["schedule"].get<std::string>() + "' " + std::to_string(k);
      ++k;
    }
    h << "</table>\n<figure>"
      << gnuplot_svg(block("s", rows) + "set style fill solid 0.8\nset boxwidth 0.25\nset xtics (" + xt +
                     ") rotate by -15\nset xrange [-0.6:" + std::to_string(k) + "-0.4]\nset ylabel 'best validation " +
                     it.value()["metric"].get<std::string>() + "'\nset title 'raw vs averaged, by schedule'\n"
                     "plot $s u ($1-0.27):2 w boxes t 'raw', $s u 1:3 w boxes t 'LAWA', $s u ($1+0.27):4 w boxes t 'EMA'",
                     760, 380)
      << "<figcaption>Paper: averaging acts like a shorter decay but does not replace it: without decay the "
         "averaged model stays behind a decayed one.</figcaption></figure>\n";
  }

  // ---- scoring ----
  h << "<h2>Scoring (AlgoPerf): performance ratios and profile</h2>\n<table><tr><th>method</th>";
  for (auto it = W.begin(); it != W.end(); ++it) h << "<th>" << it.key() << "</th>";
  h << "<th>score</th></tr>\n";
  std::string data, plot;
  int k = 0;
  for (auto m = R["scoring"]["ratios"].begin(); m != R["scoring"]["ratios"].end(); ++m, ++k) {
    h << "<tr><td>" << m.key() << "</td>";
    for (auto it = W.begin(); it != W.end(); ++it) h << "<td>" << f4(m.value()[it.key()], "%.3f") << "</td>";
    h << "<td>" << f4(R["scoring"]["score"][m.key()], "%.3f") << "</td></tr>\n";
    std::vector<std::vector<double>> rows;
    for (const auto& p : R["scoring"]["profile"][m.key()]) rows.push_back({p[0].get<double>(), p[1].get<double>()});
    data += block("p" + std::to_string(k), rows);
    plot += std::string(k ? ", " : "plot ") + "$p" + std::to_string(k) + " u 1:2 w steps lw 2 t '" + m.key() + "'";
  }
  h << "</table>\n<figure>"
    << gnuplot_svg(data + "set xlabel 'tau'\nset ylabel 'fraction of workloads within tau of the best'\n"
                   "set yrange [0:1.05]\nset title 'performance profile'\n" + plot, 760, 360)
    << "</figure>\n";
  return h.str();
}

}  // namespace wavg
