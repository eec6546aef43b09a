// Averaging schemes of DESIGN.md §2 — what the user chooses (LawaOptions, LawaExpOptions, EmaOptions,
// SwaOptions, PhemaOptions, each convertible to the generic AveragerOptions), the sampling rule, and
// the horizon conversions. The state and the kernels live in AveragerBank (bank.h), one class per
// scheme behind it (src/wavg/core/averager_kinds.h).
//
// Sources: Kaddour, "Stop Wasting My Time!" (2022) for LAWA, and its App. C for EXP; Ajroldi, Orvieto, Geiping, "When, Where
// and Why to Average Weights?" (ICML 2025), Algorithms 1-2, for LAWA and EMA with period ν; Izmailov
// et al. (2018) for SWA; Karras et al. (2024, EDM2) for post-hoc EMA profiles (phema.h).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
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


// What the user chose for one averager, whatever its scheme: the generic form that banks, configs
// and files carry. Build it from a scheme's typed options below (LawaOptions(20).every(16)), which
// validate each value as it is set; code that fills these fields directly calls validate().
// Samples are taken at every step t with t >= start and t mod every == 0 (step 0, the initial
// weights, is a sample point when start == 0).
struct AveragerOptions {
  Scheme scheme = Scheme::kLawa;
  int64_t window = 0;  // LAWA and EXP: L (or k), samples in the window (>= 1)
  double beta = 0.0;   // EMA only: e_n = beta * e_{n-1} + (1 - beta) * x_n, in [0, 1)
  double alpha = 0.0;  // EXP only: the window's weights ∝ (1 - alpha)^age, in (0, 1)
  // phema only: σ_rel of each tracked power-function EMA profile (EDM2: 0.05 and 0.10), each in
  // (0, phema_max_sigma_rel()], distinct. The averager's value is its first profile's.
  std::vector<double> sigma_rels;
  int64_t every = 1;   // ν, steps between samples (>= 1)
  int64_t start = 0;   // s, first step that may be sampled (>= 0)
  std::string name;    // empty: default_name()
};

// Throws wavg::Error naming the bad hyperparameter and its value.
void validate(const AveragerOptions& o);

namespace detail {
// One check per hyperparameter, shared by validate() and the typed setters (one message each):
// "lawa: window (L) must be >= 1, got 0", "ema: beta must be in [0, 1), got 1.5".
void check_every(Scheme s, int64_t every);
void check_start(Scheme s, int64_t start);
void check_window(Scheme s, int64_t window);
void check_beta(double beta);
void check_alpha(double alpha);
void check_sigma_rels(const std::vector<double>& sigma_rels);

// ν, s and the name, common to the three schemes' options. Setters validate at once and return the
// scheme's own options, so calls chain in LibTorch's style.
template <typename Derived, Scheme kScheme>
class SampledOptions {
 public:
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

 protected:
  AveragerOptions generic() const {
    AveragerOptions o;
    o.scheme = kScheme;
    o.every = every_;
    o.start = start_;
    o.name = name_;
    return o;
  }

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
  operator AveragerOptions() const {  // NOLINT: implicit, as LibTorch's options
    AveragerOptions o = generic();
    o.window = window_;
    return o;
  }

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
  operator AveragerOptions() const {  // NOLINT: implicit, as LibTorch's options
    AveragerOptions o = generic();
    o.window = window_;
    o.alpha = alpha_;
    return o;
  }

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
  operator AveragerOptions() const {  // NOLINT: implicit, as LibTorch's options
    AveragerOptions o = generic();
    o.beta = beta_;
    return o;
  }

 private:
  double beta_ = 0.0;
};

// SWA (Izmailov et al. 2018): the uniform mean of every sample since `start`.
//   wavg::SwaOptions().every(4).start(500)
class SwaOptions : public detail::SampledOptions<SwaOptions, Scheme::kSwa> {
 public:
  SwaOptions() = default;
  operator AveragerOptions() const { return generic(); }  // NOLINT: implicit
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
  PhemaOptions& sigma_rels(std::vector<double> sigma_rels) {
    detail::check_sigma_rels(sigma_rels);
    sigma_rels_ = std::move(sigma_rels);
    return *this;
  }
  const std::vector<double>& sigma_rels() const { return sigma_rels_; }
  operator AveragerOptions() const {  // NOLINT: implicit, as LibTorch's options
    AveragerOptions o = generic();
    o.sigma_rels = sigma_rels_;
    return o;
  }

 private:
  std::vector<double> sigma_rels_;
};

// "lawa_L20_nu16", "lawa_exp_k20_a0.1_nu4", "ema_b0.9_nu64", "swa_nu1_s500", "phema_0.05_0.1_nu1"
// (start shown only when non-zero).
std::string default_name(const AveragerOptions& o);
inline const std::string& display_name(const AveragerOptions& o, std::string* scratch) {
  if (!o.name.empty()) return o.name;
  *scratch = default_name(o);
  return *scratch;
}

inline bool samples_at(int64_t every, int64_t start, int64_t step) {
  return step >= start && step % every == 0;
}
inline bool samples_at(const AveragerOptions& o, int64_t step) {
  return samples_at(o.every, o.start, step);
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
std::string describe(const AveragerOptions& o, int64_t total_steps = 0);

}  // namespace wavg

namespace wavg {

// Offline form of an averager over a known, finite sequence x_0..x_{count-1} (sample i taken at
// step i): the weight of each element in the averager's value after the last one, so that
// value = Σ w_i x_i (Σ w_i = 1). Elements that are never sampled, or have left a LAWA window, get
// weight 0. EMA: w = β^(n-1) for the first sample, (1-β)·β^(n-k) for sample k >= 2. EXP: the
// window's normalised (1 − α)^age. phema: the first profile's weights, with β_t of each sample's
// step t = i.
// Throws wavg::Error if no element is sampled.
std::vector<double> offline_weights(const AveragerOptions& o, int64_t count);

}  // namespace wavg
