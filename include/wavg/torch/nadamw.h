// NAdamW: AdamW with Nesterov momentum, exactly as AlgoPerf's reference submission
// (algorithmic-efficiency, prize_qualification_baselines/external_tuning/pytorch_nadamw_full_budget.py,
// `_single_tensor_nadamw`). For each parameter, with η the param group's current learning rate:
//   θ ← θ·(1 − η·λ)                                  (decoupled weight decay, scaled by η)
//   m ← β1·m + (1−β1)·g;   v ← β2·v + (1−β2)·g²
//   m̄ = β1·m + (1−β1)·g                              (the Nesterov look-ahead)
//   θ ← θ − η/(1−β1^t) · m̄ / ( sqrt(v)/sqrt(1−β2^t) + ε )
// Configured like LibTorch's own optimizers:
//   wavg::NAdamW opt(model->parameters(),
//                    wavg::NAdamWOptions(1e-3).betas(std::make_tuple(0.9, 0.999)).weight_decay(0.1));
#pragma once

#include <torch/optim/optimizer.h>
#include <torch/optim/serialize.h>

#include <tuple>
#include <vector>

namespace wavg {

struct NAdamWOptions : public torch::optim::OptimizerCloneableOptions<NAdamWOptions> {
  NAdamWOptions(double lr = 1e-3);  // NOLINT: implicit like torch::optim::AdamWOptions
  TORCH_ARG(double, lr) = 1e-3;
  typedef std::tuple<double, double> betas_t;
  TORCH_ARG(betas_t, betas) = std::make_tuple(0.9, 0.999);
  TORCH_ARG(double, eps) = 1e-8;
  TORCH_ARG(double, weight_decay) = 0.0;

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  double get_lr() const override { return lr(); }
  void set_lr(const double lr) override { this->lr(lr); }
};

// What is saved and resumed per parameter.
struct NAdamWParamState : public torch::optim::OptimizerCloneableParamState<NAdamWParamState> {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(torch::Tensor, exp_avg);     // m, like the parameter
  TORCH_ARG(torch::Tensor, exp_avg_sq);  // v, like the parameter

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
};

class NAdamW : public torch::optim::Optimizer {
 public:
  explicit NAdamW(std::vector<torch::optim::OptimizerParamGroup> param_groups,
                  NAdamWOptions defaults = {});
  explicit NAdamW(std::vector<torch::Tensor> params, NAdamWOptions defaults = {})
      : NAdamW({torch::optim::OptimizerParamGroup(std::move(params))}, defaults) {}

  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
};

}  // namespace wavg
