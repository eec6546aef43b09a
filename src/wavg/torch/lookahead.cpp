// Lookahead's step and its saved state (lookahead.h).
#include "wavg/torch/lookahead.h"

#include <torch/torch.h>

#include <string>

namespace wavg {

Lookahead::Lookahead(std::vector<torch::Tensor> params,
                     std::unique_ptr<torch::optim::Optimizer> inner, int64_t k, double alpha)
    : Optimizer({torch::optim::OptimizerParamGroup(params)},
                std::make_unique<LookaheadOptions>(k, alpha)),
      inner_(std::move(inner)),
      params_(std::move(params)),
      k_(k),
      alpha_(alpha) {
  TORCH_CHECK(inner_ != nullptr, "lookahead: no inner optimizer");
  TORCH_CHECK(k >= 1, "lookahead: k must be >= 1, got ", k);
  TORCH_CHECK(alpha > 0 && alpha <= 1, "lookahead: alpha must be in (0, 1], got ", alpha);
  torch::NoGradGuard no_grad;
  for (const auto& p : params_) slow_.push_back(p.detach().clone());
}

torch::Tensor Lookahead::step(LossClosure closure) {
  torch::Tensor loss = inner_->step(std::move(closure));
  ++steps_;
  if (steps_ % k_ != 0) return loss;
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    slow_[i].add_(params_[i] - slow_[i], alpha_);
    params_[i].copy_(slow_[i]);
  }
  return loss;
}

void Lookahead::save(torch::serialize::OutputArchive& archive) const {
  torch::serialize::OutputArchive inner(archive.compilation_unit());
  inner_->save(inner);
  archive.write("inner", inner);
  archive.write("lookahead_steps", c10::IValue(steps_));
  archive.write("lookahead_k", c10::IValue(k_));
  for (size_t i = 0; i < slow_.size(); ++i) archive.write("slow_" + std::to_string(i), slow_[i]);
}

void Lookahead::load(torch::serialize::InputArchive& archive) {
  torch::serialize::InputArchive inner;
  archive.read("inner", inner);
  inner_->load(inner);
  c10::IValue steps, k;
  archive.read("lookahead_steps", steps);
  archive.read("lookahead_k", k);
  TORCH_CHECK(k.toInt() == k_, "lookahead: the saved state has k = ", k.toInt(), ", not ", k_);
  steps_ = steps.toInt();
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < slow_.size(); ++i) {
    torch::Tensor t;
    archive.read("slow_" + std::to_string(i), t);
    TORCH_CHECK(t.sizes() == slow_[i].sizes(), "lookahead: slow weight ", i, " has another shape");
    slow_[i].copy_(t);
  }
}

}  // namespace wavg
