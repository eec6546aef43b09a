// The memory estimates of a run configuration (train/resource_check.h) against independent
// references: the bank's own state_bytes(), the workloads' real models, and the heap that a forward
// pass really keeps for the backward pass (glibc's mallinfo2).
#include <gtest/gtest.h>
#include <malloc.h>
#include <cstdio>
#include <torch/torch.h>

#include "wavg/core/bank.h"
#include "wavg/core/error.h"
#include "wavg/train/config.h"
#include "wavg/train/resource_check.h"
#include "wavg/workloads/workload.h"

namespace wavg {
namespace {

constexpr int64_t kGiB = int64_t(1) << 30;

// The message of the wavg::Error that check_resources throws ("" when it throws none).
std::string refusal(const RunConfig& c, int64_t available) {
  try {
    check_resources(c, available);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ResourceCheck, BankBytesPerElementMatchTheBanksOwnState) {
  const std::vector<std::vector<SchemeOptions>> banks = {
      {LawaOptions(20)},
      {LawaOptions(20), LawaOptions(5)},                  // one shared ring: L_max + 1 sums
      {LawaOptions(20).every(4), LawaOptions(7).every(2)},  // two rings
      {EmaOptions(0.9), SwaOptions(), LawaOptions(3).every(8), EmaOptions(0.99).every(2)},
      {LawaOptions(20), LawaExpOptions(30, 0.1)},  // EXP shares (and widens) the LAWA ring
      {LawaExpOptions(5, 0.5).every(3), EmaOptions(0.9), LawaExpOptions(2, 0.1).every(3)},
  };
  const int64_t n = 1000;
  const std::vector<float> sample(size_t(n), 1.0f);
  for (const auto& options : banks) {
    AveragerBank bank(n, DType::kF32);
    for (const auto& o : options) bank.add(o);
    bank.observe(0, sample.data());  // allocates the state
    EXPECT_DOUBLE_EQ(bank_bytes_per_element(options) * double(n), double(bank.state_bytes()))
        << options.size() << " averagers";
  }
}

TEST(ResourceCheck, AveragedElementsAreTheModelsParametersAndFloatingBuffers) {
  for (const std::string& name : workload_names()) {
    auto w = make_workload(name, {});
    int64_t n = 0;
    for (const auto& p : w->model()->parameters()) n += p.numel();
    for (const auto& b : w->model()->buffers())
      if (b.is_floating_point()) n += b.numel();
    EXPECT_EQ(workload_footprint(name).averaged_elements, n) << name;
  }
}

// Heap bytes in use (arena and mmap'ed blocks): LibTorch's CPU allocator goes through malloc.
double heap_in_use() {
  const struct mallinfo2 m = mallinfo2();
  return double(m.uordblks) + double(m.hblkhd);
}

TEST(ResourceCheck, ExampleBytesCoverWhatATrainingStepKeeps) {
  torch::set_num_threads(1);
  for (const std::string& name : workload_names()) {
    const int64_t batch = 64;
    auto w = make_workload(name, {/*seed=*/0, /*batch_size=*/batch});
    w->train_loss(0).backward();  // warm up: gradients and one-time tables exist from here on
    const double before = heap_in_use();
    at::Tensor loss = w->train_loss(1);  // the graph holds what backward will need
    const double kept = (heap_in_use() - before) / double(batch);
    const double estimate = double(workload_footprint(name).example_bytes);
    std::printf("%s: estimate %.0f bytes per example, forward keeps %.0f\n", name.c_str(), estimate, kept);
    // Backward makes a gradient of each kept tensor: the estimate counts both, so it is at least
    // twice what the forward pass keeps, and not wildly more (an honest estimate).
    EXPECT_GE(estimate, 2 * kept) << name << ": kept " << kept << " bytes per example";
    EXPECT_LE(estimate, 8 * kept) << name << ": kept " << kept << " bytes per example";
  }
}

TEST(ResourceCheck, DefaultsFitAndHugeSettingsAreRefusedByKey) {
  for (const std::string& name : workload_names())
    EXPECT_EQ(refusal(default_run_config(name), 2 * kGiB), "") << name;

  RunConfig c = default_run_config("synth_ctr");
  c.batch_size = 1000000000;
  std::string m = refusal(c, 16 * kGiB);
  EXPECT_NE(m.find("'batch_size' = 1000000000 needs about "), std::string::npos) << m;
  EXPECT_NE(m.find("more than the 17179869184 bytes (16 GiB) available"), std::string::npos) << m;
  // synth_ctr's per-example estimate times 10^9, with the safety factor.
  const double bytes = kMemorySafetyFactor * 1e9 * double(workload_footprint("synth_ctr").example_bytes);
  EXPECT_NE(m.find(std::to_string(int64_t(bytes)) + " bytes"), std::string::npos) << m;

  c = default_run_config("synth_ctr");
  c.averagers = {{LawaOptions(20)}, {LawaOptions(1000000000000)}, {EmaOptions(0.9)}};
  m = refusal(c, 16 * kGiB);
  EXPECT_NE(m.find("'lawa[1].window' = 1000000000000 needs about "), std::string::npos) << m;
  // Kaddour's EXP window: its ring is counted (here it sizes the ring it shares with a LAWA window).
  c.averagers = {{LawaOptions(20)}, {LawaExpOptions(1000000000000, 0.1)}};
  m = refusal(c, 16 * kGiB);
  EXPECT_NE(m.find("'lawa_exp[0].window' = 1000000000000 needs about "), std::string::npos) << m;

  c = default_run_config("fmnist_cnn");
  c.batch_size = 55001;
  m = refusal(c, -1);  // memory unknown: the split is checked all the same
  EXPECT_NE(m.find("'batch_size' = 55001 is larger than the training split of fmnist_cnn (55000"),
            std::string::npos) << m;
  c.batch_size = 55000;
  EXPECT_EQ(refusal(c, -1), "");
  // With one example per batch, the model and data are the largest need: the run is named.
  c.batch_size = 1;
  m = refusal(c, 1000);
  EXPECT_NE(m.find("config: the run of fmnist_cnn needs about"), std::string::npos) << m;
}

TEST(ResourceCheck, AvailableMemoryIsReadFromTheSystem) {
  const int64_t a = available_memory_bytes();
  EXPECT_GT(a, 0);  // /proc/meminfo has MemAvailable on every Linux since 3.14
}

}  // namespace
}  // namespace wavg
