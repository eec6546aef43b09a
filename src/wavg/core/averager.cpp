// Validation, names and horizon conversions for averager options.
#include "wavg/core/averager.h"

#include <cmath>
#include <algorithm>
#include <cstdio>

#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/core/phema.h"

namespace wavg {

BufferPolicy parse_buffer_policy(const std::string& s) {
  if (s == "copy") return BufferPolicy::kCopy;
  if (s == "average") return BufferPolicy::kAverage;
  if (s == "recompute") return BufferPolicy::kRecompute;
  throw Error("buffers: unknown policy '" + s + "' (expected copy, average or recompute)");
}

const char* buffer_policy_name(BufferPolicy p) {
  switch (p) {
    case BufferPolicy::kCopy: return "copy";
    case BufferPolicy::kAverage: return "average";
    case BufferPolicy::kRecompute: return "recompute";
  }
  return "?";
}

const char* scheme_name(Scheme s) {
  switch (s) {
    case Scheme::kLawa: return "lawa";
    case Scheme::kEma: return "ema";
    case Scheme::kSwa: return "swa";
    case Scheme::kPhema: return "phema";
    case Scheme::kLawaExp: return "lawa_exp";
  }
  return "?";
}

namespace detail {

void check_every(Scheme s, int64_t every) {
  WAVG_CHECK(every >= 1, scheme_name(s), ": every (nu) must be >= 1, got ", every);
}

void check_start(Scheme s, int64_t start) {
  WAVG_CHECK(start >= 0, scheme_name(s), ": start must be >= 0, got ", start);
}

void check_window(Scheme s, int64_t window) {
  WAVG_CHECK(window >= 1, scheme_name(s), ": window (", s == Scheme::kLawa ? "L" : "k",
             ") must be >= 1, got ", window);
}

void check_alpha(double alpha) {
  WAVG_CHECK(std::isfinite(alpha) && alpha > 0.0 && alpha < 1.0,
             "lawa_exp: alpha must be in (0, 1), got ", format_exact(alpha));
}

void check_beta(double beta) {
  WAVG_CHECK(std::isfinite(beta) && beta >= 0.0 && beta < 1.0, "ema: beta must be in [0, 1), got ",
             format_exact(beta));
}

void check_sigma_rels(const std::vector<double>& sigma_rels) {
  WAVG_CHECK(!sigma_rels.empty(), "phema: sigma_rel needs at least one profile, got none");
  for (size_t i = 0; i < sigma_rels.size(); ++i) {
    phema_gamma(sigma_rels[i]);  // throws naming the value when out of range
    for (size_t j = 0; j < i; ++j)
      WAVG_CHECK(sigma_rels[j] != sigma_rels[i], "phema: sigma_rel ",
                 format_exact(sigma_rels[i]), " is listed twice");
  }
}

}  // namespace detail

void validate(const AveragerOptions& o) {
  detail::check_every(o.scheme, o.every);
  detail::check_start(o.scheme, o.start);
  if (o.scheme == Scheme::kLawa || o.scheme == Scheme::kLawaExp)
    detail::check_window(o.scheme, o.window);
  if (o.scheme == Scheme::kLawaExp) detail::check_alpha(o.alpha);
  if (o.scheme == Scheme::kEma) detail::check_beta(o.beta);
  if (o.scheme == Scheme::kPhema) detail::check_sigma_rels(o.sigma_rels);
}

std::string default_name(const AveragerOptions& o) {
  char buf[96];
  switch (o.scheme) {
    case Scheme::kLawa:
      std::snprintf(buf, sizeof buf, "lawa_L%lld_nu%lld", (long long)o.window, (long long)o.every);
      break;
    case Scheme::kEma:
      std::snprintf(buf, sizeof buf, "ema_b%.10g_nu%lld", o.beta, (long long)o.every);
      break;
    case Scheme::kLawaExp:
      std::snprintf(buf, sizeof buf, "lawa_exp_k%lld_a%.10g_nu%lld", (long long)o.window, o.alpha,
                    (long long)o.every);
      break;
    case Scheme::kSwa: std::snprintf(buf, sizeof buf, "swa_nu%lld", (long long)o.every); break;
    case Scheme::kPhema: {
      std::string s = "phema";
      for (double v : o.sigma_rels) s += "_" + format_number(v, 6);
      std::snprintf(buf, sizeof buf, "%s_nu%lld", s.c_str(), (long long)o.every);
      break;
    }
  }
  std::string name = buf;
  if (o.start != 0) name += "_s" + std::to_string(o.start);
  return name;
}

int64_t lawa_window_for_horizon(double horizon, int64_t every, int64_t total_steps) {
  WAVG_CHECK(std::isfinite(horizon) && horizon > 0.0 && horizon <= 1.0,
             "lawa: horizon must be in (0, 1] (a fraction of the run), got ", horizon);
  WAVG_CHECK(every >= 1, "lawa: every (nu) must be >= 1, got ", every);
  WAVG_CHECK(total_steps >= 1, "lawa: horizon needs the run length T >= 1, got ", total_steps);
  const double window = horizon * double(total_steps) / double(every);
  return std::max<int64_t>(1, std::llround(window));
}

double lawa_horizon(int64_t window, int64_t every, int64_t total_steps) {
  return double(every) * double(window) / double(total_steps);
}

double ema_beta_for_half_life(double half_life, int64_t every) {
  WAVG_CHECK(std::isfinite(half_life) && half_life > 0.0,
             "ema: half_life must be > 0 steps, got ", half_life);
  WAVG_CHECK(every >= 1, "ema: every (nu) must be >= 1, got ", every);
  return std::pow(0.5, double(every) / half_life);
}

double ema_half_life(double beta, int64_t every) {
  if (beta <= 0.0) return 0.0;
  return double(every) * std::log(0.5) / std::log(beta);
}

double ema_horizon(double beta, int64_t every, int64_t total_steps) {
  return double(every) / (1.0 - beta) / double(total_steps);
}

std::string describe(const AveragerOptions& o, int64_t total_steps) {
  std::string scratch;
  const std::string& name = display_name(o, &scratch);
  char buf[256];
  switch (o.scheme) {
    case Scheme::kLawa:
      std::snprintf(buf, sizeof buf, "LAWA window=%lld every=%lld start=%lld", (long long)o.window,
                    (long long)o.every, (long long)o.start);
      break;
    case Scheme::kEma:
      std::snprintf(buf, sizeof buf, "EMA beta=%.10g every=%lld start=%lld (half-life %.1f steps)",
                    o.beta, (long long)o.every, (long long)o.start, ema_half_life(o.beta, o.every));
      break;
    case Scheme::kLawaExp:
      std::snprintf(buf, sizeof buf,
                    "EXP window (Kaddour) k=%lld alpha=%.10g every=%lld start=%lld (newest sample "
                    "weighs %.3g of the full window)",
                    (long long)o.window, o.alpha, (long long)o.every, (long long)o.start,
                    o.alpha / (1.0 - std::pow(1.0 - o.alpha, double(o.window))));
      break;
    case Scheme::kSwa:
      std::snprintf(buf, sizeof buf, "SWA every=%lld start=%lld", (long long)o.every,
                    (long long)o.start);
      break;
    case Scheme::kPhema: {
      std::string sig, gam;
      for (double v : o.sigma_rels) {
        sig += (sig.empty() ? "" : ",") + format_number(v, 6);
        gam += (gam.empty() ? "" : ",") + format_number(phema_gamma(v), 6);
      }
      std::snprintf(buf, sizeof buf, "post-hoc EMA sigma_rel=%s (gamma=%s) every=%lld start=%lld",
                    sig.c_str(), gam.c_str(), (long long)o.every, (long long)o.start);
      break;
    }
  }
  std::string out = name + ": " + buf;
  if (total_steps > 0 && (o.scheme == Scheme::kLawa || o.scheme == Scheme::kEma)) {
    const double h = o.scheme == Scheme::kLawa ? lawa_horizon(o.window, o.every, total_steps)
                                               : ema_horizon(o.beta, o.every, total_steps);
    std::snprintf(buf, sizeof buf, ", horizon %.3g%% of T=%lld", 100.0 * h, (long long)total_steps);
    out += buf;
  }
  return out;
}

}  // namespace wavg

namespace wavg {

std::vector<double> lawa_exp_weights(double alpha, int64_t m) {
  // (1 − α)^(m−i), i = 1..m (Kaddour 2022, App. C): the oldest first, the newest weighs 1.
  std::vector<double> w(size_t(std::max<int64_t>(m, 0)));
  for (int64_t i = 1; i <= m; ++i) w[size_t(i - 1)] = std::pow(1.0 - alpha, double(m - i));
  return w;
}

std::vector<double> offline_weights(const AveragerOptions& o, int64_t count) {
  validate(o);
  std::vector<int64_t> sampled;
  for (int64_t i = 0; i < count; ++i)
    if (samples_at(o, i)) sampled.push_back(i);
  WAVG_CHECK(!sampled.empty(), scheme_name(o.scheme), ": no input is sampled (", count,
             " inputs, every=", o.every, ", start=", o.start, ")");
  std::vector<double> w(size_t(count), 0.0);
  const int64_t n = int64_t(sampled.size());
  switch (o.scheme) {
    case Scheme::kLawa: {
      const int64_t k = std::min(n, o.window);
      for (int64_t j = n - k; j < n; ++j) w[sampled[j]] = 1.0 / double(k);
      break;
    }
    case Scheme::kLawaExp: {
      const int64_t m = std::min(n, o.window);
      const std::vector<double> v = lawa_exp_weights(o.alpha, m);
      double total = 0;
      for (double x : v) total += x;
      for (int64_t i = 0; i < m; ++i) w[sampled[n - m + i]] = v[size_t(i)] / total;
      break;
    }
    case Scheme::kSwa:
      for (int64_t j : sampled) w[j] = 1.0 / double(n);
      break;
    case Scheme::kEma:
      for (int64_t j = 0; j < n; ++j) {
        const double age = double(n - 1 - j);
        w[sampled[j]] = (j == 0 ? 1.0 : 1.0 - o.beta) * std::pow(o.beta, age);
      }
      break;
    case Scheme::kPhema: {
      // e_n = Σ_j w_j x_j: each later update scales what came before by its β and adds (1−β)·x.
      const double gamma = phema_gamma(o.sigma_rels.at(0));
      for (int64_t j = 0; j < n; ++j) {
        const double beta = j == 0 ? 0.0 : phema_beta(gamma, sampled[j], o.every);
        for (int64_t k = 0; k < j; ++k) w[sampled[k]] *= beta;
        w[sampled[j]] = 1.0 - beta;
      }
      break;
    }
  }
  return w;
}

}  // namespace wavg
