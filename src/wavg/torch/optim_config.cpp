// The one table of optimizer keys and ranges (no LibTorch: train/config reads it too).
#include "wavg/torch/optim_config.h"

#include <cmath>

#include "wavg/core/error.h"
#include "wavg/core/format.h"

namespace wavg {

namespace {

using C = OptimizerConfig;
constexpr double kInf = HUGE_VAL;

bool clips(const C& c) { return c.clip_norm > 0; }  // 0: no clipping
bool is_shampoo(const C& c) { return c.name == "shampoo"; }
bool is_schedule_free(const C& c) { return c.name == "schedule_free_adamw"; }
bool looks_ahead(const C& c) { return c.lookahead_k > 0; }

const OptimizerKey* find_key(const std::string& key) {
  for (const OptimizerKey& k : optimizer_keys())
    if (key == k.key) return &k;
  return nullptr;
}

std::string shown_value(const OptimizerKey& k, double v) {
  if (std::holds_alternative<int64_t C::*>(k.field)) return std::to_string(int64_t(v));
  return format_exact(v);
}

std::string names_shown() {  // "nadamw, adamw, sgd, shampoo or schedule_free_adamw"
  const auto& n = optimizer_names();
  std::string out;
  for (size_t i = 0; i < n.size(); ++i)
    out += (i == 0 ? "" : i + 1 == n.size() ? " or " : ", ") + n[i];
  return out;
}

}  // namespace

const std::vector<std::string>& optimizer_names() {
  static const std::vector<std::string> names = {"nadamw", "adamw", "sgd", "shampoo",
                                                 "schedule_free_adamw"};
  return names;
}

const std::vector<OptimizerKey>& optimizer_keys() {
  static const std::vector<OptimizerKey> keys = {
      {"name", &C::name},
      {"lr", &C::lr, 0, kInf, true, true, "a finite number > 0"},
      {"beta1", &C::beta1, 0, 1, false, true, "in [0, 1)"},
      {"beta2", &C::beta2, 0, 1, false, true, "in [0, 1)"},
      {"eps", &C::eps, 0, kInf, false, true, "in [0, inf)"},
      {"weight_decay", &C::weight_decay, 0, kInf, false, true, "in [0, inf)"},
      {"nesterov", &C::nesterov},
      {"clip_norm", &C::clip_norm, 0, kInf, false, true, "in [0, inf) (0: no clipping)", nullptr,
       clips},
      {"shampoo_block_size", &C::shampoo_block_size, 2, kInf, false, true, ">= 2", nullptr,
       is_shampoo},
      {"shampoo_precondition_frequency", &C::shampoo_precondition_frequency, 1, kInf, false, true,
       ">= 1 (steps)", "steps", is_shampoo},
      {"shampoo_start_step", &C::shampoo_start_step, 1, kInf, false, true, ">= 1 (steps)", "steps",
       is_shampoo},
      {"shampoo_eps", &C::shampoo_eps, 0, kInf, true, true, "in (0, inf)", nullptr, is_shampoo},
      {"schedule_free_bn_batches", &C::schedule_free_bn_batches, 1, kInf, false, true, ">= 1",
       nullptr, is_schedule_free},
      {"lookahead_k", &C::lookahead_k, 0, kInf, false, true, ">= 0 (0: off)", "steps", looks_ahead},
      {"lookahead_alpha", &C::lookahead_alpha, 0, 1, true, false, "in (0, 1]", nullptr, looks_ahead},
  };
  return keys;
}

std::string out_of_range(const char* key, double v) {
  const OptimizerKey* k = find_key(key);
  WAVG_ASSERT(k != nullptr && k->range != nullptr);
  const bool ok = std::isfinite(v) && (k->lo_open ? v > k->lo : v >= k->lo) &&
                  (k->hi_open ? v < k->hi : v <= k->hi);
  return ok ? "" : std::string("must be ") + k->range + ", got " + shown_value(*k, v);
}

std::optional<OptimizerProblem> optimizer_problem(const OptimizerConfig& c) {
  bool known = false;
  for (const std::string& n : optimizer_names()) known |= n == c.name;
  if (!known)
    return OptimizerProblem{"name", "must be " + names_shown() + ", got unknown name \"" + c.name + "\""};
  for (const OptimizerKey& k : optimizer_keys()) {
    if (!k.range) continue;
    const double v = std::holds_alternative<double C::*>(k.field)
                         ? c.*std::get<double C::*>(k.field)
                         : double(c.*std::get<int64_t C::*>(k.field));
    if (std::string what = out_of_range(k.key, v); !what.empty()) return OptimizerProblem{k.key, what};
  }
  // Resetting y to the slow weights would leave Schedule-Free's z and x behind.
  if (c.lookahead_k != 0 && c.name == "schedule_free_adamw")
    return OptimizerProblem{"lookahead_k", "= " + std::to_string(c.lookahead_k) +
                                               ": Lookahead cannot wrap schedule_free_adamw "
                                               "(its y is tied to its z and x)"};
  return std::nullopt;
}

void validate(const OptimizerConfig& c) {
  if (const auto p = optimizer_problem(c)) throw Error("optimizer: " + p->key + " " + p->what);
}

}  // namespace wavg
