// Sample offload from a GPU to the CPU bank (DESIGN.md §8; the paper's App. E, after DeepSeek-V3's
// CPU EMA). Internal (not installed): wavg::detail.
//
// stage(k) runs on the training thread and returns at once. On a CUDA device it enqueues, on a side
// stream that first waits for the training stream (so it reads the weights after the optimizer
// step):
//   1. a device-to-device gather of the module's tensors into one flat snapshot (sample dtype);
//   2. a non-blocking copy of the snapshot into pinned host buffer k, and an event marking its end.
// The training stream then waits, on the GPU and not the host, for step 1 only: the next optimizer
// step cannot change the weights before they are read, and the host copy overlaps the next forward
// and backward passes. ready(k), called on the bank's background thread, blocks until event k has
// fired and returns host buffer k, which the bank then averages on the CPU.
// Two host buffers (k = 0, 1) let the bank average one sample while the next one is copied; the
// caller must not stage into buffer k again before it has finished with ready(k).
//
// On a CPU device, stage(k) copies synchronously into host buffer k (same layout and conversions),
// which is how the layout is tested on machines without a GPU.
#pragma once

#include <torch/types.h>

#include <memory>
#include <vector>

namespace wavg::detail {

class DeviceOffload {
 public:
  // Host buffers for a flat sample of `numel` elements of `dtype`, gathered from tensors on `device`
  // (pinned memory when it is a CUDA device).
  DeviceOffload(c10::Device device, c10::ScalarType dtype, int64_t numel);
  ~DeviceOffload();
  DeviceOffload(const DeviceOffload&) = delete;
  DeviceOffload& operator=(const DeviceOffload&) = delete;

  // Copies `tensors` (flat order, each converted to the sample dtype) into host buffer k in {0, 1};
  // asynchronous on a CUDA device. Their element counts must add up to numel.
  void stage(int k, const std::vector<torch::Tensor>& tensors);
  // Blocks until host buffer k holds what stage(k) copied; returns its first byte.
  const void* ready(int k);

  c10::Device device() const { return device_; }
  bool pinned() const { return host_[0].is_pinned(); }

 private:
  struct Cuda;  // streams and events (device_offload.cpp, WAVG_WITH_CUDA only)
  c10::Device device_;
  int64_t numel_;
  torch::Tensor host_[2];   // (numel) sample dtype, CPU (pinned on CUDA)
  torch::Tensor snapshot_;  // (numel) sample dtype, on the device (CUDA only)
  std::unique_ptr<Cuda> cuda_;
};

}  // namespace wavg::detail
