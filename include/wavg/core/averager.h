// Averaging schemes of DESIGN.md §2 — what the user chooses (AveragerOptions), the sampling rule,
// and the horizon conversions. The state and the kernels live in AveragerBank (bank.h).
//
// Sources: Kaddour, "Stop Wasting My Time!" (2022) for LAWA; Ajroldi, Orvieto, Geiping, "When, Where
// and Why to Average Weights?" (ICML 2025), Algorithms 1-2, for LAWA and EMA with period ν; Izmailov
// et al. (2018) for SWA.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wavg {

enum class Scheme { kLawa, kEma, kSwa };

const char* scheme_name(Scheme s);  // "lawa", "ema", "swa"

// What an averager does with the module's buffers (BatchNorm running statistics) when swapped in.
enum class BufferPolicy {
  kCopy,       // keep the current model's buffers (Kaddour's default)
  kAverage,    // average floating buffers like parameters
  kRecompute,  // recompute BatchNorm statistics with forward passes over training batches
};
// Throws wavg::Error naming the value for anything else.
BufferPolicy parse_buffer_policy(const std::string& s);  // "copy", "average", "recompute"
const char* buffer_policy_name(BufferPolicy p);


// What the user chose for one averager. Samples are taken at every step t with t >= start and
// t mod every == 0 (step 0, the initial weights, is a sample point when start == 0).
struct AveragerOptions {
  Scheme scheme = Scheme::kLawa;
  int64_t window = 0;  // LAWA only: L, samples in the window (>= 1)
  double beta = 0.0;   // EMA only: e_n = beta * e_{n-1} + (1 - beta) * x_n, in [0, 1)
  int64_t every = 1;   // ν, steps between samples (>= 1)
  int64_t start = 0;   // s, first step that may be sampled (>= 0)
  std::string name;    // empty: default_name()

  static AveragerOptions lawa(int64_t window, int64_t every = 1, int64_t start = 0);
  static AveragerOptions ema(double beta, int64_t every = 1, int64_t start = 0);
  static AveragerOptions swa(int64_t every = 1, int64_t start = 0);
};

// Throws wavg::Error naming the bad hyperparameter and its value.
void validate(const AveragerOptions& o);

// "lawa_L20_nu16", "ema_b0.9_nu64", "swa_nu1_s500" (start shown only when non-zero).
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
// weight 0. EMA: w = β^(n-1) for the first sample, (1-β)·β^(n-k) for sample k >= 2.
// Throws wavg::Error if no element is sampled.
std::vector<double> offline_weights(const AveragerOptions& o, int64_t count);

}  // namespace wavg
