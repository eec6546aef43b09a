// Internal helpers shared by wavg's LibTorch optimizers (not installed): the key of a parameter's
// state in torch::optim::Optimizer::state_, the Adam family's option checks, the closure prologue.
#pragma once

#include <c10/core/TensorImpl.h>
#include <torch/optim/optimizer.h>

#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

#include "wavg/torch/optim_config.h"

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
// on its options, by the ranges of optimizer_keys() (optim_config.h): lr > 0, eps >= 0, betas in
// [0, 1), weight_decay >= 0.
template <typename Options>
void check_adam_options(const char* name, const Options& o) {
  const auto [b1, b2] = o.betas();
  for (auto [key, v] : {std::pair{"lr", o.lr()}, std::pair{"eps", o.eps()}, std::pair{"beta1", b1},
                        std::pair{"beta2", b2}, std::pair{"weight_decay", o.weight_decay()}}) {
    const std::string what = out_of_range(key, v);
    TORCH_CHECK(what.empty(), name, ": ", key, " ", what);
  }
}

// step()'s prologue: the closure's loss, computed with gradients on (an undefined tensor without).
inline torch::Tensor run_closure(const torch::optim::Optimizer::LossClosure& closure) {
  if (closure == nullptr) return {};
  at::AutoGradMode enable_grad(true);
  return closure();
}

}  // namespace wavg::detail
