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

int64_t window_of(const SchemeOptions& o) {
  if (const auto* l = o.as<LawaOptions>()) return l->window();
  if (const auto* x = o.as<LawaExpOptions>()) return x->window();
  return 0;
}

namespace {

std::string sigma_list(const std::vector<double>& sigma_rels, const char* sep) {
  std::string s;
  for (double v : sigma_rels) s += (s.empty() ? "" : sep) + format_number(v, 6);
  return s;
}

}  // namespace

std::string default_name(const SchemeOptions& o) {
  char buf[96];
  const long long every = o.every();
  o.visit(Overloaded{
      [&](const LawaOptions& l) {
        std::snprintf(buf, sizeof buf, "lawa_L%lld_nu%lld", (long long)l.window(), every);
      },
      [&](const EmaOptions& e) {
        std::snprintf(buf, sizeof buf, "ema_b%.10g_nu%lld", e.beta(), every);
      },
      [&](const LawaExpOptions& x) {
        std::snprintf(buf, sizeof buf, "lawa_exp_k%lld_a%.10g_nu%lld", (long long)x.window(),
                      x.alpha(), every);
      },
      [&](const SwaOptions&) { std::snprintf(buf, sizeof buf, "swa_nu%lld", every); },
      [&](const PhemaOptions& p) {
        std::snprintf(buf, sizeof buf, "phema_%s_nu%lld", sigma_list(p.sigma_rels(), "_").c_str(),
                      every);
      }});
  std::string name = buf;
  if (o.start() != 0) name += "_s" + std::to_string(o.start());
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

namespace {

// describe()'s text after the name, without the horizon.
std::string describe_values(const SchemeOptions& o) {
  char buf[256];
  const long long every = o.every(), start = o.start();
  o.visit(Overloaded{
      [&](const LawaOptions& l) {
        std::snprintf(buf, sizeof buf, "LAWA window=%lld every=%lld start=%lld",
                      (long long)l.window(), every, start);
      },
      [&](const EmaOptions& e) {
        std::snprintf(buf, sizeof buf,
                      "EMA beta=%.10g every=%lld start=%lld (half-life %.1f steps)", e.beta(),
                      every, start, ema_half_life(e.beta(), every));
      },
      [&](const LawaExpOptions& x) {
        std::snprintf(buf, sizeof buf,
                      "EXP window (Kaddour) k=%lld alpha=%.10g every=%lld start=%lld (newest "
                      "sample weighs %.3g of the full window)",
                      (long long)x.window(), x.alpha(), every, start,
                      x.alpha() / (1.0 - std::pow(1.0 - x.alpha(), double(x.window()))));
      },
      [&](const SwaOptions&) {
        std::snprintf(buf, sizeof buf, "SWA every=%lld start=%lld", every, start);
      },
      [&](const PhemaOptions& p) {
        std::string gam;
        for (double v : p.sigma_rels())
          gam += (gam.empty() ? "" : ",") + format_number(phema_gamma(v), 6);
        std::snprintf(buf, sizeof buf, "post-hoc EMA sigma_rel=%s (gamma=%s) every=%lld start=%lld",
                      sigma_list(p.sigma_rels(), ",").c_str(), gam.c_str(), every, start);
      }});
  return buf;
}

}  // namespace

std::string describe(const SchemeOptions& o, int64_t total_steps) {
  std::string scratch;
  std::string out = display_name(o, &scratch) + ": " + describe_values(o);
  double h = -1;
  if (const auto* l = o.as<LawaOptions>()) h = lawa_horizon(l->window(), o.every(), total_steps);
  if (const auto* e = o.as<EmaOptions>()) h = ema_horizon(e->beta(), o.every(), total_steps);
  if (total_steps > 0 && h >= 0) {
    char buf[96];
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

namespace {

// The weights of a window over the last m of n sampled elements: v (m of them, oldest first) over
// their sum.
void window_weights(const std::vector<int64_t>& sampled, const std::vector<double>& v,
                    std::vector<double>* w) {
  double total = 0;
  for (double x : v) total += x;
  const size_t n = sampled.size(), m = v.size();
  for (size_t i = 0; i < m; ++i) (*w)[size_t(sampled[n - m + i])] = v[i] / total;
}

// Post-hoc EMA with the β of each sample (the first's unused): e_n = Σ_j w_j x_j, each later update
// scaling what came before by its β and adding (1 − β)·x.
void phema_weights(const std::vector<int64_t>& sampled, const std::vector<double>& betas,
                   std::vector<double>* w) {
  for (size_t j = 0; j < sampled.size(); ++j) {
    const double beta = j == 0 ? 0.0 : betas[j];
    for (size_t k = 0; k < j; ++k) (*w)[size_t(sampled[k])] *= beta;
    (*w)[size_t(sampled[j])] = 1.0 - beta;
  }
}

}  // namespace

std::vector<double> offline_weights(const SchemeOptions& o, int64_t count) {
  std::vector<int64_t> sampled;
  for (int64_t i = 0; i < count; ++i)
    if (samples_at(o, i)) sampled.push_back(i);
  WAVG_CHECK(!sampled.empty(), scheme_name(o.scheme()), ": no input is sampled (", count,
             " inputs, every=", o.every(), ", start=", o.start(), ")");
  std::vector<double> w(size_t(count), 0.0);
  const int64_t n = int64_t(sampled.size());
  o.visit(Overloaded{
      [&](const LawaOptions& l) {
        window_weights(sampled, std::vector<double>(size_t(std::min(n, l.window())), 1.0), &w);
      },
      [&](const LawaExpOptions& x) {
        window_weights(sampled, lawa_exp_weights(x.alpha(), std::min(n, x.window())), &w);
      },
      [&](const SwaOptions&) { window_weights(sampled, std::vector<double>(size_t(n), 1.0), &w); },
      [&](const EmaOptions& e) {
        for (int64_t j = 0; j < n; ++j)
          w[size_t(sampled[size_t(j)])] =
              (j == 0 ? 1.0 : 1.0 - e.beta()) * std::pow(e.beta(), double(n - 1 - j));
      },
      [&](const PhemaOptions& p) {
        const double gamma = phema_gamma(p.sigma_rels().at(0));
        std::vector<double> betas;
        for (int64_t t : sampled) betas.push_back(phema_beta(gamma, t, o.every()));
        phema_weights(sampled, betas, &w);
      }});
  return w;
}

}  // namespace wavg
