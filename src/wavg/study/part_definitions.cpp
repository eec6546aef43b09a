// The workload definitions of a study's parts, recorded and checked at merge (see part_definitions.h).
#include "wavg/study/part_definitions.h"

#include <algorithm>
#include <cstdio>
#include <utility>
#include <vector>

#include "wavg/core/error.h"
#include "wavg/workloads/defaults.h"

namespace wavg::study {

namespace {

using Definitions = std::vector<std::pair<std::string, int64_t>>;  // workload, version

// What the part records. A part written before the field existed counts as definition 1 of its
// workload: every committed part was made when each workload was at definition 1, the value a
// run's resolved config leaves unwritten.
Definitions recorded_definitions(const json& doc, const std::string& path,
                                 const std::string& workload) {
  if (!doc.contains("workload_definitions")) return {{workload, 1}};
  const json& d = doc["workload_definitions"];
  WAVG_CHECK(d.is_object() && d.contains(workload), "study: ", path, ": 'workload_definitions' ",
             "must be an object {workload: version} naming the part's workload '", workload,
             "', got ", d.dump());
  const std::vector<std::string> known = workload_names();
  Definitions out;
  for (const auto& [w, v] : d.items()) {
    WAVG_CHECK(std::find(known.begin(), known.end(), w) != known.end(), "study: ", path,
               ": 'workload_definitions' names an unknown workload '", w, "'");
    WAVG_CHECK(v.is_number_integer() && v.get<int64_t>() >= 1, "study: ", path,
               ": 'workload_definitions.", w, "' must be an integer >= 1, got ", v.dump());
    out.emplace_back(w, v.get<int64_t>());
  }
  return out;
}

}  // namespace

json part_definitions_json(const std::string& workload) {
  return {{workload, workload_defaults(workload).definition}};
}

void merge_part_definitions(const json& doc, const std::string& path, const std::string& workload,
                            bool accept_other, json* study) {
  for (const auto& [w, v] : recorded_definitions(doc, path, workload)) {
    const int64_t today = workload_defaults(w).definition;
    WAVG_CHECK(v == today || accept_other, "study: ", path, " was made under workload '", w,
               "' definition ", v, "; this wavg has definition ", today, " (its model or data ",
               "generator changed); rerun that part or pass --accept-other-definitions");
    if (v != today)
      std::fprintf(stderr, "wavg: warning: study --accept-other-definitions: %s was made under "
                   "workload '%s' definition %lld; this wavg has definition %lld\n", path.c_str(),
                   w.c_str(), (long long)v, (long long)today);
    WAVG_CHECK(!study->contains(w) || (*study)[w].get<int64_t>() == v, "study: ", path,
               " was made under workload '", w, "' definition ", v, ", another part under ",
               "definition ", (*study)[w].get<int64_t>(), ": a study's parts must share each ",
               "workload's definition");
    (*study)[w] = v;
  }
}

}  // namespace wavg::study
