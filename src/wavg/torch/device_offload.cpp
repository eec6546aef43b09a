// DeviceOffload: side-stream gathers, pinned host copies and events for samples taken on a GPU, and
// ModelAverager's observe() path for a module on a GPU (the bank updates on a background thread).
#include "wavg/torch/device_offload.h"

#include <torch/torch.h>

#ifdef WAVG_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <future>
#include <string>

#include "wavg/core/error.h"
#include "wavg/torch/model_averager.h"
#include "wavg/torch/scalar_types.h"

namespace wavg {
namespace detail {

#ifdef WAVG_WITH_CUDA
struct DeviceOffload::Cuda {
  explicit Cuda(c10::DeviceIndex index)
      : side(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, index)) {}
  c10::cuda::CUDAStream side;     // the gathers and host copies run here
  at::cuda::CUDAEvent stepped;    // the training stream has reached observe(): the step is done
  at::cuda::CUDAEvent gathered;   // the snapshot is taken: the weights may change again
  at::cuda::CUDAEvent copied[2];  // host buffer k holds the sample
};
#else
struct DeviceOffload::Cuda {};
#endif

DeviceOffload::DeviceOffload(c10::Device device, c10::ScalarType dtype, int64_t numel)
    : device_(device), numel_(numel) {
  const bool cuda = device.is_cuda();
#ifndef WAVG_WITH_CUDA
  WAVG_CHECK(!cuda, "sample offload from ", device.str(), ": this wavg was built without CUDA");
#endif
  WAVG_CHECK(cuda || device.is_cpu(), "sample offload from ", device.str(),
             ": only CUDA devices (and the CPU) are supported");
  const auto host = torch::TensorOptions().dtype(dtype).device(torch::kCPU).pinned_memory(cuda);
  for (auto& h : host_) h = torch::empty({numel}, host);
  if (!cuda) return;
#ifdef WAVG_WITH_CUDA
  c10::cuda::CUDAGuard guard(device);
  snapshot_ = torch::empty({numel}, torch::TensorOptions().dtype(dtype).device(device));
  cuda_ = std::make_unique<Cuda>(device.index());
#endif
}

DeviceOffload::~DeviceOffload() {
#ifdef WAVG_WITH_CUDA
  // Copies still in flight write into host_: let them land before the pinned memory is freed.
  if (cuda_) cuda_->side.synchronize();
#endif
}

namespace {

// Copies `tensors` one after the other into the flat `dst` (dtype conversions included).
void gather(const std::vector<torch::Tensor>& tensors, torch::Tensor& dst, int64_t numel) {
  int64_t offset = 0;
  for (const auto& t : tensors) {
    WAVG_CHECK(offset + t.numel() <= numel, "sample offload: the tensors hold more than the ",
               numel, " elements of the sample");
    dst.narrow(0, offset, t.numel()).view(t.sizes()).copy_(t);
    offset += t.numel();
  }
  WAVG_CHECK(offset == numel, "sample offload: the tensors hold ", offset, " elements, the sample ",
             numel);
}

}  // namespace

void DeviceOffload::stage(int k, const std::vector<torch::Tensor>& tensors) {
  WAVG_CHECK(k == 0 || k == 1, "sample offload: host buffer ", k, " out of range [0, 2)");
  torch::NoGradGuard no_grad;
  if (!cuda_) {
    gather(tensors, host_[k], numel_);
    return;
  }
#ifdef WAVG_WITH_CUDA
  c10::cuda::CUDAGuard guard(device_);
  const c10::cuda::CUDAStream training = c10::cuda::getCurrentCUDAStream(device_.index());
  Cuda& c = *cuda_;
  c.stepped.record(training);
  c.stepped.block(c.side);  // the side stream reads the weights after the optimizer step
  {
    c10::cuda::CUDAStreamGuard on_side(c.side);
    gather(tensors, snapshot_, numel_);  // device to device: fast
    c.gathered.record(c.side);
    host_[k].copy_(snapshot_, /*non_blocking=*/true);  // device to pinned host: overlaps training
    c.copied[k].record(c.side);
  }
  c.gathered.block(training);  // the next step waits (on the GPU) for the gather only
#endif
}

const void* DeviceOffload::ready(int k) {
  WAVG_CHECK(k == 0 || k == 1, "sample offload: host buffer ", k, " out of range [0, 2)");
#ifdef WAVG_WITH_CUDA
  if (cuda_) cuda_->copied[k].synchronize();
#endif
  return host_[k].data_ptr();
}

}  // namespace detail

// ModelAverager::observe() for a module on a GPU: staging is asynchronous (DeviceOffload), and the
// background task waits for the host copy, checks it is finite, and updates the bank. A non-finite
// sample is reported by the next call that waits (observe, swap_in, save, bank()), naming its step.
void ModelAverager::observe_offloaded(int64_t step) {
  const int k = next_staging_;
  std::vector<torch::Tensor> tensors = sample_params();
  tensors.insert(tensors.end(), buffers_.begin(), buffers_.end());
  offload_->stage(k, tensors);  // host buffer k is free: its last task ended before the previous
  wait();                       // observe() returned; this waits for buffer k^1's task
  auto task = [this, step, k] {
    const void* sample = offload_->ready(k);
    const int64_t bad = find_non_finite(dtype_, sample, bank_.numel());
    if (bad >= 0) {
      for (const TensorSpan& t : layout_)
        if (bad >= t.offset && bad < t.offset + t.numel)
          throw Error("non-finite value in tensor '" + t.name + "' element " +
                      std::to_string(bad - t.offset) + " at step " + std::to_string(step) +
                      ": sample refused (training has diverged?)");
    }
    bank_.observe(step, sample);
  };
  pending_ = std::async(std::launch::async, task);
  next_staging_ ^= 1;
  if (!async_) wait();
}

}  // namespace wavg
