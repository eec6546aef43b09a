// Optimizer construction and the scheduled step (with gradient clipping by global norm).
#include "wavg/torch/optim.h"

#include <torch/torch.h>

#include <cmath>

#include "wavg/core/error.h"
#include "wavg/torch/lookahead.h"
#include "wavg/torch/nadamw.h"
#include "wavg/torch/schedule_free.h"
#include "wavg/torch/shampoo.h"

namespace wavg {

void validate(const OptimizerConfig& c) {
  WAVG_CHECK(c.name == "nadamw" || c.name == "adamw" || c.name == "sgd" || c.name == "shampoo" ||
                 c.name == "schedule_free_adamw",
             "optimizer: unknown name '", c.name,
             "' (expected nadamw, adamw, sgd, shampoo or schedule_free_adamw)");
  WAVG_CHECK(std::isfinite(c.lr) && c.lr > 0, "optimizer: lr must be > 0, got ", c.lr);
  WAVG_CHECK(c.beta1 >= 0 && c.beta1 < 1, "optimizer: beta1 must be in [0, 1), got ", c.beta1);
  WAVG_CHECK(c.beta2 >= 0 && c.beta2 < 1, "optimizer: beta2 must be in [0, 1), got ", c.beta2);
  WAVG_CHECK(c.eps >= 0, "optimizer: eps must be >= 0, got ", c.eps);
  WAVG_CHECK(c.weight_decay >= 0, "optimizer: weight_decay must be >= 0, got ", c.weight_decay);
  WAVG_CHECK(std::isfinite(c.clip_norm) && c.clip_norm >= 0,
             "optimizer: clip_norm must be a finite number >= 0 (0: no clipping), got ", c.clip_norm);
  WAVG_CHECK(c.shampoo_block_size >= 2, "optimizer: shampoo_block_size must be >= 2, got ",
             c.shampoo_block_size);
  WAVG_CHECK(c.shampoo_precondition_frequency >= 1,
             "optimizer: shampoo_precondition_frequency must be >= 1 (steps), got ",
             c.shampoo_precondition_frequency);
  WAVG_CHECK(c.shampoo_start_step >= 1, "optimizer: shampoo_start_step must be >= 1, got ",
             c.shampoo_start_step);
  WAVG_CHECK(std::isfinite(c.shampoo_eps) && c.shampoo_eps > 0,
             "optimizer: shampoo_eps must be a finite number > 0, got ", c.shampoo_eps);
  WAVG_CHECK(c.schedule_free_bn_batches >= 1,
             "optimizer: schedule_free_bn_batches must be >= 1, got ", c.schedule_free_bn_batches);
  WAVG_CHECK(c.lookahead_k >= 0, "optimizer: lookahead_k must be >= 0 (0: off), got ",
             c.lookahead_k);
  WAVG_CHECK(std::isfinite(c.lookahead_alpha) && c.lookahead_alpha > 0 && c.lookahead_alpha <= 1,
             "optimizer: lookahead_alpha must be in (0, 1], got ", c.lookahead_alpha);
  // Resetting y to the slow weights would leave Schedule-Free's z and x behind.
  WAVG_CHECK(c.lookahead_k == 0 || c.name != "schedule_free_adamw",
             "optimizer: lookahead_k = ", c.lookahead_k,
             ": Lookahead cannot wrap schedule_free_adamw (its y is tied to its z and x)");
}

namespace {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerConfig& c,
                                                        const std::vector<torch::Tensor>& params) {
  const std::tuple<double, double> betas = {c.beta1, c.beta2};
  if (c.name == "nadamw")
    return std::make_unique<NAdamW>(
        params, NAdamWOptions(c.lr).betas(betas).eps(c.eps).weight_decay(c.weight_decay));
  if (c.name == "adamw")
    return std::make_unique<torch::optim::AdamW>(
        params,
        torch::optim::AdamWOptions(c.lr).betas(betas).eps(c.eps).weight_decay(c.weight_decay));
  if (c.name == "shampoo")
    return std::make_unique<Shampoo>(params, ShampooOptions(c.lr)
                                                 .betas(betas)
                                                 .eps(c.eps)
                                                 .weight_decay(c.weight_decay)
                                                 .block_size(c.shampoo_block_size)
                                                 .precondition_frequency(c.shampoo_precondition_frequency)
                                                 .start_step(c.shampoo_start_step)
                                                 .shampoo_eps(c.shampoo_eps));
  if (c.name == "schedule_free_adamw")
    return std::make_unique<ScheduleFreeAdamW>(
        params, ScheduleFreeAdamWOptions(c.lr).betas(betas).eps(c.eps).weight_decay(c.weight_decay));
  // LibTorch's SGD couples weight decay to the gradient; decay is applied in step() instead.
  return std::make_unique<torch::optim::SGD>(
      params, torch::optim::SGDOptions(c.lr).momentum(c.beta1).nesterov(c.nesterov && c.beta1 > 0));
}

}  // namespace

TrainOptimizer::TrainOptimizer(const OptimizerConfig& c, std::vector<torch::Tensor> params)
    : config_(c), params_(params) {
  validate(c);
  optimizer_ = make_optimizer(c, params);
  inner_ = optimizer_.get();
  if (c.lookahead_k > 0)
    optimizer_ = std::make_unique<Lookahead>(params, std::move(optimizer_), c.lookahead_k,
                                             c.lookahead_alpha);
}

void TrainOptimizer::step(double lr) {
  for (auto& group : inner_->param_groups()) group.options().set_lr(lr);
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

bool TrainOptimizer::has_eval_point() const { return config_.name == "schedule_free_adamw"; }

std::vector<torch::Tensor> TrainOptimizer::eval_params() const {
  if (auto* sf = dynamic_cast<const ScheduleFreeAdamW*>(inner_)) return sf->eval_params(params_);
  return params_;
}

}  // namespace wavg
