// Schedule-Free AdamW step, transcribed from the `schedulefree` package's reference version
// (schedulefree/adamw_schedulefree_reference.py, AdamWScheduleFreeReference.step, with r = 0,
// weight_lr_power = 2, no inner momentum). Defazio et al. 2024, Algorithm 1 with Adam's
// normalisation. At step t (k = t − 1 steps before it) with learning rate η_t (warmup included):
//   lr_max ← max(lr_max, η_t);  w_t = lr_max²;  c_t = w_t / Σ_{i≤t} w_i      (lr²-weighted average)
//   z ← z − η_t·λ·y                                                        (weight decay at y)
//   v ← β2·v + (1−β2)·g²;   z ← z − η_t · g / ( sqrt(v/(1−β2^t)) + ε )
//   x ← (1 − c_t)·x + c_t·z                                                 (x: evaluated)
//   y ← (1 − β1)·z + β1·x                                                   (y: gradients taken)
// with z_0 = x_0 = y_0 = θ_0 and g the gradient at y.
#include "wavg/torch/schedule_free.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "wavg/torch/optim_state.h"

namespace wavg {

ScheduleFreeAdamWOptions::ScheduleFreeAdamWOptions(double lr) : lr_(lr) {}

void ScheduleFreeAdamWOptions::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(lr);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(betas);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(eps);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(weight_decay);
}

void ScheduleFreeAdamWOptions::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, lr);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(betas_t, betas);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, eps);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, weight_decay);
}

void ScheduleFreeAdamWParamState::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(step);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(weight_sum);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(lr_max);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(z);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(x);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg_sq);
}

void ScheduleFreeAdamWParamState::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, step);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, weight_sum);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, lr_max);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, z);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, x);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg_sq);
}

ScheduleFreeAdamW::ScheduleFreeAdamW(std::vector<torch::optim::OptimizerParamGroup> param_groups,
                                     ScheduleFreeAdamWOptions defaults)
    : Optimizer(std::move(param_groups), std::make_unique<ScheduleFreeAdamWOptions>(defaults)) {
  detail::check_adam_options("schedule_free_adamw", defaults);
}

torch::Tensor ScheduleFreeAdamW::step(LossClosure closure) {
  torch::Tensor loss = detail::run_closure(closure);
  torch::NoGradGuard no_grad;
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const ScheduleFreeAdamWOptions&>(group.options());
    const double lr = o.lr();
    const auto [beta1, beta2] = o.betas();
    for (auto& y : group.params()) {
      if (!y.grad().defined()) continue;
      const torch::Tensor& grad = y.grad();
      TORCH_CHECK(!grad.is_sparse(), "schedule_free_adamw does not support sparse gradients");
      const auto key = detail::optimizer_state_key<decltype(state_)::key_type>(y.unsafeGetTensorImpl());
      auto it = state_.find(key);
      if (it == state_.end()) {
        auto s = std::make_unique<ScheduleFreeAdamWParamState>();
        s->z(y.clone());
        s->x(y.clone());
        s->exp_avg_sq(torch::zeros_like(y, torch::MemoryFormat::Preserve));
        it = state_.emplace(key, std::move(s)).first;
      }
      auto& s = static_cast<ScheduleFreeAdamWParamState&>(*it->second);
      s.step(s.step() + 1);
      s.lr_max(std::max(s.lr_max(), lr));
      const double weight = s.lr_max() * s.lr_max();
      s.weight_sum(s.weight_sum() + weight);
      const double c = s.weight_sum() > 0 ? weight / s.weight_sum() : 0.0;
      const double bc2 = 1.0 - std::pow(beta2, double(s.step()));
      torch::Tensor z = s.z(), x = s.x(), v = s.exp_avg_sq();
      if (o.weight_decay() != 0) z.sub_(y, lr * o.weight_decay());
      v.mul_(beta2).addcmul_(grad, grad, 1.0 - beta2);
      z.addcdiv_(grad, (v / bc2).sqrt_().add_(o.eps()), -lr);
      x.mul_(1.0 - c).add_(z, c);
      y.copy_(x * beta1 + z * (1.0 - beta1));
    }
  }
  return loss;
}

std::vector<torch::Tensor> ScheduleFreeAdamW::eval_params(
    const std::vector<torch::Tensor>& params) const {
  std::vector<torch::Tensor> out;
  for (const auto& p : params) {
    const auto key = detail::optimizer_state_key<decltype(state_)::key_type>(p.unsafeGetTensorImpl());
    auto it = state_.find(key);
    out.push_back(it == state_.end() ? p
                                     : static_cast<const ScheduleFreeAdamWParamState&>(*it->second).x());
  }
  return out;
}

void ScheduleFreeAdamW::save(torch::serialize::OutputArchive& archive) const {
  torch::optim::serialize<ScheduleFreeAdamWParamState, ScheduleFreeAdamWOptions>(archive, *this);
}

void ScheduleFreeAdamW::load(torch::serialize::InputArchive& archive) {
  torch::optim::serialize<ScheduleFreeAdamWParamState, ScheduleFreeAdamWOptions>(archive, *this);
}

}  // namespace wavg
