// ModelAverager: staging copies, background bank updates, evaluation swaps, and module files.
#include "wavg/torch/model_averager.h"

#include <torch/torch.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "wavg/core/error.h"
#include "wavg/io/checkpoint_set.h"
#include "wavg/io/safetensors.h"
#include "wavg/torch/device_offload.h"
#include "wavg/torch/scalar_types.h"

namespace wavg {

namespace detail {
// A live swap's claim on the tensors it exchanged. The registry below maps each claimed tensor
// (its TensorImpl: a Python Parameter and the C++ tensor over it share one) to its claim.
struct SwapClaim {
  // What the swap put into the model, besides averager i (i >= 0): nothing yet, or the optimizer's
  // evaluation point (swap_in_params, Schedule-Free's x).
  static constexpr int kNoAverager = -1;
  static constexpr int kOptimizerEvalPoint = -2;
  uint64_t owner = 0;  // ModelAverager::id_
  int averager = kNoAverager;  // averager i of the owner, or kOptimizerEvalPoint
  std::string holder;  // "averager 'swa_nu1'", as error messages name it
  std::vector<const void*> keys;
};
}  // namespace detail

using detail::SwapClaim;
using detail::to_dtype;
using detail::to_scalar_type;

namespace {

DType sample_dtype(const std::vector<torch::Tensor>& params) {
  if (params.empty()) return DType::kF32;
  const auto t = params[0].scalar_type();
  for (const auto& p : params)
    if (p.scalar_type() != t) return DType::kF32;
  const DType d = to_dtype(t);
  return is_floating(d) ? d : DType::kF32;
}

int64_t total_numel(const std::vector<torch::Tensor>& ts) {
  int64_t n = 0;
  for (const auto& t : ts) n += t.numel();
  return n;
}

// BatchNorm layers of a module tree.
template <typename F>
void for_each_batchnorm(torch::nn::Module& m, F&& f) {
  for (const auto& sub : m.modules(/*include_self=*/true)) {
    if (auto* b = sub->as<torch::nn::BatchNorm1dImpl>()) f(b->options);
    if (auto* b = sub->as<torch::nn::BatchNorm2dImpl>()) f(b->options);
    if (auto* b = sub->as<torch::nn::BatchNorm3dImpl>()) f(b->options);
  }
}

// Swaps alive in this process, by tensor (process-wide: two averagers on one module see each other).
std::mutex swap_registry_mutex;
std::unordered_map<const void*, const SwapClaim*> swap_registry;

const void* tensor_key(const torch::Tensor& t) { return t.unsafeGetTensorImpl(); }

// A copy of the claim on any of `tensors`, if one is alive.
std::optional<SwapClaim> claim_on(const std::vector<torch::Tensor>& tensors) {
  std::lock_guard<std::mutex> lock(swap_registry_mutex);
  for (const auto& t : tensors) {
    auto it = swap_registry.find(tensor_key(t));
    if (it != swap_registry.end()) return SwapClaim{it->second->owner, it->second->averager,
                                                    it->second->holder, {}};
  }
  return std::nullopt;
}

// Registers `claim` on its keys, all or none; throws if another swap holds one of them.
void acquire(const SwapClaim& claim, const std::string& what) {
  std::lock_guard<std::mutex> lock(swap_registry_mutex);
  for (const void* k : claim.keys) {
    auto it = swap_registry.find(k);
    WAVG_CHECK(it == swap_registry.end(), what, ": ", it->second->holder,
               " is swapped into the model and swaps do not nest; end that swap first");
  }
  for (const void* k : claim.keys) swap_registry[k] = &claim;
}

void release(const SwapClaim& claim) noexcept {
  std::lock_guard<std::mutex> lock(swap_registry_mutex);
  for (const void* k : claim.keys) {
    auto it = swap_registry.find(k);
    if (it != swap_registry.end() && it->second == &claim) swap_registry.erase(it);
  }
}

std::atomic<uint64_t> next_averager_id{1};

NamedTensors named_parameters_of(const std::shared_ptr<torch::nn::Module>& m) {
  WAVG_CHECK(m != nullptr, "ModelAverager: null module");
  NamedTensors out;
  for (const auto& item : m->named_parameters()) out.emplace_back(item.key(), item.value());
  return out;
}

NamedTensors named_buffers_of(const std::shared_ptr<torch::nn::Module>& m) {
  WAVG_CHECK(m != nullptr, "ModelAverager: null module");
  NamedTensors out;
  for (const auto& item : m->named_buffers()) out.emplace_back(item.key(), item.value());
  return out;
}

std::vector<torch::Tensor> values_of(const NamedTensors& named) {
  std::vector<torch::Tensor> out;
  for (const auto& [name, t] : named) out.push_back(t);
  return out;
}

int64_t sample_numel(const NamedTensors& parameters, const NamedTensors& buffers) {
  int64_t n = total_numel(values_of(parameters));
  for (const auto& [name, b] : buffers)
    if (b.defined() && b.is_floating_point()) n += b.numel();
  return n;
}

}  // namespace

ModelAverager::ModelAverager(std::shared_ptr<torch::nn::Module> module,
                             std::vector<AveragerSpec> specs)
    : ModelAverager(named_parameters_of(module), named_buffers_of(module), std::move(specs)) {
  module_ = std::move(module);
}

ModelAverager::ModelAverager(NamedTensors parameters, NamedTensors buffers,
                             std::vector<AveragerSpec> specs, RecomputeBuffers recompute)
    : specs_(std::move(specs)),
      recompute_(std::move(recompute)),
      id_(next_averager_id++),
      dtype_(sample_dtype(values_of(parameters))),
      bank_(sample_numel(parameters, buffers), dtype_) {
  init(std::move(parameters), std::move(buffers));
}

void ModelAverager::init(NamedTensors parameters, NamedTensors buffers) {
  std::unordered_set<std::string> names;
  std::unordered_map<const void*, std::string> seen;
  for (const auto* group : {&parameters, &buffers})
    for (const auto& [name, t] : *group) {
      WAVG_CHECK(t.defined(), "ModelAverager: tensor '", name, "' is undefined (None)");
      WAVG_CHECK(names.insert(name).second, "ModelAverager: two tensors are named '", name, "'");
      auto [it, fresh] = seen.emplace(tensor_key(t), name);
      WAVG_CHECK(fresh, "ModelAverager: '", name, "' is the same tensor as '", it->second,
                 "' (tied weights: pass each tensor once)");
    }
  for (const auto& [name, p] : parameters) {
    WAVG_CHECK(p.is_floating_point(), "ModelAverager: parameter '", name, "' is not floating (",
               p.scalar_type(), ")");
    layout_.push_back({name, total_numel(params_), p.numel()});
    params_.push_back(p);
  }
  param_numel_ = total_numel(params_);
  int64_t offset = param_numel_;
  for (const auto& [name, b] : buffers) {
    touched_.push_back(b);
    if (!b.is_floating_point()) continue;
    layout_.push_back({name, offset, b.numel()});
    offset += b.numel();
    buffers_.push_back(b);
  }
  touched_.insert(touched_.end(), params_.begin(), params_.end());
  all_buffers_ = std::move(buffers);
  async_ = !params_.empty() && !params_[0].device().is_cpu();
  for (const auto& s : specs_) bank_.add(s.averager);
  bank_.set_layout(layout_);
  bank_.set_check_finite(false);  // checked once while staging
  if (!params_.empty() && params_[0].is_cuda())  // staged in pinned memory (device_offload.h)
    offload_ = std::make_unique<detail::DeviceOffload>(params_[0].device(), to_scalar_type(dtype_),
                                                       bank_.numel());
  const size_t bytes = size_t(bank_.numel()) * dtype_size(dtype_);
  if (!offload_)
    for (auto& s : staging_) s.resize(bytes);
}

ModelAverager::~ModelAverager() {
  try {
    wait();
  } catch (...) {
  }
}

int ModelAverager::find(const std::string& name) const {
  const int i = bank_.find(name);
  if (i >= 0) return i;
  std::string known;
  for (int k = 0; k < bank_.size(); ++k) known += (k ? ", " : "") + bank_.name(k);
  throw Error("unknown averager '" + name + "' (known: " + known + ")");
}

void ModelAverager::wait() {
  if (pending_.valid()) pending_.get();
}

void ModelAverager::set_shard(int64_t offset, int64_t length, GatherShards gather) {
  wait();
  WAVG_CHECK(bank_.last_step() < 0, "set_shard: the bank has observed samples already");
  AveragerBank shard(bank_.numel(), dtype_, offset, length);
  for (const auto& s : specs_) shard.add(s.averager);
  shard.set_layout(layout_);
  shard.set_check_finite(false);  // checked once while staging
  bank_ = std::move(shard);
  gather_ = std::move(gather);
}

void ModelAverager::observe(int64_t step) {
  check_no_swap("observe(step " + std::to_string(step) + ")",
                ", so the sample would be that average, not the trained weights");
  if (!bank_.wants(step)) return;
  check_shapes("observe(step " + std::to_string(step) + ")");
  ++staged_samples_;
  if (offload_) return observe_offloaded(step);
  torch::NoGradGuard no_grad;
  std::vector<unsigned char>& stage = staging_[next_staging_];
  const size_t esize = dtype_size(dtype_);
  const auto scalar = to_scalar_type(dtype_);
  int64_t offset = 0;
  // Copies each tensor into the staging buffer; the non-finite check rides that copy (one read of
  // the sample). Tensors are staged in flat order, so the first one refused holds the sample's
  // first non-finite element.
  auto stage_tensor = [&](const torch::Tensor& t, const TensorSpan& span) {
    unsigned char* dst = stage.data() + size_t(offset) * esize;
    int64_t bad = -1;
    if (t.device().is_cpu() && t.scalar_type() == scalar && t.is_contiguous()) {
      bad = copy_find_non_finite(dtype_, t.data_ptr(), dst, t.numel());
    } else {
      torch::from_blob(dst, t.sizes(), torch::TensorOptions().dtype(scalar)).copy_(t);
      bad = find_non_finite(dtype_, dst, t.numel());
    }
    if (bad >= 0)
      throw Error("non-finite value in tensor '" + span.name + "' element " +
                  std::to_string(bad) + " at step " + std::to_string(step) +
                  ": sample refused (training has diverged?)");
    offset += t.numel();
  };
  size_t k = 0;  // layout_ lists params_ then buffers_, in this order
  for (const auto& p : sample_params()) stage_tensor(p, layout_[k++]);
  for (const auto& b : buffers_) stage_tensor(b, layout_[k++]);
  wait();  // the bank updates one sample at a time
  const void* sample = stage.data();
  if (async_) {
    pending_ = std::async(std::launch::async, [this, step, sample] { bank_.observe(step, sample); });
    next_staging_ ^= 1;
  } else {
    bank_.observe(step, sample);
  }
}

void ModelAverager::check_no_swap(const std::string& what, const std::string& why) const {
  const std::optional<SwapClaim> claim = claim_on(touched_);
  WAVG_CHECK(!claim, what, ": ", claim->holder, claim->owner == id_ ? "" : " of another ModelAverager",
             " is swapped into the model", why, "; end that swap first");
}

bool ModelAverager::holds(int i) const {
  const std::optional<SwapClaim> claim = claim_on(touched_);
  return claim && claim->owner == id_ && claim->averager == i;
}

void ModelAverager::check_shapes(const std::string& what) const {
  size_t k = 0;  // layout_ lists params_ then buffers_
  for (const auto* group : {&params_, &buffers_})
    for (const auto& t : *group) {
      const TensorSpan& span = layout_[k++];
      WAVG_CHECK(t.numel() == span.numel, what, ": tensor '", span.name, "' has ", t.numel(),
                 " elements, ", span.numel, " when the averager was built (the model changed "
                 "shape: build a new averager)");
    }
}

std::vector<torch::Tensor> ModelAverager::sample_params() const {
  if (!sample_source_) return params_;
  std::vector<torch::Tensor> ps = sample_source_();
  WAVG_CHECK(ps.size() == params_.size(), "sample source: ", ps.size(), " tensors for the model's ",
             params_.size(), " parameters");
  for (size_t k = 0; k < ps.size(); ++k)
    WAVG_CHECK(ps[k].sizes() == params_[k].sizes(), "sample source: tensor for '", layout_[k].name,
               "' has another shape than the parameter");
  return ps;
}

EvalSwap ModelAverager::swap_in_params(const std::vector<torch::Tensor>& values,
                                       const ForwardBatch& forward, int64_t batches) {
  check_no_swap("swap_in_params", " and swaps do not nest");
  WAVG_CHECK(values.size() == params_.size(), "swap_in_params: ", values.size(),
             " tensors for the model's ", params_.size(), " parameters");
  torch::NoGradGuard no_grad;
  EvalSwap swap;
  swap.claim_ = std::make_shared<SwapClaim>();
  *swap.claim_ = {id_, SwapClaim::kOptimizerEvalPoint, "the optimizer's evaluation point", {}};
  for (const auto& t : touched_) swap.claim_->keys.push_back(tensor_key(t));
  acquire(*swap.claim_, "swap_in_params");
  swap.active_ = true;
  for (size_t k = 0; k < params_.size(); ++k) {
    WAVG_CHECK(values[k].sizes() == params_[k].sizes() &&
                   values[k].scalar_type() == params_[k].scalar_type() &&
                   values[k].device() == params_[k].device(),
               "swap_in_params: tensor for '", layout_[k].name, "' differs from the parameter");
    swap.targets_.push_back(params_[k]);
    swap.originals_.push_back(params_[k].data());
    const_cast<torch::Tensor&>(params_[k]).set_data(values[k].detach());
  }
  if (forward && module_ && has_batchnorm(*module_)) {
    for (const auto& [name, b] : all_buffers_) {
      swap.buffer_targets_.push_back(b);
      swap.saved_buffers_.push_back(b.clone());
    }
    recompute_batchnorm(batches, forward);  // on a throw, `swap` restores all
  }
  return swap;
}

EvalSwap ModelAverager::swap_in(int i, const ForwardBatch& forward, int profile) {
  WAVG_CHECK(i >= 0 && i < size(), "averager index ", i, " out of range [0, ", size(), ")");
  // Before anything is written: the live swap's module tensors view eval_.
  check_no_swap("swap_in(averager '" + bank_.name(i) + "')", " and swaps do not nest");
  wait();
  check_shapes("swap_in(averager '" + bank_.name(i) + "')");
  const AveragerSpec& spec = specs_.at(size_t(i));
  const bool can_recompute = module_ ? forward != nullptr : bool(recompute_);
  WAVG_CHECK(spec.buffers != BufferPolicy::kRecompute || can_recompute, "averager '",
             bank_.name(i), "': buffers = recompute needs ",
             module_ ? "training batches to run forward passes" : "a function that recomputes them");
  const size_t esize = dtype_size(dtype_);
  eval_.resize(size_t(bank_.numel()) * esize);
  bank_.average(i, dtype_, eval_.data() + size_t(bank_.shard_offset()) * esize,
                profile);  // throws if empty
  if (gather_) gather_(eval_.data(), bank_.numel(), esize);  // the other processes' shards
  torch::NoGradGuard no_grad;
  EvalSwap swap;
  swap.claim_ = std::make_shared<SwapClaim>();
  *swap.claim_ = {id_, i, "averager '" + bank_.name(i) + "'", {}};
  // Every tensor of the model: the swap exchanges the parameters (and buffers), and kRecompute
  // copies the buffers back on exit.
  for (const auto& t : touched_) swap.claim_->keys.push_back(tensor_key(t));
  acquire(*swap.claim_, "swap_in(averager '" + bank_.name(i) + "')");
  swap.active_ = true;
  const auto scalar = to_scalar_type(dtype_);
  auto put = [&](const torch::Tensor& target, int64_t offset) {
    torch::Tensor view = torch::from_blob(eval_.data() + size_t(offset) * esize, target.sizes(),
                                          torch::TensorOptions().dtype(scalar));
    if (view.scalar_type() != target.scalar_type() || !target.device().is_cpu())
      view = view.to(target.options());
    swap.targets_.push_back(target);
    swap.originals_.push_back(target.data());
    // The module's tensor now points at the average's storage; its own storage is untouched.
    const_cast<torch::Tensor&>(target).set_data(view);
  };
  int64_t offset = 0;
  for (const auto& p : params_) {
    put(p, offset);
    offset += p.numel();
  }
  if (spec.buffers == BufferPolicy::kAverage) {
    for (const auto& b : buffers_) {
      put(b, offset);
      offset += b.numel();
    }
  }
  if (spec.buffers == BufferPolicy::kRecompute) {
    for (const auto& [name, b] : all_buffers_) {
      swap.buffer_targets_.push_back(b);
      swap.saved_buffers_.push_back(b.clone());
    }
    // On a throw, `swap` restores all.
    if (module_)
      recompute_batchnorm(spec.recompute_batches, forward);
    else
      recompute_();
  }
  return swap;
}

void ModelAverager::recompute_batchnorm(int64_t batches, const ForwardBatch& forward) {
  wavg::recompute_batchnorm(*module_, batches, forward);
}

bool has_batchnorm(torch::nn::Module& module) {
  bool any = false;
  for_each_batchnorm(module, [&](auto&) { any = true; });
  return any;
}

void recompute_batchnorm(torch::nn::Module& module, int64_t batches, const ForwardBatch& forward) {
  std::vector<c10::optional<double>> momenta;
  for_each_batchnorm(module, [&](auto& options) {
    momenta.push_back(options.momentum());
    options.momentum(c10::nullopt);  // cumulative average over the passes, as torch's update_bn
  });
  for (const auto& sub : module.modules(/*include_self=*/true)) {
    if (auto* b = sub->as<torch::nn::BatchNorm1dImpl>()) b->reset_running_stats();
    if (auto* b = sub->as<torch::nn::BatchNorm2dImpl>()) b->reset_running_stats();
    if (auto* b = sub->as<torch::nn::BatchNorm3dImpl>()) b->reset_running_stats();
  }
  const bool was_training = module.is_training();
  auto restore_settings = [&] {
    module.train(was_training);
    size_t j = 0;
    for_each_batchnorm(module, [&](auto& options) { options.momentum(momenta[j++]); });
  };
  module.train(true);
  try {
    for (int64_t k = 0; k < batches; ++k) forward(k);
  } catch (...) {
    restore_settings();
    throw;
  }
  restore_settings();
}

EvalSwap::EvalSwap(EvalSwap&& o) noexcept
    : targets_(std::move(o.targets_)),
      originals_(std::move(o.originals_)),
      saved_buffers_(std::move(o.saved_buffers_)),
      buffer_targets_(std::move(o.buffer_targets_)),
      claim_(std::move(o.claim_)),
      active_(o.active_) {
  o.active_ = false;
}

EvalSwap::~EvalSwap() { restore(); }

void EvalSwap::restore() noexcept {
  if (!active_) return;
  active_ = false;
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < targets_.size(); ++k) targets_[k].set_data(originals_[k]);
  for (size_t k = 0; k < buffer_targets_.size(); ++k) buffer_targets_[k].copy_(saved_buffers_[k]);
  if (claim_) release(*claim_);
}

void ModelAverager::save(int i, const std::string& path, const ForwardBatch& forward,
                         const std::map<std::string, std::string>& metadata, int profile) {
  WAVG_CHECK(i >= 0 && i < size(), "averager index ", i, " out of range [0, ", size(), ")");
  auto meta = metadata;
  meta["wavg.averager"] = describe(specs_.at(size_t(i)).averager);
  meta["wavg.buffers"] = buffer_policy_name(specs_.at(size_t(i)).buffers);
  meta["wavg.samples"] = std::to_string(bank().samples(i));
  with_average(i, forward, profile, "save", [&] { write_named(named_tensors(), path, meta); });
}

NamedTensors ModelAverager::average(int i, const ForwardBatch& forward, int profile) {
  NamedTensors out;
  with_average(i, forward, profile, "average", [&] {
    for (auto& [name, t] : named_tensors()) out.emplace_back(name, t.detach().clone());
  });
  return out;
}

template <typename F>
void ModelAverager::with_average(int i, const ForwardBatch& forward, int profile,
                                 const std::string& what, F f) {
  WAVG_CHECK(i >= 0 && i < size(), "averager index ", i, " out of range [0, ", size(), ")");
  if (profile == 0 && holds(i)) {  // the model holds averager i already
    f();
    return;
  }
  check_no_swap(what + "(averager '" + bank_.name(i) + "')");
  EvalSwap swap = swap_in(i, forward, profile);
  f();
}

NamedTensors ModelAverager::named_tensors() const {
  NamedTensors out;
  for (size_t k = 0; k < params_.size(); ++k) out.emplace_back(layout_[k].name, params_[k]);
  out.insert(out.end(), all_buffers_.begin(), all_buffers_.end());
  return out;
}

std::map<std::string, std::string> ModelAverager::state_meta() {
  wait();
  return bank_.state_meta();
}

NamedTensors ModelAverager::state_arrays() {
  wait();
  NamedTensors out;
  for (const StateArray& a : bank_.state_arrays()) {
    torch::Tensor t = torch::empty({a.numel}, torch::TensorOptions().dtype(to_scalar_type(a.dtype)));
    std::memcpy(t.data_ptr(), a.data, size_t(a.numel) * dtype_size(a.dtype));
    out.emplace_back(a.name, t);
  }
  return out;
}

void ModelAverager::load_state(const std::map<std::string, std::string>& meta,
                               const NamedTensors& arrays) {
  wait();
  check_no_swap("load_state_dict", " (its average would change under it)");
  AveragerBank fresh(bank_.numel(), dtype_, bank_.shard_offset(), bank_.shard_length());
  for (const auto& s : specs_) fresh.add(s.averager);
  fresh.set_layout(layout_);
  fresh.set_check_finite(false);
  WAVG_CHECK(fresh.restore_meta(meta) == AveragerBank::kStateFormat,
             "load_state_dict: a bank state of format 1 (from a file of an older wavg) is read by "
             "the C++ API's load_bank_state only");
  std::map<std::string, torch::Tensor> by_name(arrays.begin(), arrays.end());
  for (const StateArray& a : fresh.state_arrays()) {
    auto it = by_name.find(a.name);
    WAVG_CHECK(it != by_name.end(), "load_state_dict: the state lacks array '", a.name, "'");
    const torch::Tensor t = it->second.detach().to(torch::kCPU).contiguous();
    WAVG_CHECK(t.scalar_type() == to_scalar_type(a.dtype) && t.numel() == a.numel,
               "load_state_dict: array '", a.name, "' is ", t.scalar_type(), " with ", t.numel(),
               " elements, the bank's is ", dtype_name(a.dtype), " with ", a.numel);
    std::memcpy(a.data, t.data_ptr(), size_t(a.numel) * dtype_size(a.dtype));
    by_name.erase(it);
  }
  WAVG_CHECK(by_name.empty(), "load_state_dict: unknown array '", by_name.begin()->first,
             "' (a state of other averagers?)");
  bank_ = std::move(fresh);
}

void save_module(const torch::nn::Module& module, const std::string& path,
                 const std::map<std::string, std::string>& metadata) {
  NamedTensors named;
  for (const auto& item : module.named_parameters()) named.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers()) named.emplace_back(item.key(), item.value());
  write_named(named, path, metadata);
}

void write_named(const NamedTensors& tensors, const std::string& path,
                 const std::map<std::string, std::string>& metadata) {
  std::vector<torch::Tensor> keep;  // contiguous CPU copies alive until written
  std::vector<TensorOut> outs;
  for (const auto& [name, t] : tensors) {
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    keep.push_back(c);
    outs.push_back({name, to_dtype(c.scalar_type()), c.sizes().vec(), c.data_ptr()});
  }
  write_safetensors(path, outs, metadata, /*checksum=*/true);
}

std::string strip_prefix_hint(const CheckpointSet& set, const torch::nn::Module& module) {
  std::unordered_set<std::string> names;
  for (const auto& item : module.named_parameters()) names.insert(item.key());
  for (const auto& item : module.named_buffers()) names.insert(item.key());
  std::vector<std::string> missing, extra;
  for (const std::string& n : names)
    if (!set.find(n)) missing.push_back(n);
  for (const CheckpointTensor& t : set.tensors())
    if (!names.count(t.key)) extra.push_back(t.key);
  const std::optional<std::string> p = explaining_prefix(extra, missing);
  return p ? " (the prefix '" + quote_bytes(*p) + "' on the checkpoint's names explains every " +
                 "difference: pass --strip-prefix " + quote_bytes(*p) + ")"
           : "";
}

std::map<std::string, std::string> load_module(torch::nn::Module& module, const std::string& path,
                                               const std::vector<std::string>& strip_prefixes) {
  // A single file, a sharded checkpoint's index, or a directory (DESIGN.md §9).
  CheckpointSetOptions options;
  options.strip_prefixes = strip_prefixes;
  CheckpointSet set(path, options);
  set.verify_checksums();
  torch::NoGradGuard no_grad;
  auto load = [&](const std::string& name, torch::Tensor& target) {
    const CheckpointTensor* c = set.find(name);
    WAVG_CHECK(c != nullptr, path, ": tensor '", name, "' of the model is missing",
               strip_prefix_hint(set, module));
    const TensorInfo* t = c->info;
    WAVG_CHECK(t->shape == target.sizes().vec(), path, ": tensor '", name,
               "' has a different shape than the model's");
    torch::Tensor tmp = torch::empty(t->shape, torch::TensorOptions().dtype(to_scalar_type(t->dtype)));
    if (t->nbytes()) set.read_bytes(*c, 0, t->nbytes(), tmp.data_ptr());
    target.copy_(tmp);
  };
  for (auto& item : module.named_parameters()) load(item.key(), item.value());
  for (auto& item : module.named_buffers()) load(item.key(), item.value());
  return set.shard(0).metadata();
}

}  // namespace wavg
