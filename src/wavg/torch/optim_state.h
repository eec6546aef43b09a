// Internal helpers shared by wavg's LibTorch optimizers (not installed): the key of a parameter's
// state in torch::optim::Optimizer::state_, the Adam family's option checks, the closure prologue.
#pragma once

#include <c10/core/TensorImpl.h>
#include <torch/optim/optimizer.h>

#include <sstream>
#include <string>
#include <type_traits>

namespace wavg::detail {

// A parameter's key in Optimizer::state_ (and in saved optimizer states): its TensorImpl's address
// as text in LibTorch 1.x (what c10::guts::to_string, gone in 2.x, wrote), the address itself in 2.x.
template <typename Key>
Key optimizer_state_key(c10::TensorImpl* impl) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream os;
    os << static_cast<const void*>(impl);
    return os.str();
  } else {
    return impl;
  }
}

// The checks every Adam-family optimizer (NAdamW, Schedule-Free AdamW, Shampoo's grafting) makes
// on its options: lr >= 0, eps >= 0, betas in [0, 1), weight_decay >= 0.
template <typename Options>
void check_adam_options(const char* name, const Options& o) {
  TORCH_CHECK(o.lr() >= 0, name, ": lr must be >= 0, got ", o.lr());
  TORCH_CHECK(o.eps() >= 0, name, ": eps must be >= 0, got ", o.eps());
  const auto [b1, b2] = o.betas();
  TORCH_CHECK(0 <= b1 && b1 < 1, name, ": beta1 must be in [0, 1), got ", b1);
  TORCH_CHECK(0 <= b2 && b2 < 1, name, ": beta2 must be in [0, 1), got ", b2);
  TORCH_CHECK(o.weight_decay() >= 0, name, ": weight_decay must be >= 0, got ", o.weight_decay());
}

// step()'s prologue: the closure's loss, computed with gradients on (an undefined tensor without).
inline torch::Tensor run_closure(const torch::optim::Optimizer::LossClosure& closure) {
  if (closure == nullptr) return {};
  at::AutoGradMode enable_grad(true);
  return closure();
}

}  // namespace wavg::detail
