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
// an unknown format are refused with an error naming it. Every counter (AveragerBank::restore_meta)
// and every array's dtype and size are checked before the bank changes: an error (wavg::Error
// naming the file and the field) leaves the bank as it was.
// Returns the file's metadata (including the extra entries given at save time).
std::map<std::string, std::string> load_bank_state(const std::string& path, AveragerBank& bank);
// load_bank_state's checks, without loading.
void check_bank_state(const std::string& path, AveragerBank& bank);

}  // namespace wavg
