// `wavg report`: the page around a run's or a study's report body, and the shared table helpers.
#include "wavg/study/report.h"

#include <cmath>

#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/io/atomic_file.h"
#include "wavg/study/report_html.h"

namespace wavg {

namespace report {

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

std::string cell(double v, int digits) {
  return std::isfinite(v) ? format_number(v, digits) : "&ndash;";
}

std::string cell_fixed(double v, int decimals) {
  return std::isfinite(v) ? format_fixed(v, decimals) : "&ndash;";
}

std::string steps_cell(double steps) {
  return std::isfinite(steps) ? format_fixed(steps, 0)
                              : "<span class=\"miss\">&#x2717;</span>";
}

const char* target_relation(bool lower_is_better) { return lower_is_better ? "&le;" : "&ge;"; }

const char* better_word(bool lower_is_better) { return lower_is_better ? "lower" : "higher"; }

double improvement_percent(double value, double base, bool lower_is_better) {
  return 100.0 * (lower_is_better ? base - value : value - base) / std::abs(base);
}

}  // namespace report

namespace {

const char* kStyle = R"(<style>
body{font-family:Helvetica,Arial,sans-serif;max-width:980px;margin:2em auto;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:0.6em 0;font-size:0.92em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f3f3}
figure{margin:1em 0}figcaption{font-size:0.88em;color:#555}svg{max-width:100%;height:auto}
.note{color:#555;font-size:0.9em}.miss{color:#b00;font-weight:bold}
</style>)";

}  // namespace

std::string study_report(const std::string& dir) { return report::study_report_body(dir); }

void write_report(const std::string& dir, const std::string& out_html) {
  std::string body;
  if (file_exists(dir + "/results.json")) {
    body = report::study_report_body(dir);
  } else if (file_exists(dir + "/summary.json") && file_exists(dir + "/metrics.jsonl")) {
    body = report::run_report_body(dir);
  } else {
    throw Error("report: " + dir + " holds neither a run (summary.json, metrics.jsonl) nor a " +
                "study (results.json)");
  }
  const std::string html = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                           "<title>wavg report</title>" + std::string(kStyle) +
                           "</head><body>\n" + body +
                           "<p class=\"note\">Written by wavg report.</p>\n</body></html>\n";
  write_file_atomic(out_html, html);
}

}  // namespace wavg
