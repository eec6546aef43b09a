// Optimizers by name (NAdamW, AdamW, SGD with Nesterov momentum), all with decoupled weight decay
// scaled by the scheduled learning rate (DESIGN.md §3), and a step that applies the schedule and,
// if configured, clips the gradients by their global norm first.
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>
#include <string>
#include <vector>

#include "wavg/torch/optim_config.h"

namespace wavg {

class TrainOptimizer {
 public:
  TrainOptimizer(const OptimizerConfig& config, std::vector<torch::Tensor> params);
  // Sets the learning rate of every param group to `lr`, clips the gradients (clip_norm > 0) and
  // takes one step.
  void step(double lr);
  void zero_grad();
  torch::optim::Optimizer& torch_optimizer() { return *optimizer_; }
  const OptimizerConfig& config() const { return config_; }

 private:
  OptimizerConfig config_;
  std::vector<torch::Tensor> params_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
};

}  // namespace wavg
