// Optimizers by name (NAdamW, AdamW, SGD with Nesterov momentum, Shampoo, Schedule-Free AdamW),
// all with decoupled weight decay scaled by the scheduled learning rate (DESIGN.md §3), optionally
// inside Lookahead, and a step that applies the schedule and, if configured, clips the gradients by
// their global norm first.
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
  // What is saved and restored with a run's state (with Lookahead: the wrapper, which holds the
  // inner optimizer's state too).
  torch::optim::Optimizer& torch_optimizer() { return *optimizer_; }
  const OptimizerConfig& config() const { return config_; }

  // Whether the point to evaluate differs from the parameters being trained (Schedule-Free: x).
  bool has_eval_point() const;
  // The point to evaluate, one tensor per parameter in the constructor's order: Schedule-Free's x
  // (tensors of its state: read, do not write), otherwise the parameters themselves.
  std::vector<torch::Tensor> eval_params() const;

 private:
  OptimizerConfig config_;
  std::vector<torch::Tensor> params_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  torch::optim::Optimizer* inner_ = nullptr;  // the optimizer Lookahead wraps, else optimizer_
};

}  // namespace wavg
