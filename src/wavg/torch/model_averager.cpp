// ModelAverager: staging copies, background bank updates, evaluation swaps, and module files.
#include "wavg/torch/model_averager.h"

#include <torch/torch.h>

#include <cstring>
#include <optional>
#include <unordered_set>

#include "wavg/core/error.h"
#include "wavg/io/checkpoint_set.h"
#include "wavg/io/safetensors.h"
#include "wavg/torch/device_offload.h"
#include "wavg/torch/tensor_util.h"

namespace wavg {

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

}  // namespace

ModelAverager::ModelAverager(std::shared_ptr<torch::nn::Module> module,
                             std::vector<AveragerSpec> specs)
    : module_(std::move(module)),
      specs_(std::move(specs)),
      dtype_([&] {
        std::vector<torch::Tensor> ps;
        for (const auto& p : module_->parameters()) ps.push_back(p);
        return sample_dtype(ps);
      }()),
      bank_([&] {
        int64_t n = 0;
        for (const auto& p : module_->parameters()) n += p.numel();
        for (const auto& b : module_->buffers())
          if (b.is_floating_point()) n += b.numel();
        return n;
      }(),
            dtype_) {
  WAVG_CHECK(module_ != nullptr, "ModelAverager: null module");
  for (const auto& item : module_->named_parameters()) {
    layout_.push_back({item.key(), total_numel(params_), item.value().numel()});
    params_.push_back(item.value());
  }
  param_numel_ = total_numel(params_);
  int64_t offset = param_numel_;
  for (const auto& item : module_->named_buffers()) {
    if (!item.value().is_floating_point()) continue;
    layout_.push_back({item.key(), offset, item.value().numel()});
    offset += item.value().numel();
    buffers_.push_back(item.value());
  }
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
  WAVG_CHECK(*swapped_ != -2, what, ": the optimizer's evaluation point is swapped into the model",
             why, "; end that swap first");
  WAVG_CHECK(*swapped_ < 0, what, ": averager '", bank_.name(*swapped_),
             "' is swapped into the model", why, "; end that swap first");
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
  swap.active_ = true;
  swap.swapped_ = swapped_;
  *swapped_ = -2;
  for (size_t k = 0; k < params_.size(); ++k) {
    WAVG_CHECK(values[k].sizes() == params_[k].sizes() &&
                   values[k].scalar_type() == params_[k].scalar_type() &&
                   values[k].device() == params_[k].device(),
               "swap_in_params: tensor for '", layout_[k].name, "' differs from the parameter");
    swap.targets_.push_back(params_[k]);
    swap.originals_.push_back(params_[k].data());
    const_cast<torch::Tensor&>(params_[k]).set_data(values[k].detach());
  }
  bool has_batchnorm = false;
  for_each_batchnorm(*module_, [&](auto&) { has_batchnorm = true; });
  if (forward && has_batchnorm) {
    for (const auto& b : module_->buffers()) {
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
  const AveragerSpec& spec = specs_.at(size_t(i));
  WAVG_CHECK(spec.buffers != BufferPolicy::kRecompute || forward != nullptr, "averager '",
             bank_.name(i), "': buffers = recompute needs training batches to run forward passes");
  const size_t esize = dtype_size(dtype_);
  eval_.resize(size_t(bank_.numel()) * esize);
  bank_.average(i, dtype_, eval_.data() + size_t(bank_.shard_offset()) * esize,
                profile);  // throws if empty
  if (gather_) gather_(eval_.data(), bank_.numel(), esize);  // the other processes' shards
  torch::NoGradGuard no_grad;
  EvalSwap swap;
  swap.active_ = true;
  swap.swapped_ = swapped_;
  *swapped_ = i;
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
    for (const auto& b : module_->buffers()) {
      swap.buffer_targets_.push_back(b);
      swap.saved_buffers_.push_back(b.clone());
    }
    recompute_batchnorm(spec.recompute_batches, forward);  // on a throw, `swap` restores all
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
      swapped_(std::move(o.swapped_)),
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
  if (swapped_) *swapped_ = -1;
}

void ModelAverager::save(int i, const std::string& path, const ForwardBatch& forward,
                         const std::map<std::string, std::string>& metadata, int profile) {
  WAVG_CHECK(i >= 0 && i < size(), "averager index ", i, " out of range [0, ", size(), ")");
  auto meta = metadata;
  meta["wavg.averager"] = describe(specs_.at(size_t(i)).averager);
  meta["wavg.buffers"] = buffer_policy_name(specs_.at(size_t(i)).buffers);
  meta["wavg.samples"] = std::to_string(bank().samples(i));
  if (*swapped_ == i && profile == 0) {  // the module holds averager i already
    save_module(*module_, path, meta);
    return;
  }
  check_no_swap("save(averager '" + bank_.name(i) + "')");
  EvalSwap swap = swap_in(i, forward, profile);
  save_module(*module_, path, meta);
}

void save_module(const torch::nn::Module& module, const std::string& path,
                 const std::map<std::string, std::string>& metadata) {
  std::vector<torch::Tensor> keep;  // contiguous CPU copies alive until written
  std::vector<TensorOut> outs;
  auto add = [&](const std::string& name, const torch::Tensor& t) {
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    keep.push_back(c);
    outs.push_back({name, to_dtype(c.scalar_type()), c.sizes().vec(), c.data_ptr()});
  };
  for (const auto& item : module.named_parameters()) add(item.key(), item.value());
  for (const auto& item : module.named_buffers()) add(item.key(), item.value());
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
