// Lookahead (Zhang, Lucas, Hinton & Ba 2019, "Lookahead Optimizer: k steps forward, 1 step back",
// arXiv:1907.08610, Algorithm 1) around any LibTorch optimizer. Unlike the averagers (DESIGN.md
// §2) it feeds back into training: the inner ("fast") optimizer moves the parameters θ; after
// every k of its steps,
//   φ ← φ + α·(θ − φ);   θ ← φ
// with the slow weights φ_0 = θ_0. The inner optimizer's own state (moments) carries on across the
// synchronisations, as in the paper's experiments.
//   wavg::Lookahead opt(params, std::make_unique<wavg::NAdamW>(params), /*k=*/5, /*alpha=*/0.5);
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>
#include <vector>

namespace wavg {

struct LookaheadOptions : public torch::optim::OptimizerCloneableOptions<LookaheadOptions> {
  LookaheadOptions(int64_t k = 5, double alpha = 0.5) : k_(k), alpha_(alpha) {}  // NOLINT
  TORCH_ARG(int64_t, k) = 5;        // inner steps between synchronisations
  TORCH_ARG(double, alpha) = 0.5;   // slow step size, in (0, 1]
};

class Lookahead : public torch::optim::Optimizer {
 public:
  Lookahead(std::vector<torch::Tensor> params, std::unique_ptr<torch::optim::Optimizer> inner,
            int64_t k, double alpha);

  torch::Tensor step(LossClosure closure = nullptr) override;
  // The inner optimizer's state, the slow weights and the step counter.
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

  torch::optim::Optimizer& inner() { return *inner_; }
  const std::vector<torch::Tensor>& slow() const { return slow_; }
  int64_t steps() const { return steps_; }

 private:
  std::unique_ptr<torch::optim::Optimizer> inner_;
  std::vector<torch::Tensor> params_;
  std::vector<torch::Tensor> slow_;  // φ, like the parameters
  int64_t steps_ = 0;                // inner steps taken
  int64_t k_;
  double alpha_;
};

}  // namespace wavg
