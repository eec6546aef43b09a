// The memory a run configuration needs, estimated before anything trains, against the memory
// available: a setting that cannot fit (batch_size = 1000000000, a LAWA window of 10^12 samples) is
// refused when the configuration is validated, naming the key and the bytes, instead of failing
// after minutes of allocation. Estimates, from each workload's WorkloadFootprint and the bank's state
// layout (bank.h), with a safety factor for allocator slack; they are deliberately generous.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "wavg/core/averager.h"

namespace wavg {

struct RunConfig;

// One consumer of memory, attributed to the configuration key that sizes it.
struct MemoryNeed {
  std::string key;    // "batch_size", "lawa[0].window", "" for the model and data (no one key)
  std::string value;  // the key's value as the user sees it
  std::string what;   // how the bytes come about, e.g. "128 examples x 1.1 MB"
  double bytes = 0;   // estimate, safety factor included (double: windows of 10^18 do not overflow)
};

// Multiplies every estimate: allocator slack, LibTorch's temporaries, fragmentation.
constexpr double kMemorySafetyFactor = 1.5;

// Bytes of bank state per averaged element for these averagers, as AveragerBank lays it out
// (bank.h): EMA an fp32 average (4), SWA an fp64 sum (8), and each LAWA ring, which the LAWA
// averagers of one ν share, L_max + 1 fp64 cumulative sums (8·(L_max + 1)). No safety factor.
double bank_bytes_per_element(const std::vector<SchemeOptions>& averagers);

// What the run needs, largest-sized keys included: the model with its optimizer and staging
// copies and the resident data (key ""), the training batch ("batch_size"), and each ring's or
// averager's state ("lawa[i].window", "ema[i]", "swa[i]").
std::vector<MemoryNeed> memory_needs(const RunConfig& c);

// Bytes the system can give this process now: MemAvailable of /proc/meminfo, lowered to the
// cgroup's remaining limit (memory.max - memory.current) where one is set; -1 when unknown.
int64_t available_memory_bytes();

// Throws wavg::Error when a batch is larger than the workload's finite training split, or when the
// needs add up to more than `available` bytes (< 0: unknown, not checked), naming the largest
// need's key, its bytes, the total and the bytes available.
void check_resources(const RunConfig& c, int64_t available);

}  // namespace wavg
