// The `device` setting: syntax, what it stands for in this process, and whether it is there.
#include "wavg/torch/device.h"

#include <torch/cuda.h>
#include <torch/nn/module.h>

#include <cstdlib>
#include <string>

#include "wavg/core/error.h"

namespace wavg {

namespace {

// A decimal index in [0, 1024) (no sign, no spaces), or -1.
int parse_index(const std::string& s) {
  if (s.empty() || s.size() > 4) return -1;
  int v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return -1;
    v = v * 10 + (ch - '0');
  }
  return v < 1024 ? v : -1;
}

int local_rank() {
  const char* env = std::getenv("LOCAL_RANK");
  if (env == nullptr || *env == '\0') return 0;
  const int r = parse_index(env);
  WAVG_CHECK(r >= 0, "environment: LOCAL_RANK must be an integer in [0, 1024), got '", env, "'");
  return r;
}

}  // namespace

bool built_with_cuda() {
#ifdef WAVG_WITH_CUDA
  return true;
#else
  return false;
#endif
}

void check_device_spec(const std::string& spec) {
  const bool ok = spec == "cpu" || spec == "cuda" ||
                  (spec.rfind("cuda:", 0) == 0 && parse_index(spec.substr(5)) >= 0);
  WAVG_CHECK(ok, "config: 'device' must be \"cpu\", \"cuda\" or \"cuda:N\", got \"", spec, "\"");
}

c10::Device resolve_device(const std::string& spec) {
  check_device_spec(spec);
  if (spec == "cpu") return c10::Device(c10::kCPU);
  const int index = spec == "cuda" ? local_rank() : parse_index(spec.substr(5));
  const std::string what = "config: device \"" + spec + "\"" +
                           (spec == "cuda" ? " (cuda:" + std::to_string(index) + ")" : "");
  WAVG_CHECK(built_with_cuda(), what, ": this wavg was built against a LibTorch without CUDA ",
             "(build against a CUDA LibTorch: README, \"Devices (GPUs)\")");
  const int64_t count = torch::cuda::is_available() ? int64_t(torch::cuda::device_count()) : 0;
  WAVG_CHECK(count > 0, what, ": no CUDA device is visible to this process (driver missing, or ",
             "CUDA_VISIBLE_DEVICES empty)");
  WAVG_CHECK(index < count, what, ": only ", count, " CUDA device", count == 1 ? " is" : "s are",
             " visible (cuda:0", count > 1 ? "..cuda:" + std::to_string(count - 1) : "", ")");
  return c10::Device(c10::kCUDA, c10::DeviceIndex(index));
}

c10::Device module_device(const torch::nn::Module& module) {
  for (const auto& p : module.parameters()) return p.device();
  for (const auto& b : module.buffers()) return b.device();
  return c10::Device(c10::kCPU);
}

}  // namespace wavg
