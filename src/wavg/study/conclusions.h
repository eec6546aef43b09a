// Issue 25 item 9: the paper's claims, point by point, marked from a merged results.json (schema
// study-v4) by rules fixed in conclusions.cpp before the numbers they mark were seen: a mark per
// part from its 95 % interval, and one overall ("agrees" where every part agrees, "disagrees" where
// at least one part disagrees and none agrees, "not resolved" otherwise). A claim whose keys no
// part has is left out. The report renders them (report_study.h conclusions_section) and the
// README quotes them.
#pragma once

#include <nlohmann/json.hpp>

namespace wavg::study {

using json = nlohmann::ordered_json;

// results["conclusions"]: [{claim, paper, rule, parts: [{part, evidence, mark}], mark}].
json conclusions_json(const json& results);

}  // namespace wavg::study
