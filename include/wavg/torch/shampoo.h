// Shampoo in the manner of the AlgoPerf v0.5 winning submission: Distributed Shampoo (Shi et al.
// 2023, "A Distributed Data-Parallel PyTorch Implementation of the Distributed Shampoo Optimizer
// for Training Neural Networks At-Scale", arXiv:2309.06497; facebookresearch/optimizers,
// distributed_shampoo/distributed_shampoo.py and preconditioner/shampoo_preconditioner_list.py),
// with AdamW grafting and decoupled weight decay. The formula is in shampoo.cpp.
//   wavg::Shampoo opt(model->parameters(),
//                     wavg::ShampooOptions(1e-3).block_size(1024).precondition_frequency(20));
#pragma once

#include <torch/optim/optimizer.h>
#include <torch/optim/serialize.h>

#include <tuple>
#include <vector>

namespace wavg {

struct ShampooOptions : public torch::optim::OptimizerCloneableOptions<ShampooOptions> {
  ShampooOptions(double lr = 1e-3);  // NOLINT: implicit like torch::optim::AdamWOptions
  TORCH_ARG(double, lr) = 1e-3;
  typedef std::tuple<double, double> betas_t;
  TORCH_ARG(betas_t, betas) = std::make_tuple(0.9, 0.999);  // first moment; factors and grafting
  TORCH_ARG(double, eps) = 1e-8;                // AdamW grafting's ε
  TORCH_ARG(double, weight_decay) = 0.0;        // decoupled, scaled by the learning rate
  TORCH_ARG(int64_t, block_size) = 1024;        // max_preconditioner_dim
  TORCH_ARG(int64_t, precondition_frequency) = 20;  // steps between inverse roots
  TORCH_ARG(int64_t, start_step) = 20;          // start_preconditioning_step
  TORCH_ARG(double, shampoo_eps) = 1e-12;       // ε·I added to each factor before its root

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  double get_lr() const override { return lr(); }
  void set_lr(const double lr) override { this->lr(lr); }
};

// What is saved and resumed per parameter. factors and roots hold, block by block (row-major
// over the blocks) and dimension by dimension within a block, the Kronecker factor of that
// dimension (d_i × d_i) and its inverse root; a 1-D block (a bias, a norm's scale, a small matrix
// merged to one dimension) has one, of d × d, as in Distributed Shampoo.
struct ShampooParamState : public torch::optim::OptimizerCloneableParamState<ShampooParamState> {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(torch::Tensor, exp_avg);     // m, like the parameter
  TORCH_ARG(torch::Tensor, exp_avg_sq);  // v (grafting), like the parameter
  TORCH_ARG(std::vector<torch::Tensor>, factors);
  TORCH_ARG(std::vector<torch::Tensor>, roots);

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
};

class Shampoo : public torch::optim::Optimizer {
 public:
  explicit Shampoo(std::vector<torch::optim::OptimizerParamGroup> param_groups,
                   ShampooOptions defaults = {});
  explicit Shampoo(std::vector<torch::Tensor> params, ShampooOptions defaults = {})
      : Shampoo({torch::optim::OptimizerParamGroup(std::move(params))}, defaults) {}

  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
};

// The shape Shampoo preconditions a parameter of `shape` as: dimensions of size 1 dropped, then
// neighbours merged from the last dimension to the first while their product stays <= block_size
// (Distributed Shampoo's merge_small_dims, target dimensionality 1): {1} when every dimension is 1
// (or there is none), {0} for an empty tensor.
std::vector<int64_t> shampoo_merged_shape(const std::vector<int64_t>& shape, int64_t block_size);

}  // namespace wavg
