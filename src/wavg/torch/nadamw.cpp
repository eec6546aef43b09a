// NAdamW step: one fused pass per parameter for contiguous fp32 CPU tensors (the common case), and
// the same update in tensor ops for any other dtype or device.
#include "wavg/torch/nadamw.h"

#include <torch/torch.h>

#include <cmath>

#include "wavg/torch/optim_state.h"

namespace wavg {

NAdamWOptions::NAdamWOptions(double lr) : lr_(lr) {}

void NAdamWOptions::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(lr);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(betas);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(eps);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(weight_decay);
}

void NAdamWOptions::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, lr);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(betas_t, betas);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, eps);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, weight_decay);
}

void NAdamWParamState::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(step);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg_sq);
}

void NAdamWParamState::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, step);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg_sq);
}

NAdamW::NAdamW(std::vector<torch::optim::OptimizerParamGroup> param_groups,
               NAdamWOptions defaults)
    : Optimizer(std::move(param_groups), std::make_unique<NAdamWOptions>(defaults)) {
  detail::check_adam_options("nadamw", defaults);
}

torch::Tensor NAdamW::step(LossClosure closure) {
  torch::Tensor loss = detail::run_closure(closure);
  torch::NoGradGuard no_grad;
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const NAdamWOptions&>(group.options());
    const double lr = o.lr(), wd = o.weight_decay(), eps = o.eps();
    const auto [beta1, beta2] = o.betas();
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const torch::Tensor& grad = p.grad();
      TORCH_CHECK(!grad.is_sparse(), "nadamw does not support sparse gradients");
      const auto key = detail::optimizer_state_key<decltype(state_)::key_type>(p.unsafeGetTensorImpl());
      auto it = state_.find(key);
      if (it == state_.end()) {
        auto s = std::make_unique<NAdamWParamState>();
        s->step(0);
        s->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        s->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        it = state_.emplace(key, std::move(s)).first;
      }
      auto& s = static_cast<NAdamWParamState&>(*it->second);
      s.step(s.step() + 1);
      const double bc1 = 1.0 - std::pow(beta1, double(s.step()));
      const double bc2_sqrt = std::sqrt(1.0 - std::pow(beta2, double(s.step())));
      const double step_size = lr / bc1;
      torch::Tensor m = s.exp_avg(), v = s.exp_avg_sq();
      const bool fused = p.device().is_cpu() && p.scalar_type() == torch::kFloat &&
                         p.is_contiguous() && grad.is_contiguous() && m.is_contiguous() &&
                         v.is_contiguous() && grad.scalar_type() == torch::kFloat;
      if (fused) {
        float* __restrict th = p.data_ptr<float>();
        const float* __restrict g = grad.data_ptr<float>();
        float* __restrict mp = m.data_ptr<float>();
        float* __restrict vp = v.data_ptr<float>();
        const float decay = float(1.0 - lr * wd), b1 = float(beta1), b2 = float(beta2);
        const float a1 = float(1.0 - beta1), a2 = float(1.0 - beta2);
        const float inv_bc2 = float(1.0 / bc2_sqrt), e = float(eps), ss = float(step_size);
        const int64_t n = p.numel();
        at::parallel_for(0, n, 1 << 15, [&](int64_t b, int64_t end) {
          for (int64_t i = b; i < end; ++i) {
            const float gi = g[i];
            const float mi = b1 * mp[i] + a1 * gi;
            const float vi = b2 * vp[i] + a2 * gi * gi;
            mp[i] = mi;
            vp[i] = vi;
            const float nesterov = b1 * mi + a1 * gi;
            th[i] = th[i] * decay - ss * nesterov / (std::sqrt(vi) * inv_bc2 + e);
          }
        });
      } else {
        p.mul_(1.0 - lr * wd);
        m.mul_(beta1).add_(grad, 1.0 - beta1);
        v.mul_(beta2).addcmul_(grad, grad, 1.0 - beta2);
        const torch::Tensor nesterov = m.mul(beta1).add_(grad, 1.0 - beta1);
        const torch::Tensor denom = (v.sqrt() / bc2_sqrt).add_(eps);
        p.addcdiv_(nesterov, denom, -step_size);
      }
    }
  }
  return loss;
}

void NAdamW::save(torch::serialize::OutputArchive& archive) const {
  torch::optim::serialize<NAdamWParamState, NAdamWOptions>(archive, *this);
}

void NAdamW::load(torch::serialize::InputArchive& archive) {
  torch::optim::serialize<NAdamWParamState, NAdamWOptions>(archive, *this);
}

}  // namespace wavg
