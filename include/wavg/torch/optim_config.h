// What the user chooses for an optimizer (no LibTorch here: configs are parsed without it), and the
// one table of its keys: the config reader, validate() and the optimizers' own constructors all
// read their names, defaults and valid ranges from optimizer_keys().
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace wavg {

struct OptimizerConfig {
  std::string name = "nadamw";  // one of optimizer_names()
  double lr = 1e-3;             // peak learning rate (the schedule scales it)
  double beta1 = 0.9;           // nadamw, adamw, shampoo; sgd: momentum; schedule-free: interpolation
  double beta2 = 0.999;         // nadamw, adamw, shampoo (factors and grafting), schedule-free
  double eps = 1e-8;            // nadamw, adamw, schedule-free, shampoo's AdamW grafting
  double weight_decay = 0.0;    // decoupled: θ ← θ·(1 − η_t·λ)
  bool nesterov = true;         // sgd
  // Gradient clipping by global norm before each step (any optimizer; 0: none): with
  // n = ‖(g_1, …, g_k)‖₂ over every parameter, each g ← g·min(1, c/(n + 1e-6)), as
  // torch.nn.utils.clip_grad_norm_(params, c) does.
  double clip_norm = 0.0;
  // Shampoo (shampoo.h).
  int64_t shampoo_block_size = 1024;            // elements per side of a block (max_preconditioner_dim)
  int64_t shampoo_precondition_frequency = 20;  // steps between inverse roots
  int64_t shampoo_start_step = 20;              // steps; before it, the grafted AdamW step alone
  double shampoo_eps = 1e-12;                   // ε·I added to each factor before its root
  // Schedule-Free AdamW (schedule_free.h): forward passes that recompute BatchNorm statistics at
  // its evaluation point x (models with BatchNorm only).
  int64_t schedule_free_bn_batches = 20;
  // Lookahead around the optimizer (lookahead.h; 0: off): every k steps
  // slow ← slow + α·(fast − slow), fast ← slow.
  int64_t lookahead_k = 0;       // steps
  double lookahead_alpha = 0.5;  // in (0, 1]
};

// The optimizers wavg builds: "nadamw", "adamw", "sgd", "shampoo", "schedule_free_adamw".
const std::vector<std::string>& optimizer_names();

// One key of [optimizer]: its field; for numbers, its valid range [lo, hi] (an open end excluded)
// as the messages show it; its unit; and the optimizers it acts for (the resolved configuration
// writes a key only where it acts, so that other runs keep their hashes).
struct OptimizerKey {
  const char* key;  // "beta1": the TOML key under [optimizer] and the field's name
  std::variant<std::string OptimizerConfig::*, double OptimizerConfig::*,
               int64_t OptimizerConfig::*, bool OptimizerConfig::*>
      field;
  double lo = 0, hi = 0;
  bool lo_open = false, hi_open = false;
  const char* range = nullptr;  // "in [0, 1)", ">= 2 (steps)"; nullptr: any value (a bool)
  const char* unit = nullptr;   // "steps"
  bool (*acts)(const OptimizerConfig&) = nullptr;  // nullptr: every optimizer
};

// Every key of [optimizer], in the order the config reads and writes them.
const std::vector<OptimizerKey>& optimizer_keys();

// "must be in [0, 1), got 1.5" when `value` is outside `key`'s range, else "".
std::string out_of_range(const char* key, double value);

// The first invalid field of c: its key and what is wrong ("must be in [0, 1), got 1.5").
struct OptimizerProblem {
  std::string key, what;
};
std::optional<OptimizerProblem> optimizer_problem(const OptimizerConfig& c);

// Throws wavg::Error "optimizer: KEY must be ..., got VALUE" for optimizer_problem(c).
void validate(const OptimizerConfig& c);

}  // namespace wavg
