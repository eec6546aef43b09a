// The workload definitions a study part records (issue 22 §6): each part file's
// "workload_definitions" {workload: version} says under which definition of its workload
// (WorkloadDefaults::definition: its model and data generator) the part's runs were made, and the
// merge copies them into results.json's "workload_definitions", refusing a part made under a
// definition other than this wavg's.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace wavg::study {

using json = nlohmann::ordered_json;

// {workload: this wavg's definition}: what a new part of `workload` records (its runs are made
// under today's definition; the run cache refuses a run directory made under another).
json part_definitions_json(const std::string& workload);

// Checks the definitions recorded by the part `doc` (read from `path`; `workload`: the part's own,
// lm_workload for the LM protocol) against this wavg's and adds them to `*study` (results.json's
// "workload_definitions"). Throws wavg::Error in one line naming the file, the workload and both
// versions for another definition unless `accept_other` (then a warning on stderr); for a malformed
// field, one that omits `workload`, or two parts recording different definitions of one workload.
void merge_part_definitions(const json& doc, const std::string& path, const std::string& workload,
                            bool accept_other, json* study);

}  // namespace wavg::study
