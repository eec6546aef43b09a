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
