// Averaging schemes of DESIGN.md §2 — what the user chooses (LawaOptions, LawaExpOptions, EmaOptions,
// SwaOptions, PhemaOptions; SchemeOptions holds any one of them), the sampling rule, and the horizon
// conversions. The state and the kernels live in AveragerBank (bank.h), one class per
// scheme behind it (src/wavg/core/averager_kinds.h).
//
// Sources: Kaddour, "Stop Wasting My Time!" (2022) for LAWA, and its App. C for EXP; Ajroldi, Orvieto, Geiping, "When, Where
// and Why to Average Weights?" (ICML 2025), Algorithms 1-2, for LAWA and EMA with period ν; Izmailov
// et al. (2018) for SWA; Karras et al. (2024, EDM2) for post-hoc EMA profiles (phema.h).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace wavg {

enum class Scheme { kLawa, kEma, kSwa, kPhema, kLawaExp };

const char* scheme_name(Scheme s);  // "lawa", "ema", "swa", "phema", "lawa_exp"

// What an averager does with the module's buffers (BatchNorm running statistics) when swapped in.
enum class BufferPolicy {
  kCopy,       // keep the current model's buffers (Kaddour's default)
  kAverage,    // average floating buffers like parameters
  kRecompute,  // recompute BatchNorm statistics with forward passes over training batches
};
// Throws wavg::Error naming the value for anything else.
BufferPolicy parse_buffer_policy(const std::string& s);  // "copy", "average", "recompute"
const char* buffer_policy_name(BufferPolicy p);

// Samples are taken at every step t with t >= start and t mod every == 0 (step 0, the initial
// weights, is a sample point when start == 0). Each scheme's options validate every value as it is
// set, so options that exist are valid.

namespace detail {
// One check per hyperparameter, made by the typed setters (one message each):
// "lawa: window (L) must be >= 1, got 0", "ema: beta must be in [0, 1), got 1.5".
void check_every(Scheme s, int64_t every);
void check_start(Scheme s, int64_t start);
void check_window(Scheme s, int64_t window);
void check_beta(double beta);
void check_alpha(double alpha);
void check_sigma_rels(const std::vector<double>& sigma_rels);

// ν, s and the name, common to every scheme's options. Setters validate at once and return the
// scheme's own options, so calls chain in LibTorch's style.
template <typename Derived, Scheme S>
class SampledOptions {
 public:
  static constexpr Scheme kScheme = S;
  Derived& every(int64_t every) {  // ν, steps between samples (>= 1)
    check_every(kScheme, every);
    every_ = every;
    return static_cast<Derived&>(*this);
  }
  Derived& start(int64_t start) {  // s, first step that may be sampled (>= 0)
    check_start(kScheme, start);
    start_ = start;
    return static_cast<Derived&>(*this);
  }
  Derived& name(std::string name) {  // empty: default_name()
    name_ = std::move(name);
    return static_cast<Derived&>(*this);
  }
  int64_t every() const { return every_; }
  int64_t start() const { return start_; }
  const std::string& name() const { return name_; }

 private:
  int64_t every_ = 1;
  int64_t start_ = 0;
  std::string name_;
};
}  // namespace detail

// LAWA (Kaddour 2022; Ajroldi et al. 2025, Algorithm 1): the uniform mean of the last L samples.
//   wavg::LawaOptions(/*window=*/20).every(16).start(100)
class LawaOptions : public detail::SampledOptions<LawaOptions, Scheme::kLawa> {
 public:
  explicit LawaOptions(int64_t window) { this->window(window); }
  LawaOptions& window(int64_t window) {  // L, samples in the window (>= 1)
    detail::check_window(Scheme::kLawa, window);
    window_ = window;
    return *this;
  }
  int64_t window() const { return window_; }

 private:
  int64_t window_ = 1;
};

// Kaddour's EXP (Kaddour 2022, App. C): exponentially decayed weights inside the LAWA window. Over
// the last m = min(n, k) samples, x_{n−m+i} (i = 1..m) weighs ∝ (1 − α)^(m−i), normalised to sum to
// 1: the newest weighs most. Shares the ring of samples of the LAWA windows with the same ν.
//   wavg::LawaExpOptions(/*window=*/20, /*alpha=*/0.1).every(4)
class LawaExpOptions : public detail::SampledOptions<LawaExpOptions, Scheme::kLawaExp> {
 public:
  LawaExpOptions(int64_t window, double alpha) {
    this->window(window);
    this->alpha(alpha);
  }
  LawaExpOptions& window(int64_t window) {  // k, samples in the window (>= 1)
    detail::check_window(Scheme::kLawaExp, window);
    window_ = window;
    return *this;
  }
  LawaExpOptions& alpha(double alpha) {  // in (0, 1)
    detail::check_alpha(alpha);
    alpha_ = alpha;
    return *this;
  }
  int64_t window() const { return window_; }
  double alpha() const { return alpha_; }

 private:
  int64_t window_ = 1;
  double alpha_ = 0.5;
};

// The weights of an EXP window holding m samples, oldest first: (1 − α)^(m−i) for i = 1..m, not
// normalised (divide by their sum).
std::vector<double> lawa_exp_weights(double alpha, int64_t m);

// EMA (Ajroldi et al. 2025, Algorithm 2): e_1 = x_1, e_n = β·e_{n-1} + (1 − β)·x_n.
//   wavg::EmaOptions(/*beta=*/0.9).every(16)
class EmaOptions : public detail::SampledOptions<EmaOptions, Scheme::kEma> {
 public:
  explicit EmaOptions(double beta) { this->beta(beta); }
  EmaOptions& beta(double beta) {  // in [0, 1)
    detail::check_beta(beta);
    beta_ = beta;
    return *this;
  }
  double beta() const { return beta_; }

 private:
  double beta_ = 0.0;
};

// SWA (Izmailov et al. 2018): the uniform mean of every sample since `start`.
//   wavg::SwaOptions().every(4).start(500)
class SwaOptions : public detail::SampledOptions<SwaOptions, Scheme::kSwa> {
 public:
  SwaOptions() = default;
};

// Post-hoc EMA (Karras et al. 2024, EDM2): power-function EMA profiles, e_1 = x_1 and
// e ← β_t·e + (1 − β_t)·x with β_t = (1 − ν/t)^(γ+1) at the sample's step t, γ from σ_rel
// (phema.h); every profile is updated in the bank's one pass per step. Snapshots of the profiles
// let any other σ_rel be reconstructed after training (phema_coefficients).
//   wavg::PhemaOptions({0.05, 0.10}).every(1)
class PhemaOptions : public detail::SampledOptions<PhemaOptions, Scheme::kPhema> {
 public:
  explicit PhemaOptions(std::vector<double> sigma_rels = {0.05, 0.10}) {
    this->sigma_rels(std::move(sigma_rels));
  }
  // σ_rel of each tracked profile (EDM2: 0.05 and 0.10), each in (0, phema_max_sigma_rel()],
  // distinct; the averager's value is its first profile's.
  PhemaOptions& sigma_rels(std::vector<double> sigma_rels) {
    detail::check_sigma_rels(sigma_rels);
    sigma_rels_ = std::move(sigma_rels);
    return *this;
  }
  const std::vector<double>& sigma_rels() const { return sigma_rels_; }

 private:
  std::vector<double> sigma_rels_;
};

// One averager as the user chose it, whichever its scheme: exactly one scheme's typed options,
// which banks, configs, sweeps and files carry. Built implicitly from any of them, so
// `bank.add(LawaOptions(20).every(16))` and `{LawaOptions(20), EmaOptions(0.9)}` read as they did.
// Code that needs a scheme's own hyperparameters asks for its options (as<EmaOptions>()) or visits
// them all (visit()), so a new scheme cannot be forgotten at a switch.
class SchemeOptions {
 public:
  using Variant = std::variant<LawaOptions, LawaExpOptions, EmaOptions, SwaOptions, PhemaOptions>;
  SchemeOptions(LawaOptions o) : options_(std::move(o)) {}     // NOLINT: implicit
  SchemeOptions(LawaExpOptions o) : options_(std::move(o)) {}  // NOLINT: implicit
  SchemeOptions(EmaOptions o) : options_(std::move(o)) {}      // NOLINT: implicit
  SchemeOptions(SwaOptions o) : options_(std::move(o)) {}      // NOLINT: implicit
  SchemeOptions(PhemaOptions o) : options_(std::move(o)) {}    // NOLINT: implicit

  Scheme scheme() const {
    return std::visit([](const auto& o) { return o.kScheme; }, options_);
  }
  int64_t every() const {
    return std::visit([](const auto& o) { return o.every(); }, options_);
  }
  int64_t start() const {
    return std::visit([](const auto& o) { return o.start(); }, options_);
  }
  const std::string& name() const {  // empty: default_name()
    return std::visit([](const auto& o) -> const std::string& { return o.name(); }, options_);
  }
  // Setters of what every scheme has; each validates as the scheme's own does.
  SchemeOptions& every(int64_t every) {
    std::visit([&](auto& o) { o.every(every); }, options_);
    return *this;
  }
  SchemeOptions& start(int64_t start) {
    std::visit([&](auto& o) { o.start(start); }, options_);
    return *this;
  }
  SchemeOptions& name(std::string name) {
    std::visit([&](auto& o) { o.name(std::move(name)); }, options_);
    return *this;
  }
  // The scheme's options, or nullptr when it is another scheme.
  template <typename T>
  const T* as() const {
    return std::get_if<T>(&options_);
  }
  // f(const LawaOptions&), f(const EmaOptions&), …: one overload (or a generic lambda) per scheme.
  template <typename F>
  decltype(auto) visit(F&& f) const {
    return std::visit(std::forward<F>(f), options_);
  }

 private:
  Variant options_;
};

// Overloads of a visitor: o.visit(Overloaded{[](const LawaOptions& l) {…}, [](const auto&) {…}}).
template <typename... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <typename... F>
Overloaded(F...) -> Overloaded<F...>;

// The window (L of LAWA, k of EXP) of a windowed scheme; 0 for the others.
int64_t window_of(const SchemeOptions& o);

// "lawa_L20_nu16", "lawa_exp_k20_a0.1_nu4", "ema_b0.9_nu64", "swa_nu1_s500", "phema_0.05_0.1_nu1"
// (start shown only when non-zero).
std::string default_name(const SchemeOptions& o);
inline const std::string& display_name(const SchemeOptions& o, std::string* scratch) {
  if (!o.name().empty()) return o.name();
  *scratch = default_name(o);
  return *scratch;
}

inline bool samples_at(int64_t every, int64_t start, int64_t step) {
  return step >= start && step % every == 0;
}
inline bool samples_at(const SchemeOptions& o, int64_t step) {
  return samples_at(o.every(), o.start(), step);
}

// Horizon units (DESIGN.md §2).
// LAWA: horizon = ν·L/T as a fraction of the run; the window is rounded to the nearest L >= 1.
int64_t lawa_window_for_horizon(double horizon, int64_t every, int64_t total_steps);
double lawa_horizon(int64_t window, int64_t every, int64_t total_steps);
// EMA: a half-life h in steps gives β = 0.5^(ν/h); and back, h = ν·ln 0.5 / ln β.
double ema_beta_for_half_life(double half_life, int64_t every);
double ema_half_life(double beta, int64_t every);
// EMA's horizon as a fraction of the run, ν/(1-β)/T (its mean sample age in steps, over T).
double ema_horizon(double beta, int64_t every, int64_t total_steps);

// One line stating the effective hyperparameters: "ema_b0.9_nu64: EMA beta=0.9 every=64 start=0
// (half-life 421.1 steps)".
std::string describe(const SchemeOptions& o, int64_t total_steps = 0);

}  // namespace wavg

namespace wavg {

// Offline form of an averager over a known, finite sequence x_0..x_{count-1} (sample i taken at
// step i): the weight of each element in the averager's value after the last one, so that
// value = Σ w_i x_i (Σ w_i = 1). Elements that are never sampled, or have left a LAWA window, get
// weight 0. EMA: w = β^(n-1) for the first sample, (1-β)·β^(n-k) for sample k >= 2. EXP: the
// window's normalised (1 − α)^age. phema: the first profile's weights, with β_t of each sample's
// step t = i.
// Throws wavg::Error if no element is sampled.
std::vector<double> offline_weights(const SchemeOptions& o, int64_t count);

}  // namespace wavg
