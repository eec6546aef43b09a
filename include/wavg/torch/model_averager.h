// Averaging on a live LibTorch model (DESIGN.md §2): a bank of averagers observes a module's
// parameters (and floating buffers) after each optimizer step; an RAII swap puts an average into the
// module for evaluation and restores the module bit-exactly on scope exit, also on exceptions.
//
//   wavg::ModelAverager avg(model, {wavg::LawaOptions(/*window=*/20).every(16),
//                                   wavg::EmaOptions(/*beta=*/0.9).every(16)});
//   avg.observe(0);                        // the initial weights (step 0)
//   for (int64_t step = 1; step <= T; ++step) {
//     ... loss.backward(); optimizer.step();
//     avg.observe(step);                   // after `step` optimizer steps
//     if (step % 100 == 0) {
//       auto swap = avg.swap_in("lawa_L20_nu16");   // model now holds the LAWA average
//       evaluate(*model);
//     }                                    // model restored here
//   }
//   avg.save("ema_b0.9_nu16", "ema.safetensors");
//
// One swap at a time: while a swap is alive, a second swap_in(), observe() (which would sample the
// average instead of the trained weights) and save() of another averager throw wavg::Error. Do not
// step the optimizer during a swap: the update would land in the average and be lost on restore.
#pragma once

#include <torch/nn/module.h>

#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "wavg/core/averager.h"
#include "wavg/core/bank.h"

namespace wavg {

namespace detail {
class DeviceOffload;  // src/wavg/torch/device_offload.h
}
class CheckpointSet;  // wavg/io/checkpoint_set.h

// One averager of a ModelAverager: its options and what it does with the module's buffers.
//   wavg::AveragerSpec(wavg::LawaOptions(20).every(16), wavg::BufferPolicy::kAverage)
struct AveragerSpec {
  AveragerSpec(AveragerOptions o = {}, BufferPolicy b = BufferPolicy::kCopy,  // NOLINT: implicit
               int64_t batches = 20)
      : averager(std::move(o)), buffers(b), recompute_batches(batches) {}
  AveragerSpec(const LawaOptions& o, BufferPolicy b = BufferPolicy::kCopy,  // NOLINT: implicit
               int64_t batches = 20)
      : AveragerSpec(AveragerOptions(o), b, batches) {}
  AveragerSpec(const EmaOptions& o, BufferPolicy b = BufferPolicy::kCopy,  // NOLINT: implicit
               int64_t batches = 20)
      : AveragerSpec(AveragerOptions(o), b, batches) {}
  AveragerSpec(const SwaOptions& o, BufferPolicy b = BufferPolicy::kCopy,  // NOLINT: implicit
               int64_t batches = 20)
      : AveragerSpec(AveragerOptions(o), b, batches) {}
  AveragerSpec(const PhemaOptions& o, BufferPolicy b = BufferPolicy::kCopy,  // NOLINT: implicit
               int64_t batches = 20)
      : AveragerSpec(AveragerOptions(o), b, batches) {}
  AveragerOptions averager;
  BufferPolicy buffers = BufferPolicy::kCopy;
  int64_t recompute_batches = 20;  // kRecompute: forward passes used
};

// Runs one forward pass on training batch `index` (used by BufferPolicy::kRecompute).
using ForwardBatch = std::function<void(int64_t index)>;

class ModelAverager;

// While alive, the module holds an average. Movable, not copyable.
class EvalSwap {
 public:
  EvalSwap(EvalSwap&& other) noexcept;
  EvalSwap& operator=(EvalSwap&&) = delete;
  EvalSwap(const EvalSwap&) = delete;
  ~EvalSwap();

 private:
  friend class ModelAverager;
  EvalSwap() = default;
  void restore() noexcept;
  std::vector<torch::Tensor> targets_;     // module tensors whose data was swapped
  std::vector<torch::Tensor> originals_;   // their original data (shallow: same storage)
  std::vector<torch::Tensor> saved_buffers_;  // kRecompute: deep copies to copy back
  std::vector<torch::Tensor> buffer_targets_;
  std::shared_ptr<int> swapped_;  // the ModelAverager's record of the swapped-in averager
  bool active_ = false;
};

class ModelAverager {
 public:
  // The module's parameters and floating buffers form the flat sample, in named_parameters() then
  // named_buffers() order. Parameters must share one floating dtype (sample dtype); else fp32.
  ModelAverager(std::shared_ptr<torch::nn::Module> module, std::vector<AveragerSpec> specs);
  ~ModelAverager();

  // On: averaging runs on a background thread while training goes on; observe() only copies the
  // sample. Off: observe() returns when the bank is updated. Default: on when the model lives on
  // an accelerator, off on CPU, where training already keeps every core busy (measured:
  // docs/benchmarks.md). On a GPU the sample goes to pinned host memory on a side stream either way
  // (device_offload.h), and the bank lives in CPU memory.
  void set_async(bool on) { async_ = on; }
  // Observes the model after `step` optimizer steps (steps increase). Copies the sample once for
  // the whole bank, checking it is finite (a NaN/Inf is refused with an error naming the tensor).
  // Refused while a swap is alive.
  void observe(int64_t step);
  // Waits for an in-flight background update.
  void wait();

  // Where observe() takes the parameters of a sample from (default: the module's own). An
  // optimizer whose evaluation point is not the trained parameters (Schedule-Free AdamW's x)
  // provides them here: one tensor per parameter, in named_parameters() order, with its shape.
  // Buffers always come from the module.
  using SampleSource = std::function<std::vector<torch::Tensor>()>;
  void set_sample_source(SampleSource source) { sample_source_ = std::move(source); }
  // Puts `values` (one per parameter, named_parameters() order, same shapes) into the module's
  // parameters until the returned object dies, and with `forward` recomputes the BatchNorm
  // statistics at them over `batches` training batches (restored on exit). Refused during
  // another swap; observe() and every other swap are refused while it lives.
  EvalSwap swap_in_params(const std::vector<torch::Tensor>& values, const ForwardBatch& forward,
                          int64_t batches);

  // Data parallel (ZeRO-1 style, DESIGN.md §8): from now on the bank holds only elements
  // [offset, offset + length) of the flat sample, and `gather` completes a flat vector (numel
  // elements of elem_bytes bytes, this shard filled) with every other process's shard (an
  // all-gather), so that swaps and saves see the whole average. Before the first observe(); every
  // process must then call swap_in and save for the same averagers in the same order.
  using GatherShards = std::function<void(void* whole, int64_t numel, size_t elem_bytes)>;
  void set_shard(int64_t offset, int64_t length, GatherShards gather);

  int size() const { return bank_.size(); }
  int find(const std::string& name) const;  // throws wavg::Error if unknown
  const std::string& name(int i) const { return bank_.name(i); }
  const AveragerSpec& spec(int i) const { return specs_.at(i); }
  bool empty(int i) { return wait(), bank_.empty(i); }
  AveragerBank& bank() { return wait(), bank_; }
  const std::vector<TensorSpan>& layout() const { return layout_; }

  // Puts averager i into the module until the returned object dies. kRecompute needs `forward`.
  // Refused while another swap is alive (swaps do not nest). phema: `profile` picks the profile.
  EvalSwap swap_in(int i, const ForwardBatch& forward = nullptr, int profile = 0);
  EvalSwap swap_in(const std::string& name, const ForwardBatch& forward = nullptr) {
    return swap_in(find(name), forward);
  }
  // Writes averager i as a safetensors file with the module's state-dict names. During a swap of
  // averager i, writes the module as it is (it holds that average); during a swap of another
  // averager, refused. phema: `profile` picks the profile written.
  void save(int i, const std::string& path, const ForwardBatch& forward = nullptr,
            const std::map<std::string, std::string>& metadata = {}, int profile = 0);
  void save(const std::string& name, const std::string& path,
            const ForwardBatch& forward = nullptr,
            const std::map<std::string, std::string>& metadata = {}) {
    save(find(name), path, forward, metadata);
  }

 private:
  // During a swap, throws wavg::Error "<what>: averager '<name>' is swapped into the model<why>;
  // end that swap first".
  void check_no_swap(const std::string& what, const std::string& why = "") const;
  // kRecompute: BatchNorm statistics from `batches` forward passes in training mode, as a
  // cumulative average (torch.optim.swa_utils.update_bn); momenta and the mode are restored.
  void recompute_batchnorm(int64_t batches, const ForwardBatch& forward);
  // observe() for a module on a GPU (defined in device_offload.cpp).
  void observe_offloaded(int64_t step);

  std::shared_ptr<torch::nn::Module> module_;
  std::vector<AveragerSpec> specs_;
  std::vector<torch::Tensor> params_, buffers_;  // in flat order; buffers_ are floating buffers
  int64_t param_numel_ = 0;
  std::vector<TensorSpan> layout_;
  DType dtype_;
  AveragerBank bank_;
  std::vector<unsigned char> staging_[2];  // double buffer: one being averaged, one being filled
  std::unique_ptr<detail::DeviceOffload> offload_;  // module on a GPU: pinned staging instead
  int next_staging_ = 0;
  std::vector<unsigned char> eval_;        // the average being evaluated (flat)
  std::future<void> pending_;
  GatherShards gather_;  // set_shard: fills the other shards of a flat average
  bool async_ = false;
  // Averager whose swap is alive, -1 if none. Shared with the swap, which clears it on restore (also
  // if this ModelAverager has died first).
  // -2: the values of swap_in_params.
  std::shared_ptr<int> swapped_ = std::make_shared<int>(-1);
  SampleSource sample_source_;  // null: the module's parameters
  // The parameters a sample is taken from (sample_source_'s, else params_).
  std::vector<torch::Tensor> sample_params() const;
};

// Writes every parameter and buffer of a module (state-dict names) as a safetensors file, with the
// CRC-32 of its data in the metadata.
void save_module(const torch::nn::Module& module, const std::string& path,
                 const std::map<std::string, std::string>& metadata = {});
// Loads a checkpoint into a module: a safetensors file, a sharded checkpoint's index or a directory
// (CheckpointSet). Every parameter and buffer must be present with the same shape; dtypes are
// converted; a recorded checksum must match. With strip_prefixes, the checkpoint's names are matched
// without them (--strip-prefix: "module.", "_orig_mod."). Returns the (first shard's) file metadata.
std::map<std::string, std::string> load_module(torch::nn::Module& module, const std::string& path,
                                               const std::vector<std::string>& strip_prefixes = {});

// The hint of a "tensor ... is missing" error: " (the prefix 'P' on the checkpoint's names explains
// every difference: pass --strip-prefix P)" when one prefix on the checkpoint's names explains every
// difference from the module's names (checkpoint_set.h explaining_prefix), else "".
std::string strip_prefix_hint(const CheckpointSet& checkpoint, const torch::nn::Module& module);

// Whether the module tree holds a BatchNorm layer (1d, 2d or 3d).
bool has_batchnorm(torch::nn::Module& module);
// BatchNorm statistics from `batches` forward passes in training mode, as a cumulative average
// (torch.optim.swa_utils.update_bn); the layers' momenta and the module's mode are restored.
void recompute_batchnorm(torch::nn::Module& module, int64_t batches, const ForwardBatch& forward);

}  // namespace wavg
