// Internal helpers shared by wavg's LibTorch optimizers (not installed): the key of a parameter's
// state in torch::optim::Optimizer::state_.
#pragma once

#include <c10/core/TensorImpl.h>

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

}  // namespace wavg::detail
