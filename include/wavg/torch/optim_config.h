// What the user chooses for an optimizer (no LibTorch here: configs are parsed without it).
#pragma once

#include <string>

namespace wavg {

struct OptimizerConfig {
  std::string name = "nadamw";  // nadamw | adamw | sgd
  double lr = 1e-3;             // peak learning rate (the schedule scales it)
  double beta1 = 0.9;           // nadamw, adamw; sgd: momentum
  double beta2 = 0.999;         // nadamw, adamw
  double eps = 1e-8;            // nadamw, adamw
  double weight_decay = 0.0;    // decoupled: θ ← θ·(1 − η_t·λ)
  bool nesterov = true;         // sgd
  // Gradient clipping by global norm before each step (any optimizer; 0: none): with
  // n = ‖(g_1, …, g_k)‖₂ over every parameter, each g ← g·min(1, c/(n + 1e-6)), as
  // torch.nn.utils.clip_grad_norm_(params, c) does.
  double clip_norm = 0.0;
};

void validate(const OptimizerConfig& c);  // throws wavg::Error naming the field and value

}  // namespace wavg
