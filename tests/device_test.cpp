// Devices (DESIGN.md §8): the `device` setting's syntax and resolution, the config keys it brings,
// the sample offload's flat layout (on the CPU here; on a GPU too where there is one), and a
// ModelAverager on a GPU against one on the CPU fed the same weights (skipped without a GPU).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <functional>
#include <string>

#include "wavg/core/error.h"
#include "wavg/torch/device.h"
#include "wavg/torch/device_offload.h"
#include "wavg/torch/model_averager.h"
#include "wavg/train/config.h"

using namespace wavg;

namespace {

std::string error_text(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

bool gpu() { return built_with_cuda() && torch::cuda::is_available(); }

}  // namespace

TEST(Device, SpecSyntax) {
  for (const char* ok : {"cpu", "cuda", "cuda:0", "cuda:7", "cuda:1023"})
    EXPECT_NO_THROW(check_device_spec(ok)) << ok;
  for (const char* bad : {"", "gpu", "CPU", "cuda:", "cuda:-1", "cuda:x", "cuda:1024", "cuda:0 ",
                          " cuda", "cuda0", "mps"}) {
    const std::string e = error_text([&] { check_device_spec(bad); });
    EXPECT_NE(e.find(std::string("got \"") + bad + "\""), std::string::npos) << e;
  }
}

TEST(Device, ResolvesCpuAndNamesLocalRankForCuda) {
  EXPECT_TRUE(resolve_device("cpu").is_cpu());
  ::setenv("LOCAL_RANK", "two", 1);
  EXPECT_NE(error_text([] { resolve_device("cuda"); }).find("LOCAL_RANK must be"), std::string::npos);
  ::setenv("LOCAL_RANK", "5", 1);
  if (!gpu()) {
    // Refused with the value, what it stands for, and the reason that holds on this machine.
    const std::string e = error_text([] { resolve_device("cuda"); });
    EXPECT_NE(e.find("device \"cuda\" (cuda:5)"), std::string::npos) << e;
    EXPECT_NE(e.find(built_with_cuda() ? "no CUDA device" : "without CUDA"), std::string::npos) << e;
  } else if (torch::cuda::device_count() > 5) {
    EXPECT_EQ(resolve_device("cuda"), c10::Device(c10::kCUDA, 5));
  } else {
    EXPECT_NE(error_text([] { resolve_device("cuda"); }).find("only"), std::string::npos);
  }
  ::unsetenv("LOCAL_RANK");
  EXPECT_NE(error_text([] { resolve_device("cuda:1000"); }).find("device \"cuda:1000\""),
            std::string::npos);
}

TEST(Device, ConfigRecordsDeviceAndMayChangeItOnResume) {
  const RunConfig cpu = load_run_config("", {"workload=synth_ctr"});
  EXPECT_EQ(cpu.device, "cpu");
  EXPECT_FALSE(cpu.async_averaging);  // the CPU default
  const RunConfig gpu1 = load_run_config("", {"workload=synth_ctr", "device=cuda:1"});
  EXPECT_EQ(gpu1.device, "cuda:1");
  EXPECT_TRUE(gpu1.async_averaging);  // the GPU default: the bank updates beside the step
  EXPECT_FALSE(
      load_run_config("", {"workload=synth_ctr", "device=cuda", "async_averaging=false"})
          .async_averaging);
  EXPECT_NE(resolved_toml(gpu1).find("\ndevice = \"cuda:1\"\n"), std::string::npos);
  // The device is left out of the hash, like threads: same run on another device.
  RunConfig moved = cpu;
  moved.device = "cuda";
  EXPECT_EQ(config_hash(moved), config_hash(cpu));
  const auto changes = config_changes(cpu, moved);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(describe(changes[0]), "device (run: \"cpu\", now: \"cuda\")");
  EXPECT_TRUE(may_change_on_resume(changes[0]));
  EXPECT_TRUE(refused_changes(cpu, moved).empty());
  RunConfig reseeded = cpu;
  reseeded.seed = cpu.seed + 1;
  ASSERT_EQ(refused_changes(cpu, reseeded).size(), 1u);
  EXPECT_EQ(refused_changes(cpu, reseeded)[0].key, "seed");
  // A resolved file reads back to the same configuration.
  EXPECT_EQ(resolved_toml(load_run_config("", {"workload=synth_ctr", "device=cuda:1"})),
            resolved_toml(gpu1));
}

TEST(Device, ModuleDevice) {
  EXPECT_TRUE(module_device(*torch::nn::Linear(2, 3)).is_cpu());
  EXPECT_TRUE(module_device(torch::nn::Module()).is_cpu());
}

namespace {

// The flat sample staged from `tensors`, computed element by element in double.
std::vector<double> flat_reference(const std::vector<torch::Tensor>& tensors) {
  std::vector<double> out;
  for (const auto& t : tensors) {
    const torch::Tensor c = t.to(torch::kCPU).to(torch::kDouble).contiguous();
    const double* p = c.data_ptr<double>();
    for (int64_t i = 0; i < c.numel(); ++i) out.push_back(p[i]);
  }
  return out;
}

void expect_buffer(const void* data, const std::vector<double>& want) {
  const float* p = static_cast<const float*>(data);
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(double(p[i]), double(float(want[i]))) << i;
}

void check_offload(c10::Device device) {
  torch::manual_seed(3);
  const auto on = torch::TensorOptions().device(device);
  // A float matrix, a non-contiguous view, and a double buffer converted to the float sample.
  std::vector<torch::Tensor> a = {torch::randn({3, 4}, on), torch::randn({4, 2}, on).t(),
                                  torch::randn({5}, on.dtype(torch::kDouble))};
  std::vector<torch::Tensor> b = {torch::randn({3, 4}, on), torch::randn({4, 2}, on).t(),
                                  torch::randn({5}, on.dtype(torch::kDouble))};
  wavg::detail::DeviceOffload offload(device, torch::kFloat, 12 + 8 + 5);
  EXPECT_EQ(offload.pinned(), device.is_cuda());
  offload.stage(0, a);
  offload.stage(1, b);
  const auto want_a = flat_reference(a), want_b = flat_reference(b);
  for (auto& t : a) t.zero_();  // the staged copy does not follow the tensors afterwards
  expect_buffer(offload.ready(1), want_b);
  expect_buffer(offload.ready(0), want_a);
  EXPECT_NE(error_text([&] { offload.stage(0, {a[0]}); }).find("hold 12 elements, the sample 25"),
            std::string::npos);
  EXPECT_NE(error_text([&] { offload.stage(2, a); }).find("host buffer 2"), std::string::npos);
}

}  // namespace

TEST(DeviceOffload, FlatLayoutAndConversionsOnTheCpu) { check_offload(c10::Device(c10::kCPU)); }

TEST(DeviceOffload, FlatLayoutAndConversionsOnAGpu) {
  if (!gpu()) GTEST_SKIP() << "no GPU here";
  check_offload(c10::Device(c10::kCUDA, 0));
}

TEST(DeviceOffload, CudaRefusedWithoutCuda) {
  if (built_with_cuda()) GTEST_SKIP() << "this wavg has CUDA";
  EXPECT_NE(error_text([] { wavg::detail::DeviceOffload(c10::Device(c10::kCUDA, 0), torch::kFloat, 4); })
                .find("built without CUDA"),
            std::string::npos);
}

// On a GPU: the model trains on the device, the bank (on the CPU, fed through pinned memory on a side
// stream) must hold the same averages as a CPU ModelAverager fed the same weights, bit for bit
// (LAWA and EMA are deterministic functions of the samples).
TEST(DeviceOffload, GpuModelAveragerEqualsCpuAveragerOfTheSameWeights) {
  if (!gpu()) GTEST_SKIP() << "no GPU here";
  torch::manual_seed(0);
  torch::nn::Sequential net(torch::nn::Linear(64, 256), torch::nn::ReLU(), torch::nn::Linear(256, 8),
                            torch::nn::BatchNorm1d(8));
  auto cpu_copy = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(net->clone());
  net->to(torch::Device(torch::kCUDA, 0));
  const std::vector<AveragerSpec> specs = {
      AveragerSpec(LawaOptions(4), BufferPolicy::kAverage), AveragerSpec(EmaOptions(0.9))};
  ModelAverager gpu_avg(net.ptr(), specs), cpu_avg(cpu_copy, specs);
  torch::optim::SGD opt(net->parameters(), 0.05);
  gpu_avg.observe(0);
  cpu_avg.observe(0);
  for (int64_t step = 1; step <= 30; ++step) {
    opt.zero_grad();
    const auto x = torch::randn({32, 64}, torch::Device(torch::kCUDA, 0));
    net->forward(x).pow(2).mean().backward();
    opt.step();
    gpu_avg.observe(step);  // returns before the copy has landed
    {
      torch::NoGradGuard no_grad;
      const auto src = net->named_parameters(), dst = cpu_copy->named_parameters();
      for (const auto& p : src) dst[p.key()].copy_(p.value());
      const auto bsrc = net->named_buffers(), bdst = cpu_copy->named_buffers();
      for (const auto& b : bsrc) bdst[b.key()].copy_(b.value());
    }
    cpu_avg.observe(step);
  }
  for (int i = 0; i < 2; ++i) {
    const size_t n = size_t(gpu_avg.bank().numel());
    std::vector<float> g(n), c(n);
    gpu_avg.bank().average(i, DType::kF32, g.data());
    cpu_avg.bank().average(i, DType::kF32, c.data());
    EXPECT_EQ(g, c) << gpu_avg.name(i);
  }
  auto swap = gpu_avg.swap_in(0);
  EXPECT_TRUE(module_device(*net).is_cuda());
}
