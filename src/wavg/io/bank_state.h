// Saves and restores an AveragerBank's exact state as a safetensors file: counters and averager
// specs in __metadata__, averages, sums and rings as tensors. Restoring continues bit-identically.
#pragma once

#include <map>
#include <string>

#include "wavg/core/bank.h"

namespace wavg {

void save_bank_state(const std::string& path, AveragerBank& bank,
                     const std::map<std::string, std::string>& extra_metadata = {});
// The bank must have been built with the same averagers, size, dtype and shard (checked). States of
// format 1 (LAWA rings of fp64 cumulative sums, before rings held samples) are converted; states of
// an unknown format are refused with an error naming it.
// Returns the file's metadata (including the extra entries given at save time).
std::map<std::string, std::string> load_bank_state(const std::string& path, AveragerBank& bank);

}  // namespace wavg
