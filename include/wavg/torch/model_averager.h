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
// Swaps are guarded by the tensors themselves, process-wide: while a swap (of any ModelAverager) is
// alive on a tensor, every other swap_in(), observe() (which would sample the average instead of the
// trained weights) and save() that touch that tensor throw wavg::Error, so two averagers on one
// module cannot nest swaps. Do not step the optimizer during a swap: the update would land in the
// average and be lost on restore.
//
// Without a C++ module (the Python package, python/wavg): the named-tensor constructor takes the
// parameters and buffers under their state_dict names, and BufferPolicy::kRecompute calls a
// user-supplied function instead of recomputing BatchNorm statistics itself.
#pragma once

#include <torch/nn/module.h>

#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
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
  // Any scheme's options (LawaOptions, …) or SchemeOptions, so that {LawaOptions(20), EmaOptions(0.9)}
  // builds a vector of specs.
  template <typename Options,
            typename = std::enable_if_t<std::is_convertible_v<Options, SchemeOptions>>>
  AveragerSpec(Options o, BufferPolicy b = BufferPolicy::kCopy,  // NOLINT: implicit
               int64_t batches = 20)
      : averager(std::move(o)), buffers(b), recompute_batches(batches) {}
  SchemeOptions averager;
  BufferPolicy buffers = BufferPolicy::kCopy;
  int64_t recompute_batches = 20;  // kRecompute: forward passes used
};

// Runs one forward pass on training batch `index` (used by BufferPolicy::kRecompute).
using ForwardBatch = std::function<void(int64_t index)>;

// Recomputes the buffers at the swapped-in weights (kRecompute without a C++ module).
using RecomputeBuffers = std::function<void()>;
// Tensors under their state_dict names.
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

class ModelAverager;

namespace detail {
struct SwapClaim;  // a live swap's claim on the tensors it exchanged (model_averager.cpp)
}

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
  std::shared_ptr<detail::SwapClaim> claim_;  // released on restore, also if the averager died first
  bool active_ = false;
};

class ModelAverager {
 public:
  // The module's parameters and floating buffers form the flat sample, in named_parameters() then
  // named_buffers() order. Parameters must share one floating dtype (sample dtype); else fp32.
  ModelAverager(std::shared_ptr<torch::nn::Module> module, std::vector<AveragerSpec> specs);
  // Over named tensors: `parameters` (one floating dtype, else the sample is fp32) and every buffer;
  // floating buffers join the sample after the parameters, the others are only saved. Names must be
  // unique, tensors distinct. kRecompute calls `recompute` while the average is swapped in (the
  // buffers are restored bit-exactly on exit).
  ModelAverager(NamedTensors parameters, NamedTensors buffers, std::vector<AveragerSpec> specs,
                RecomputeBuffers recompute = nullptr);
  ~ModelAverager();

  // On: averaging runs on a background thread while training goes on; observe() only copies the
  // sample. Off: observe() returns when the bank is updated. Default: on when the model lives on
  // an accelerator, off on CPU, where training already keeps every core busy (measured:
  // docs/benchmarks.md). On a GPU the sample goes to pinned host memory on a side stream either way
  // (device_offload.h), and the bank lives in CPU memory.
  void set_async(bool on) { async_ = on; }
  bool is_async() const { return async_; }
  // Observes the model after `step` optimizer steps (steps increase). Copies the sample once for
  // the whole bank, checking it is finite (a NaN/Inf is refused with an error naming the tensor).
  // Refused while a swap is alive.
  void observe(int64_t step);
  // Waits for an in-flight background update.
  void wait();
  // Full samples staged so far (each observe() that samples copies the model once for the whole
  // bank), and their bytes: what a test reads to check there is one copy per step.
  int64_t staged_samples() const { return staged_samples_; }
  int64_t staged_bytes() const {
    return staged_samples_ * bank_.numel() * int64_t(dtype_size(dtype_));
  }

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
  // Averager i as the model would hold it in a swap: every parameter and buffer under its name
  // (copies, on the model's devices). The same rules as save() during a swap.
  NamedTensors average(int i, const ForwardBatch& forward = nullptr, int profile = 0);

  // The bank's exact state (AveragerBank::state_meta and copies of its arrays), and its restore:
  // the bank must have the same averagers and sample (checked); on a refusal the bank is unchanged.
  std::map<std::string, std::string> state_meta();
  NamedTensors state_arrays();
  void load_state(const std::map<std::string, std::string>& meta, const NamedTensors& arrays);

 private:
  // During a swap on any of this averager's tensors, throws wavg::Error "<what>: averager '<name>'
  // is swapped into the model<why>; end that swap first".
  void check_no_swap(const std::string& what, const std::string& why = "") const;
  // Whether averager i of this ModelAverager is swapped in now.
  bool holds(int i) const;
  // Runs f() while the model holds averager i (already, or through a swap for the call).
  template <typename F>
  void with_average(int i, const ForwardBatch& forward, int profile, const std::string& what, F f);
  // Each tensor still has the number of elements it had at construction (else wavg::Error).
  void check_shapes(const std::string& what) const;
  void init(NamedTensors parameters, NamedTensors buffers);
  NamedTensors named_tensors() const;  // parameters, then every buffer
  // kRecompute: BatchNorm statistics from `batches` forward passes in training mode, as a
  // cumulative average (torch.optim.swa_utils.update_bn); momenta and the mode are restored.
  void recompute_batchnorm(int64_t batches, const ForwardBatch& forward);
  // observe() for a module on a GPU (defined in device_offload.cpp).
  void observe_offloaded(int64_t step);

  std::shared_ptr<torch::nn::Module> module_;
  std::vector<AveragerSpec> specs_;
  std::vector<torch::Tensor> params_, buffers_;  // in flat order; buffers_ are floating buffers
  NamedTensors all_buffers_;                     // every buffer (saved; kRecompute restores them)
  std::vector<torch::Tensor> touched_;           // params_ and all_buffers_: what swaps guard
  RecomputeBuffers recompute_;                   // kRecompute without a module
  uint64_t id_ = 0;                              // tells this averager's swaps from others'
  int64_t staged_samples_ = 0;
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
  SampleSource sample_source_;  // null: the module's parameters
  // The parameters a sample is taken from (sample_source_'s, else params_).
  std::vector<torch::Tensor> sample_params() const;
};

// Writes every parameter and buffer of a module (state-dict names) as a safetensors file, with the
// CRC-32 of its data in the metadata.
void save_module(const torch::nn::Module& module, const std::string& path,
                 const std::map<std::string, std::string>& metadata = {});
// The same for tensors under their names.
void write_named(const NamedTensors& tensors, const std::string& path,
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
