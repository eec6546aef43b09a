// Schedule-Free AdamW (Defazio et al. 2024, "The Road Less Scheduled", arXiv:2405.15682; the
// `schedulefree` package's AdamWScheduleFree, facebookresearch/schedule_free,
// schedulefree/adamw_schedulefree_reference.py). The module's parameters hold y, where gradients
// are taken; the state holds z (the base iterate) and x (the running average that is evaluated).
// The formula is in schedule_free.cpp. Warmup comes from the learning rate given to each step (the
// run's constant schedule with warmup), which is the package's own warmup when they match.
#pragma once

#include <torch/optim/optimizer.h>
#include <torch/optim/serialize.h>

#include <tuple>
#include <vector>

namespace wavg {

struct ScheduleFreeAdamWOptions
    : public torch::optim::OptimizerCloneableOptions<ScheduleFreeAdamWOptions> {
  ScheduleFreeAdamWOptions(double lr = 2.5e-3);  // NOLINT: implicit like torch::optim::AdamWOptions
  TORCH_ARG(double, lr) = 2.5e-3;
  typedef std::tuple<double, double> betas_t;
  TORCH_ARG(betas_t, betas) = std::make_tuple(0.9, 0.999);  // β1: y's interpolation; β2: v
  TORCH_ARG(double, eps) = 1e-8;
  TORCH_ARG(double, weight_decay) = 0.0;  // decoupled, at y, scaled by the learning rate

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  double get_lr() const override { return lr(); }
  void set_lr(const double lr) override { this->lr(lr); }
};

// What is saved and resumed per parameter.
struct ScheduleFreeAdamWParamState
    : public torch::optim::OptimizerCloneableParamState<ScheduleFreeAdamWParamState> {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(double, weight_sum) = 0.0;  // Σ lr_max_i² over the steps taken
  TORCH_ARG(double, lr_max) = -1.0;     // the largest learning rate seen (-1: none yet)
  TORCH_ARG(torch::Tensor, z);          // base iterate, like the parameter
  TORCH_ARG(torch::Tensor, x);          // evaluation point, like the parameter
  TORCH_ARG(torch::Tensor, exp_avg_sq); // v, like the parameter

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
};

class ScheduleFreeAdamW : public torch::optim::Optimizer {
 public:
  explicit ScheduleFreeAdamW(std::vector<torch::optim::OptimizerParamGroup> param_groups,
                             ScheduleFreeAdamWOptions defaults = {});
  explicit ScheduleFreeAdamW(std::vector<torch::Tensor> params,
                             ScheduleFreeAdamWOptions defaults = {})
      : ScheduleFreeAdamW({torch::optim::OptimizerParamGroup(std::move(params))}, defaults) {}

  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

  // The evaluation point x of each of `params` (the tensor in the state, not a copy); a parameter
  // not stepped yet is its own x (x_0 = z_0 = y_0).
  std::vector<torch::Tensor> eval_params(const std::vector<torch::Tensor>& params) const;
};

}  // namespace wavg
