// The report's conclusions (issue 25 item 9): results.json's "conclusions", the paper's claims
// point by point with each part's evidence and mark (rules: conclusions.cpp).
#include <string>

#include "wavg/study/report_html.h"
#include "wavg/study/report_study.h"

namespace wavg::report {

namespace {

std::string mark_cell(const std::string& mark) {
  return mark == "not resolved" ? mark : "<b>" + html_escape(mark) + "</b>";
}

std::string claim_rows(const JsonView& c) {
  const std::vector<JsonView> parts = c["parts"].elements();
  std::string h;
  for (size_t i = 0; i < parts.size(); ++i) {
    const JsonView& p = parts[i];
    h += "<tr>";
    if (i == 0)
      h += "<td rowspan=\"" + std::to_string(parts.size()) + "\"><b>" + html_escape(c["claim"].text()) +
           "</b>: " + html_escape(c["paper"].text()) + "<br><small>rule: " +
           html_escape(c["rule"].text()) + "</small></td><td rowspan=\"" +
           std::to_string(parts.size()) + "\">" + mark_cell(c["mark"].text()) + "</td>";
    h += "<td>" + html_escape(p["part"].text()) +
         (p["regime"].text().empty() ? "" : " <small>(" + html_escape(p["regime"].text()) + ")</small>") +
         "</td><td>" + html_escape(p["evidence"].text()) + "</td><td>" +
         mark_cell(p["mark"].text()) + "</td></tr>\n";
  }
  return h;
}

}  // namespace

std::string conclusions_section(const StudyResults& r) {
  if (!r.root.has("conclusions") || r.root["conclusions"].size() == 0) return "";
  std::string h =
      "<h2>Conclusions, point by point against the paper</h2>\n<p>Each claim is marked per part "
      "from its 95&nbsp;% interval by the rule under it, and overall: <b>agrees</b> where every "
      "part agrees, <b>disagrees</b> where at least one part disagrees and none agrees, "
      "otherwise not resolved at this scale. The rules were fixed before the numbers of the LM "
      "bank, mri_recon and the breadth study's rerun were seen.</p>\n<table><tr><th>claim</th>"
      "<th>overall</th><th>part</th><th>evidence [95% interval]</th><th>mark</th></tr>\n";
  for (const JsonView& c : r.root["conclusions"].elements()) h += claim_rows(c);
  return h + "</table>\n";
}

}  // namespace wavg::report
