// Memory estimates of a run configuration against the memory available (resource_check.h).
#include "wavg/train/resource_check.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include "wavg/core/bank.h"
#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/train/config.h"
#include "wavg/train/config_keys.h"
#include "wavg/workloads/defaults.h"

namespace wavg {

namespace {

// Copies of the model the trainer holds besides the bank: weights, gradients, the optimizer's two
// moments (NAdamW/AdamW; SGD's one momentum is fewer), the bank's staging sample, the swap buffer.
constexpr double kModelCopies = 6;
constexpr double kFloatBytes = 4;  // the workloads train in fp32

// "9600000000000 bytes (8.73 TiB)".
std::string show_bytes(double b) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = b;
  int u = 0;
  while (v >= 1024 && u < 6) v /= 1024, ++u;
  char exact[40];
  if (b < 9e18)
    std::snprintf(exact, sizeof exact, "%lld bytes", (long long)std::llround(b));
  else
    std::snprintf(exact, sizeof exact, "%.3g bytes", b);
  if (u == 0) return exact;
  return std::string(exact) + " (" + format_number(v, 3) + " " + units[u] + ")";
}

// The bank's state, one need per averager with state of its own (EMA, SWA, phema) and one per ring
// of windowed averagers (LAWA, EXP; one ring per ν, attributed to the window that sizes it, the
// largest of the ring), for `elements` averaged elements.
void bank_needs(const RunConfig& c, double elements, std::vector<MemoryNeed>* out) {
  std::map<int64_t, size_t> ring_owner;  // ν -> index of its largest window
  for (size_t i = 0; i < c.averagers.size(); ++i) {
    const SchemeOptions& o = c.averagers[i].averager;
    if (shared_ring_window(o) == 0) continue;
    auto it = ring_owner.find(o.every());
    if (it == ring_owner.end() || shared_ring_window(c.averagers[it->second].averager) <
                                      shared_ring_window(o))
      ring_owner[o.every()] = i;
  }
  for (size_t i = 0; i < c.averagers.size(); ++i) {
    const SchemeOptions& o = c.averagers[i].averager;
    MemoryNeed n;
    if (shared_ring_window(o) > 0) {
      if (ring_owner[o.every()] != i) continue;  // shares a larger window's ring
      n.key = detail::averager_key(c, c.averagers[i]) + ".window";
      n.value = std::to_string(window_of(o));
      n.what = "a ring of " + std::to_string(window_of(o)) + " + 1 fp32 samples of " +
               format_number(elements, 6) + " elements (windows with every = " +
               std::to_string(o.every()) + ")";
    } else {
      n.key = detail::averager_key(c, c.averagers[i]);
      n.value = o.name().empty() ? default_name(o) : o.name();
      n.what = std::string(o.scheme() == Scheme::kSwa ? "an fp64 sum" : "fp32 averages") + " of " +
               format_number(elements, 6) + " elements";
    }
    n.bytes = kMemorySafetyFactor * elements * bank_bytes_per_element({o});
    out->push_back(n);
  }
}

// "MemAvailable:   19535500 kB" -> bytes; -1 when absent.
int64_t meminfo_available() {
  std::ifstream f("/proc/meminfo");
  std::string key, unit;
  int64_t kb = 0;
  while (f >> key >> kb) {
    std::getline(f, unit);
    if (key == "MemAvailable:") return kb * 1024;
  }
  return -1;
}

// The cgroup v2 limit left (memory.max - memory.current), or -1 when there is none.
int64_t cgroup_available() {
  std::ifstream max_file("/sys/fs/cgroup/memory.max"), current_file("/sys/fs/cgroup/memory.current");
  std::string max;
  int64_t current = 0;
  if (!(max_file >> max) || max == "max" || !(current_file >> current)) return -1;
  try {
    return std::max<int64_t>(0, std::stoll(max) - current);
  } catch (const std::exception&) {
    return -1;
  }
}

}  // namespace

double bank_bytes_per_element(const std::vector<SchemeOptions>& averagers) {
  return state_bytes_per_element(averagers, DType::kF32);  // samples are the fp32 model's
}

std::vector<MemoryNeed> memory_needs(const RunConfig& c) {
  const WorkloadFootprint f = workload_footprint(c.workload);
  const double elements = double(f.averaged_elements);
  std::vector<MemoryNeed> out;
  MemoryNeed model;
  model.what = c.workload + "'s model (" + format_number(elements, 6) + " elements, " +
               format_number(kModelCopies, 2) + " copies) and data";
  model.bytes = kMemorySafetyFactor * (kModelCopies * kFloatBytes * elements + double(f.data_bytes));
  out.push_back(model);
  MemoryNeed batch;
  batch.key = "batch_size";
  batch.value = std::to_string(c.batch_size);
  batch.what = std::to_string(c.batch_size) + " examples of " + c.workload + " at about " +
               show_bytes(kMemorySafetyFactor * double(f.example_bytes)) + " each";
  batch.bytes = kMemorySafetyFactor * double(c.batch_size) * double(f.example_bytes);
  out.push_back(batch);
  bank_needs(c, elements, &out);
  return out;
}

int64_t available_memory_bytes() {
  const int64_t mem = meminfo_available(), group = cgroup_available();
  if (mem < 0) return group;
  return group < 0 ? mem : std::min(mem, group);
}

void check_resources(const RunConfig& c, int64_t available) {
  const WorkloadFootprint f = workload_footprint(c.workload);
  WAVG_CHECK(f.train_examples == 0 || c.batch_size <= f.train_examples, "config: 'batch_size' = ",
             c.batch_size, " is larger than the training split of ", c.workload, " (",
             f.train_examples, " examples)");
  if (available < 0) return;
  const std::vector<MemoryNeed> needs = memory_needs(c);
  double total = 0;
  for (const MemoryNeed& n : needs) total += n.bytes;
  if (total <= double(available)) return;
  const MemoryNeed& top = *std::max_element(
      needs.begin(), needs.end(), [](const MemoryNeed& a, const MemoryNeed& b) { return a.bytes < b.bytes; });
  const std::string who = top.key.empty() ? "the run of " + c.workload
                                          : "'" + top.key + "' = " + top.value;
  throw Error("config: " + who + " needs about " + show_bytes(top.bytes) + " of memory (" +
              top.what + "); the run needs about " + show_bytes(total) + " in all, more than the " +
              show_bytes(double(available)) + " available (MemAvailable)");
}

}  // namespace wavg
