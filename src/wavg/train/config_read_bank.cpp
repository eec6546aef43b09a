// Reading the bank of a run configuration: one [[scheme]] table per averager (lawa, ema, swa,
// phema, lawa_exp), horizons and half-lives converted to the ν, L and β used.
#include <algorithm>
#include <cmath>
#include <sstream>
#include <toml++/toml.h>

#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/train/config_reader.h"

namespace wavg::detail {

namespace {

void read_lawa(const Reader& r, const std::string& prefix, int64_t total, AveragerOptions& o) {
  r.allow({"name", "buffers", "recompute_batches", "start", "eval_every", "every", "window", "horizon"});
  const auto every = r.opt<int64_t>("every");
  const auto window = r.opt<int64_t>("window");
  const auto horizon = r.opt<double>("horizon");
  if (!horizon) {
    WAVG_CHECK(window.has_value(), "config: '", prefix, "' needs window or horizon");
    o.window = *window;
    o.every = every ? *every : r.get<int64_t>("every", 1);
    return;
  }
  WAVG_CHECK(!(window && every), "config: '", prefix,
             "' gives horizon, window and every: give horizon with at most one of them");
  WAVG_CHECK(*horizon > 0 && *horizon <= 1, "config: '", r.full("horizon"),
             "' must be in (0, 1] (a fraction of the run), got ", format_exact(*horizon));
  if (every) {
    WAVG_CHECK(*every >= 1, "config: '", r.full("every"), "' must be >= 1, got ", *every);
    o.every = *every;
    o.window = lawa_window_for_horizon(*horizon, o.every, total);
  } else {
    // ν from the window (default L = 20, the paper's choice): ν = round(h·T/L) >= 1.
    o.window = window ? *window : r.get<int64_t>("window", 20);
    WAVG_CHECK(o.window >= 1, "config: '", r.full("window"), "' must be >= 1, got ", o.window);
    o.every = std::max<int64_t>(1, std::llround(*horizon * double(total) / double(o.window)));
  }
}

// Kaddour's EXP window: window = k samples, alpha = the decay per sample inside it, every = ν.
void read_lawa_exp(const Reader& r, const std::string& prefix, AveragerOptions& o) {
  r.allow({"name", "buffers", "recompute_batches", "start", "eval_every", "every", "window", "alpha"});
  const auto window = r.opt<int64_t>("window");
  const auto alpha = r.opt<double>("alpha");
  WAVG_CHECK(window && alpha, "config: '", prefix, "' needs window (k samples) and alpha, like ",
             "{window = 20, alpha = 0.1}");
  o.window = *window;
  WAVG_CHECK(o.window >= 1, "config: '", r.full("window"), "' must be >= 1, got ", o.window);
  o.alpha = *alpha;
  WAVG_CHECK(std::isfinite(o.alpha) && o.alpha > 0 && o.alpha < 1, "config: '", r.full("alpha"),
             "' must be in (0, 1), got ", format_exact(o.alpha));
  o.every = r.get<int64_t>("every", 1);
  WAVG_CHECK(o.every >= 1, "config: '", r.full("every"), "' must be >= 1, got ", o.every);
}

void read_ema(const Reader& r, const std::string& prefix, AveragerOptions& o) {
  r.allow({"name", "buffers", "recompute_batches", "start", "eval_every", "every", "beta", "half_life"});
  const auto beta = r.opt<double>("beta");
  const auto half_life = r.opt<double>("half_life");
  WAVG_CHECK(beta.has_value() != half_life.has_value(), "config: '", prefix,
             "' needs exactly one of beta or half_life");
  o.every = r.get<int64_t>("every", 1);
  WAVG_CHECK(o.every >= 1, "config: '", r.full("every"), "' must be >= 1, got ", o.every);
  if (half_life)
    WAVG_CHECK(std::isfinite(*half_life) && *half_life > 0, "config: '", r.full("half_life"),
               "' must be a finite number of steps > 0, got ", format_exact(*half_life));
  o.beta = beta ? *beta : ema_beta_for_half_life(*half_life, o.every);
  if (half_life && o.name.empty()) {  // name it by what the user chose; describe() shows β
    std::ostringstream n;
    n << "ema_hl" << *half_life << "_nu" << o.every;
    if (o.start) n << "_s" << o.start;
    o.name = n.str();
  }
}

// phema: sigma_rel = [0.05, 0.10] (EDM2's two profiles by default), snapshot_every = K steps
// (default: ckpt_every, else a twentieth of the run).
void read_phema(const Reader& r, const RunConfig& c, AveragerEntry& e) {
  r.allow({"name", "buffers", "recompute_batches", "start", "every", "sigma_rel",
           "snapshot_every"});
  AveragerOptions& o = e.averager;
  o.every = r.get<int64_t>("every", 1);
  WAVG_CHECK(o.every >= 1, "config: '", r.full("every"), "' must be >= 1, got ", o.every);
  if (const toml::node* n = r.node("sigma_rel")) {
    WAVG_CHECK(n->is_array(), "config: '", r.full("sigma_rel"),
               "' must be an array of numbers like [0.05, 0.10], got ", type_name(*n), " ", show(*n));
    for (const toml::node& v : *n->as_array()) {
      const auto x = v.value<double>();
      WAVG_CHECK(x.has_value(), "config: '", r.full("sigma_rel"), "' must hold numbers, got ",
                 type_name(v), " ", show(v));
      o.sigma_rels.push_back(*x);
    }
  } else {
    o.sigma_rels = {0.05, 0.10};
    r.note("sigma_rel", "[0.05, 0.1]");
  }
  e.snapshot_every = r.get<int64_t>(
      "snapshot_every", c.ckpt_every > 0 ? c.ckpt_every : std::max<int64_t>(1, c.steps / 20));
}

AveragerEntry read_averager(const Reader& root, const toml::node& node, Scheme scheme, size_t index,
                            const RunConfig& c) {
  const int64_t total = c.steps;
  const std::string prefix = std::string(scheme_name(scheme)) + "[" + std::to_string(index) + "]";
  WAVG_CHECK(node.is_table(), "config: '", prefix,
             "' must be a table like {window = 20, every = 16}, got ", type_name(node));
  Reader r(*node.as_table(), prefix + ".", root.defaulted());
  AveragerEntry e;
  AveragerOptions& o = e.averager;
  o.scheme = scheme;
  o.name = r.opt<std::string>("name").value_or("");
  e.buffers = parse_buffer_policy(r.get<std::string>("buffers", "copy"));
  e.recompute_batches = r.get<int64_t>("recompute_batches", 20);
  e.eval_every = r.get<int64_t>("eval_every", 0);
  o.start = r.steps("start", total, 0);
  switch (scheme) {
    case Scheme::kLawa: read_lawa(r, prefix, total, o); break;
    case Scheme::kEma: read_ema(r, prefix, o); break;
    case Scheme::kSwa:
      r.allow({"name", "buffers", "recompute_batches", "start", "eval_every", "every"});
      o.every = r.get<int64_t>("every", 1);
      break;
    case Scheme::kPhema: read_phema(r, c, e); break;
    case Scheme::kLawaExp: read_lawa_exp(r, prefix, o); break;
  }
  if (o.name.empty()) o.name = default_name(o);
  return e;
}

}  // namespace

void read_averagers(const Reader& r, RunConfig& c) {
  for (Scheme scheme : kBankOrder) {
    const char* key = scheme_name(scheme);
    const toml::node* n = r.node(key);
    if (!n) continue;
    WAVG_CHECK(n->is_array(), "config: '", key, "' must be an array of tables, like ", key,
               " = [{...}], got ", type_name(*n));
    const toml::array& arr = *n->as_array();
    for (size_t i = 0; i < arr.size(); ++i)
      c.averagers.push_back(read_averager(r, arr[i], scheme, i, c));
  }
}

}  // namespace wavg::detail
