// Shampoo with blocked Kronecker factors, inverse roots by fp64 eigendecomposition, AdamW grafting
// and decoupled weight decay, following Distributed Shampoo (Shi et al. 2023, arXiv:2309.06497;
// facebookresearch/optimizers: distributed_shampoo.py `_compute_search_directions`,
// shampoo_preconditioner_list.py, matrix_functions.py `matrix_inverse_root`), the optimizer of the
// AlgoPerf v0.5 winning submission; tests/data/shampoo_reference.json holds its trajectories at a
// pinned commit (tests/gen_shampoo_reference.py has the option mapping). For each parameter, at
// step t with learning rate η:
//   G: the gradient reshaped to its merged shape (shampoo_merged_shape: never fewer than one
//      dimension) and cut into blocks of at most block_size per dimension (multi_dim_split); a
//      block of order k has one factor per dimension, a 1-D block one (d × d, full-matrix).
//   F_i ← β2·F_i + (1−β2)·G ×_{all dims but i} G                       (each block, each dim i)
//   when t = S, or t > S and t mod f = 0 (S: start_step, f: precondition_frequency):
//      F̂_i = F_i / (1−β2^t);  F̂_i = Q diag(λ) Qᵀ (symmetric eigendecomposition in fp64);
//      λ ← λ − min(min λ, 0) + ε_shampoo;  R_i = Q diag(λ^(−1/(2k))) Qᵀ   (k = 2: the 4th root)
//   m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  m̂ = m/(1−β1^t)       (β3 = β1, bias-corrected)
//   A = m̂ / (sqrt(v/(1−β2^t)) + ε)                                     (AdamW grafting direction)
//   P = A                                                               if t < S
//   P_b = m̂_b ×_0 R_1 ×_0 … ×_0 R_k,  P_b ← P_b·‖A_b‖/(‖P_b‖ + 1e-16)  (per block b, otherwise)
//   θ ← θ·(1 − η·λ) − η·P                                              (decoupled weight decay)
// Factors and roots are kept in the parameter's dtype (Distributed Shampoo's default factor dtype
// for fp32 models); only the eigendecomposition runs in fp64.
#include "wavg/torch/shampoo.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "wavg/torch/optim_state.h"

namespace wavg {

ShampooOptions::ShampooOptions(double lr) : lr_(lr) {}

void ShampooOptions::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(lr);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(betas);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(eps);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(weight_decay);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(block_size);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(precondition_frequency);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(start_step);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(shampoo_eps);
}

void ShampooOptions::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, lr);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(betas_t, betas);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, eps);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, weight_decay);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, block_size);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, precondition_frequency);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, start_step);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, shampoo_eps);
}

namespace {

void write_list(torch::serialize::OutputArchive& archive, const std::string& name,
                const std::vector<torch::Tensor>& list) {
  archive.write(name + "_count", c10::IValue(int64_t(list.size())));
  for (size_t i = 0; i < list.size(); ++i) archive.write(name + "_" + std::to_string(i), list[i]);
}

std::vector<torch::Tensor> read_list(torch::serialize::InputArchive& archive,
                                     const std::string& name) {
  c10::IValue count;
  archive.read(name + "_count", count);
  std::vector<torch::Tensor> list(size_t(count.toInt()));
  for (size_t i = 0; i < list.size(); ++i) archive.read(name + "_" + std::to_string(i), list[i]);
  return list;
}

}  // namespace

void ShampooParamState::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(step);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg_sq);
  write_list(archive, "factors", factors());
  write_list(archive, "roots", roots());
}

void ShampooParamState::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, step);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg_sq);
  factors(read_list(archive, "factors"));
  roots(read_list(archive, "roots"));
}

std::vector<int64_t> shampoo_merged_shape(const std::vector<int64_t>& shape, int64_t block_size) {
  if (std::find(shape.begin(), shape.end(), int64_t(0)) != shape.end()) return {0};
  std::vector<int64_t> merged;  // from the last dimension to the first, as merge_small_dims
  for (auto d = shape.rbegin(); d != shape.rend(); ++d) {
    if (*d == 1) continue;
    if (!merged.empty() && merged.back() <= block_size / *d)  // merged.back() * *d <= block_size
      merged.back() *= *d;
    else
      merged.push_back(*d);
  }
  if (merged.empty()) return {1};
  std::reverse(merged.begin(), merged.end());
  return merged;
}

namespace {

// One block of a parameter's merged shape: its first index and length in each dimension.
struct Block {
  std::vector<int64_t> start, length;
};

// Distributed Shampoo's multi_dim_split: each dimension cut into pieces of block_size (the last
// one shorter), blocks in row-major order over the pieces.
std::vector<Block> blocks_of(const std::vector<int64_t>& merged, int64_t block_size) {
  std::vector<Block> blocks = {Block{}};
  for (int64_t d : merged) {
    std::vector<Block> next;
    for (const Block& b : blocks)
      for (int64_t s = 0; s < d; s += block_size) {
        Block n = b;
        n.start.push_back(s);
        n.length.push_back(std::min(block_size, d - s));
        next.push_back(std::move(n));
      }
    blocks = std::move(next);
  }
  return blocks;
}

torch::Tensor block_view(const torch::Tensor& merged, const Block& b) {
  torch::Tensor v = merged;
  for (size_t d = 0; d < b.start.size(); ++d) v = v.narrow(int64_t(d), b.start[d], b.length[d]);
  return v;
}

// G contracted with itself over every dimension but i: the (d_i × d_i) outer product.
torch::Tensor outer_product(const torch::Tensor& g, int64_t i) {
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < g.dim(); ++d)
    if (d != i) dims.push_back(d);
  return torch::tensordot(g, g, dims, dims);
}

// (F / bias_correction + ε·I)^(−1/root) by eigendecomposition in fp64, negative eigenvalues
// shifted to 0 first (matrix_functions.py, `_matrix_inverse_root_eigen`).
torch::Tensor inverse_root(const torch::Tensor& factor, double bias_correction, double eps,
                           double root) {
  const torch::Tensor a = factor.to(torch::kDouble) / bias_correction;
  auto [lambda, q] = at::linalg_eigh(a, "L");  // ATen op: LibTorch 2.x has no torch::linalg
  const double lambda_min = lambda.min().item<double>();
  lambda = lambda - std::min(lambda_min, 0.0) + eps;
  const torch::Tensor r = torch::matmul(q * lambda.pow(-1.0 / root).unsqueeze(0), q.t());
  return r.to(factor.scalar_type());
}

// A new parameter's state: zero moments, zero factors and roots for each block and dimension.
std::unique_ptr<ShampooParamState> new_state(const torch::Tensor& p,
                                             const std::vector<Block>& blocks) {
  auto s = std::make_unique<ShampooParamState>();
  s->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
  s->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
  std::vector<torch::Tensor> factors, roots;
  for (const Block& b : blocks)
    for (int64_t d : b.length) {
      factors.push_back(torch::zeros({d, d}, p.options()));
      roots.push_back(torch::zeros({d, d}, p.options()));
    }
  s->factors(std::move(factors));
  s->roots(std::move(roots));
  return s;
}

// A state (resumed, or made by new_state) that fits the parameter and its blocks: one factor and
// one root of d×d for each block and each dimension d of it, moments of the parameter's shape.
void check_state(const ShampooParamState& s, const torch::Tensor& p,
                 const std::vector<Block>& blocks) {
  TORCH_CHECK(s.exp_avg().sizes() == p.sizes() && s.exp_avg_sq().sizes() == p.sizes(),
              "shampoo: the state's moments have shape ", s.exp_avg().sizes(), ", the parameter ",
              p.sizes());
  std::vector<int64_t> dims;  // of every factor, in the state's order
  for (const Block& b : blocks) dims.insert(dims.end(), b.length.begin(), b.length.end());
  TORCH_CHECK(s.factors().size() == dims.size() && s.roots().size() == dims.size(),
              "shampoo: the state of a parameter of shape ", p.sizes(), " holds ",
              s.factors().size(), " factors, its blocks need ", dims.size(),
              " (a state saved before 1-D blocks were preconditioned?)");
  for (size_t f = 0; f < dims.size(); ++f)
    TORCH_CHECK(s.factors()[f].sizes() == torch::IntArrayRef({dims[f], dims[f]}) &&
                    s.roots()[f].sizes() == torch::IntArrayRef({dims[f], dims[f]}),
                "shampoo: factor ", f, " of a parameter of shape ", p.sizes(), " has shape ",
                s.factors()[f].sizes(), ", its block needs ", dims[f], "x", dims[f]);
}

// F_i ← β2·F_i + (1−β2)·G ×_{¬i} G for every block and dimension; their inverse roots when `due`.
void update_factors(ShampooParamState& s, const torch::Tensor& g, const std::vector<Block>& blocks,
                    const ShampooOptions& o, bool due) {
  const double beta2 = std::get<1>(o.betas());
  const double bc2 = 1.0 - std::pow(beta2, double(s.step()));
  size_t f = 0;
  for (const Block& b : blocks) {
    const torch::Tensor gb = block_view(g, b);
    for (int64_t i = 0; i < gb.dim(); ++i, ++f) {
      s.factors()[f].mul_(beta2).add_(outer_product(gb, i), 1.0 - beta2);
      if (due)
        s.roots()[f] = inverse_root(s.factors()[f], bc2, o.shampoo_eps(), 2.0 * double(gb.dim()));
    }
  }
}

// Shampoo's direction R-multiplied block by block, each block scaled to the norm of the grafting
// direction `graft` there.
torch::Tensor shampoo_direction(const ShampooParamState& s, const torch::Tensor& m_hat,
                                const torch::Tensor& graft, const std::vector<int64_t>& merged,
                                const std::vector<Block>& blocks) {
  const torch::Tensor mh = m_hat.view(merged), a = graft.view(merged);
  torch::Tensor out = torch::empty_like(mh);
  size_t f = 0;
  for (const Block& b : blocks) {
    torch::Tensor x = block_view(mh, b);
    for (int64_t i = 0; i < x.dim(); ++i, ++f) x = torch::tensordot(x, s.roots()[f], {0}, {0});
    const torch::Tensor scale = block_view(a, b).norm() / (x.norm() + 1e-16);
    block_view(out, b).copy_(x * scale);
  }
  return out.view(m_hat.sizes());
}

}  // namespace

Shampoo::Shampoo(std::vector<torch::optim::OptimizerParamGroup> param_groups,
                 ShampooOptions defaults)
    : Optimizer(std::move(param_groups), std::make_unique<ShampooOptions>(defaults)) {
  detail::check_adam_options("shampoo", defaults);
  for (auto [key, v] : {std::pair{"shampoo_block_size", double(defaults.block_size())},
                        std::pair{"shampoo_precondition_frequency", double(defaults.precondition_frequency())},
                        std::pair{"shampoo_start_step", double(defaults.start_step())},
                        std::pair{"shampoo_eps", defaults.shampoo_eps()}}) {
    const std::string what = out_of_range(key, v);
    TORCH_CHECK(what.empty(), "shampoo: ", key, " ", what);
  }
}

torch::Tensor Shampoo::step(LossClosure closure) {
  torch::Tensor loss = detail::run_closure(closure);
  torch::NoGradGuard no_grad;
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const ShampooOptions&>(group.options());
    const auto [beta1, beta2] = o.betas();
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const torch::Tensor& grad = p.grad();
      TORCH_CHECK(!grad.is_sparse(), "shampoo does not support sparse gradients");
      const std::vector<int64_t> merged = shampoo_merged_shape(p.sizes().vec(), o.block_size());
      const std::vector<Block> blocks = blocks_of(merged, o.block_size());
      const auto key =
          detail::optimizer_state_key<decltype(state_)::key_type>(p.unsafeGetTensorImpl());
      auto it = state_.find(key);
      if (it == state_.end()) it = state_.emplace(key, new_state(p, blocks)).first;
      auto& s = static_cast<ShampooParamState&>(*it->second);
      check_state(s, p, blocks);
      s.step(s.step() + 1);
      const int64_t t = s.step();
      const bool due =
          t == o.start_step() || (t > o.start_step() && t % o.precondition_frequency() == 0);
      update_factors(s, grad.contiguous().view(merged), blocks, o, due);
      // Moments and the AdamW grafting direction.
      torch::Tensor m = s.exp_avg(), v = s.exp_avg_sq();
      m.mul_(beta1).add_(grad, 1.0 - beta1);
      v.mul_(beta2).addcmul_(grad, grad, 1.0 - beta2);
      const torch::Tensor m_hat = m / (1.0 - std::pow(beta1, double(t)));
      const double bc2 = 1.0 - std::pow(beta2, double(t));
      torch::Tensor direction = m_hat / ((v / bc2).sqrt_().add_(o.eps()));
      if (!blocks.empty() && t >= o.start_step())
        direction = shampoo_direction(s, m_hat, direction, merged, blocks);
      p.mul_(1.0 - o.lr() * o.weight_decay());
      p.add_(direction, -o.lr());
    }
  }
  return loss;
}

void Shampoo::save(torch::serialize::OutputArchive& archive) const {
  torch::optim::serialize<ShampooParamState, ShampooOptions>(archive, *this);
}

void Shampoo::load(torch::serialize::InputArchive& archive) {
  torch::optim::serialize<ShampooParamState, ShampooOptions>(archive, *this);
}

}  // namespace wavg
