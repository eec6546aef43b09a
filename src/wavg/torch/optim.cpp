// Optimizer construction and the scheduled step (with gradient clipping by global norm).
#include "wavg/torch/optim.h"

#include <torch/torch.h>

#include <cmath>

#include "wavg/core/error.h"
#include "wavg/torch/nadamw.h"

namespace wavg {

void validate(const OptimizerConfig& c) {
  WAVG_CHECK(c.name == "nadamw" || c.name == "adamw" || c.name == "sgd",
             "optimizer: unknown name '", c.name, "' (expected nadamw, adamw or sgd)");
  WAVG_CHECK(std::isfinite(c.lr) && c.lr > 0, "optimizer: lr must be > 0, got ", c.lr);
  WAVG_CHECK(c.beta1 >= 0 && c.beta1 < 1, "optimizer: beta1 must be in [0, 1), got ", c.beta1);
  WAVG_CHECK(c.beta2 >= 0 && c.beta2 < 1, "optimizer: beta2 must be in [0, 1), got ", c.beta2);
  WAVG_CHECK(c.eps >= 0, "optimizer: eps must be >= 0, got ", c.eps);
  WAVG_CHECK(c.weight_decay >= 0, "optimizer: weight_decay must be >= 0, got ", c.weight_decay);
  WAVG_CHECK(std::isfinite(c.clip_norm) && c.clip_norm >= 0,
             "optimizer: clip_norm must be a finite number >= 0 (0: no clipping), got ", c.clip_norm);
}

TrainOptimizer::TrainOptimizer(const OptimizerConfig& c, std::vector<torch::Tensor> params)
    : config_(c), params_(params) {
  validate(c);
  if (c.name == "nadamw") {
    optimizer_ = std::make_unique<NAdamW>(
        params, NAdamWOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(c.weight_decay));
  } else if (c.name == "adamw") {
    optimizer_ = std::make_unique<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(
                    c.weight_decay));
  } else {
    // LibTorch's SGD couples weight decay to the gradient; decay is applied in step() instead.
    optimizer_ = std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(c.lr).momentum(c.beta1).nesterov(c.nesterov && c.beta1 > 0));
  }
}

void TrainOptimizer::step(double lr) {
  for (auto& group : optimizer_->param_groups()) group.options().set_lr(lr);
  // LibTorch 1.13's clip_grad_norm_: total = ‖(‖g_1‖₂, …, ‖g_k‖₂)‖₂, coef = c/(total + 1e-6),
  // gradients scaled by coef when coef < 1 (torch.nn.utils.clip_grad_norm_'s rule).
  if (config_.clip_norm > 0) torch::nn::utils::clip_grad_norm_(params_, config_.clip_norm);
  if (config_.name == "sgd" && config_.weight_decay > 0) {
    torch::NoGradGuard no_grad;
    for (auto& p : params_) p.mul_(1.0 - lr * config_.weight_decay);
  }
  optimizer_->step();
}

void TrainOptimizer::zero_grad() { optimizer_->zero_grad(); }

}  // namespace wavg
