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

// What every scheme reads alike: its name (empty: default_name()) and first step.
struct Common {
  std::string name;
  int64_t start = 0;
};

int64_t read_every(const Reader& r) {
  const int64_t every = r.get<int64_t>("every", 1);
  WAVG_CHECK(every >= 1, "config: '", r.full("every"), "' must be >= 1, got ", every);
  return every;
}

LawaOptions read_lawa(const Reader& r, const std::string& prefix, int64_t total) {
  r.allow({"name", "buffers", "recompute_batches", "start", "eval_every", "every", "window", "horizon"});
  const auto every = r.opt<int64_t>("every");
  const auto window = r.opt<int64_t>("window");
  const auto horizon = r.opt<double>("horizon");
  if (!horizon) {
    WAVG_CHECK(window.has_value(), "config: '", prefix, "' needs window or horizon");
    WAVG_CHECK(*window >= 1, "config: '", r.full("window"), "' must be >= 1, got ", *window);
    return LawaOptions(*window).every(read_every(r));
  }
  WAVG_CHECK(!(window && every), "config: '", prefix,
             "' gives horizon, window and every: give horizon with at most one of them");
  WAVG_CHECK(*horizon > 0 && *horizon <= 1, "config: '", r.full("horizon"),
             "' must be in (0, 1] (a fraction of the run), got ", format_exact(*horizon));
  if (every) {
    WAVG_CHECK(*every >= 1, "config: '", r.full("every"), "' must be >= 1, got ", *every);
    return LawaOptions(lawa_window_for_horizon(*horizon, *every, total)).every(*every);
  }
  // ν from the window (default L = 20, the paper's choice): ν = round(h·T/L) >= 1.
  const int64_t w = window ? *window : r.get<int64_t>("window", 20);
  WAVG_CHECK(w >= 1, "config: '", r.full("window"), "' must be >= 1, got ", w);
  const int64_t nu = std::max<int64_t>(1, std::llround(*horizon * double(total) / double(w)));
  return LawaOptions(w).every(nu);
}

// Kaddour's EXP window: window = k samples, alpha = the decay per sample inside it, every = ν.
LawaExpOptions read_lawa_exp(const Reader& r, const std::string& prefix) {
  r.allow({"name", "buffers", "recompute_batches", "start", "eval_every", "every", "window", "alpha"});
  const auto window = r.opt<int64_t>("window");
  const auto alpha = r.opt<double>("alpha");
  WAVG_CHECK(window && alpha, "config: '", prefix, "' needs window (k samples) and alpha, like ",
             "{window = 20, alpha = 0.1}");
  WAVG_CHECK(*window >= 1, "config: '", r.full("window"), "' must be >= 1, got ", *window);
  WAVG_CHECK(std::isfinite(*alpha) && *alpha > 0 && *alpha < 1, "config: '", r.full("alpha"),
             "' must be in (0, 1), got ", format_exact(*alpha));
  return LawaExpOptions(*window, *alpha).every(read_every(r));
}

EmaOptions read_ema(const Reader& r, const std::string& prefix, const Common& common) {
  r.allow({"name", "buffers", "recompute_batches", "start", "eval_every", "every", "beta", "half_life"});
  const auto beta = r.opt<double>("beta");
  const auto half_life = r.opt<double>("half_life");
  WAVG_CHECK(beta.has_value() != half_life.has_value(), "config: '", prefix,
             "' needs exactly one of beta or half_life");
  const int64_t every = read_every(r);
  if (half_life)
    WAVG_CHECK(std::isfinite(*half_life) && *half_life > 0, "config: '", r.full("half_life"),
               "' must be a finite number of steps > 0, got ", format_exact(*half_life));
  const double b = beta ? *beta : ema_beta_for_half_life(*half_life, every);
  WAVG_CHECK(std::isfinite(b) && b >= 0 && b < 1, "config: '", r.full("beta"),
             "' must be in [0, 1), got ", format_exact(b));
  EmaOptions o = EmaOptions(b).every(every);
  if (half_life && common.name.empty()) {  // name it by what the user chose; describe() shows β
    std::ostringstream n;
    n << "ema_hl" << *half_life << "_nu" << every;
    if (common.start) n << "_s" << common.start;
    o.name(n.str());
  }
  return o;
}

// phema: sigma_rel = [0.05, 0.10] (EDM2's two profiles by default), snapshot_every = K steps
// (default: ckpt_every, else a twentieth of the run).
PhemaOptions read_phema(const Reader& r, const std::string& prefix, const RunConfig& c,
                        int64_t* snapshot_every) {
  r.allow({"name", "buffers", "recompute_batches", "start", "every", "sigma_rel",
           "snapshot_every"});
  const int64_t every = read_every(r);
  std::vector<double> sigma_rels;
  if (const toml::node* n = r.node("sigma_rel")) {
    WAVG_CHECK(n->is_array(), "config: '", r.full("sigma_rel"),
               "' must be an array of numbers like [0.05, 0.10], got ", type_name(*n), " ", show(*n));
    for (const toml::node& v : *n->as_array()) {
      const auto x = v.value<double>();
      WAVG_CHECK(x.has_value(), "config: '", r.full("sigma_rel"), "' must hold numbers, got ",
                 type_name(v), " ", show(v));
      sigma_rels.push_back(*x);
    }
  } else {
    sigma_rels = {0.05, 0.10};
    r.note("sigma_rel", "[0.05, 0.1]");
  }
  *snapshot_every = r.get<int64_t>(
      "snapshot_every", c.ckpt_every > 0 ? c.ckpt_every : std::max<int64_t>(1, c.steps / 20));
  try {
    return PhemaOptions(std::move(sigma_rels)).every(every);
  } catch (const Error& err) {
    throw Error("config: '" + prefix + "': " + err.what());
  }
}

SchemeOptions read_scheme(const Reader& r, Scheme scheme, const std::string& prefix,
                          const RunConfig& c, const Common& common, int64_t* snapshot_every) {
  switch (scheme) {
    case Scheme::kLawa: return read_lawa(r, prefix, c.steps);
    case Scheme::kEma: return read_ema(r, prefix, common);
    case Scheme::kSwa:
      r.allow({"name", "buffers", "recompute_batches", "start", "eval_every", "every"});
      return SwaOptions().every(read_every(r));
    case Scheme::kPhema: return read_phema(r, prefix, c, snapshot_every);
    case Scheme::kLawaExp: return read_lawa_exp(r, prefix);
  }
  throw Error(std::string("config: unknown scheme '") + scheme_name(scheme) + "'");
}

AveragerEntry read_averager(const Reader& root, const toml::node& node, Scheme scheme, size_t index,
                            const RunConfig& c) {
  const std::string prefix = std::string(scheme_name(scheme)) + "[" + std::to_string(index) + "]";
  WAVG_CHECK(node.is_table(), "config: '", prefix,
             "' must be a table like {window = 20, every = 16}, got ", type_name(node));
  Reader r(*node.as_table(), prefix + ".", root.defaulted());
  Common common;
  common.name = r.opt<std::string>("name").value_or("");
  const BufferPolicy buffers = parse_buffer_policy(r.get<std::string>("buffers", "copy"));
  const int64_t recompute_batches = r.get<int64_t>("recompute_batches", 20);
  const int64_t eval_every = r.get<int64_t>("eval_every", 0);
  common.start = r.steps("start", c.steps, 0);  // >= 0
  int64_t snapshot_every = 0;
  AveragerEntry e{read_scheme(r, scheme, prefix, c, common, &snapshot_every), buffers,
                  recompute_batches, snapshot_every, eval_every};
  e.averager.start(common.start);
  if (!common.name.empty()) e.averager.name(common.name);
  if (e.averager.name().empty()) e.averager.name(default_name(e.averager));
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
