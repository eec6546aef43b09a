// TOML run configuration: parse, override, fill defaults, validate, and write the resolved run.
#include "wavg/train/config.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/torch/device.h"
#include "wavg/train/resource_check.h"
#include "wavg/workloads/defaults.h"

namespace wavg {

namespace {

constexpr int64_t kFormat = 1;  // version of the resolved layout ([wavg] format)

// TOML basic string: quotes, backslashes and control characters escaped.
std::string toml_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += char(ch);
    } else if (ch < 0x20 || ch == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", ch);
      out += buf;
    } else {
      out += char(ch);
    }
  }
  return out + "\"";
}

// A TOML float that reads back as the same double (never an integer literal).
std::string toml_float(double v) {
  std::string s = format_exact(v);
  if (s.find_first_of(".eEni") == std::string::npos) s += ".0";
  return s;
}

std::string type_name(const toml::node& n) {
  if (n.is_string()) return "a string";
  if (n.is_integer()) return "an integer";
  if (n.is_floating_point()) return "a float";
  if (n.is_boolean()) return "a boolean";
  if (n.is_table()) return "a table";
  if (n.is_array()) return "an array";
  return "a date/time";
}

// A scalar as a person reads it ("a table"/"an array" for those).
std::string show(const toml::node& n) {
  if (n.is_string()) return toml_string(std::string(n.as_string()->get()));
  if (n.is_integer()) return std::to_string(n.as_integer()->get());
  if (n.is_floating_point()) return format_exact(n.as_floating_point()->get());
  if (n.is_boolean()) return n.as_boolean()->get() ? "true" : "false";
  if (n.is_table() || n.is_array()) return type_name(n);
  std::ostringstream os;
  n.visit([&](auto&& v) { os << v; });
  return os.str();
}

std::string shown(const std::string& v) { return toml_string(v); }
std::string shown(int64_t v) { return std::to_string(v); }
std::string shown(double v) { return format_exact(v); }
std::string shown(bool v) { return v ? "true" : "false"; }

// Typed access to one table, with errors naming the key and the value; records every value that
// is taken from a default.
class Reader {
 public:
  Reader(const toml::table& t, std::string prefix, std::vector<std::string>* defaulted)
      : t_(t), prefix_(std::move(prefix)), defaulted_(defaulted) {}

  void allow(std::initializer_list<const char*> keys) const { allow(std::set<std::string>(keys.begin(), keys.end())); }
  void allow(const std::set<std::string>& ok) const {
    for (auto&& [k, v] : t_) {
      const std::string key(k.str());
      WAVG_CHECK(ok.count(key), "config: unknown key '", prefix_ + key, "'");
    }
  }
  const toml::node* node(const char* key) const { return t_.get(key); }
  std::string full(const char* key) const { return prefix_ + key; }

  template <typename T>
  std::optional<T> opt(const char* key) const {
    const toml::node* n = t_.get(key);
    if (!n) return std::nullopt;
    const std::string k = "config: '" + full(key) + "' must be ";
    if constexpr (std::is_same_v<T, double>) {
      if (auto v = n->value<double>()) return *v;  // integers are accepted as floats
      throw Error(k + "a number, got " + type_name(*n) + " " + show(*n));
    } else if constexpr (std::is_same_v<T, int64_t>) {
      if (n->is_integer()) return n->as_integer()->get();
      throw Error(k + "an integer, got " + type_name(*n) + " " + show(*n));
    } else if constexpr (std::is_same_v<T, bool>) {
      if (n->is_boolean()) return n->as_boolean()->get();
      throw Error(k + "true or false, got " + type_name(*n) + " " + show(*n));
    } else {
      if (n->is_string()) return std::string(n->as_string()->get());
      throw Error(k + "a string, got " + type_name(*n) + " " + show(*n));
    }
  }

  // The value at `key`, or `fallback` (recorded as a default).
  template <typename T>
  T get(const char* key, T fallback) const {
    if (auto v = opt<T>(key)) return *v;
    note(key, shown(fallback));
    return fallback;
  }

  // An integer is a number of steps; a float in [0, 1] is a fraction of `total` steps.
  int64_t steps(const char* key, int64_t total, int64_t fallback) const {
    const toml::node* n = t_.get(key);
    if (!n) {
      note(key, std::to_string(fallback));
      return fallback;
    }
    if (n->is_integer()) {
      const int64_t v = n->as_integer()->get();
      WAVG_CHECK(v >= 0, "config: '", full(key), "' must be >= 0 steps, got ", v);
      return v;
    }
    if (n->is_floating_point()) {
      const double f = n->as_floating_point()->get();
      WAVG_CHECK(f >= 0 && f <= 1, "config: '", full(key),
                 "' as a float is a fraction of the run and must be in [0, 1], got ",
                 format_exact(f));
      return int64_t(std::llround(f * double(total)));
    }
    throw Error("config: '" + full(key) + "' must be steps (integer) or a fraction (float), got " +
                type_name(*n) + " " + show(*n));
  }

  void note(const char* key, const std::string& value) const {
    if (defaulted_) defaulted_->push_back(full(key) + " = " + value);
  }
  std::vector<std::string>* defaulted() const { return defaulted_; }

 private:
  const toml::table& t_;
  std::string prefix_;
  std::vector<std::string>* defaulted_;
};

// A sub-table (or nullptr when absent); anything else is an error naming the key.
const toml::table* table_at(const Reader& r, const char* key) {
  const toml::node* n = r.node(key);
  if (!n) return nullptr;
  WAVG_CHECK(n->is_table(), "config: '", r.full(key), "' must be a table, got ", type_name(*n),
             " ", show(*n));
  return n->as_table();
}

void merge(toml::table& dst, const toml::table& src) {
  for (auto&& [k, v] : src) {
    toml::node* existing = dst.get(k);
    if (existing && existing->is_table() && v.is_table()) {
      merge(*existing->as_table(), *v.as_table());
    } else {
      dst.insert_or_assign(k, v);
    }
  }
}

// "key=value": value as TOML, or as a string when it is not TOML (a bare word).
toml::table parse_set(const std::string& kv) {
  const auto eq = kv.find('=');
  WAVG_CHECK(eq != std::string::npos && eq > 0, "--set: expected key=value, got ", shown(kv));
  const std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
  for (char ch : key)
    WAVG_CHECK(std::isalnum((unsigned char)ch) || ch == '_' || ch == '-' || ch == '.',
               "--set: ", shown(key), " is not a key (letters, digits, _, - and . only)");
  if (value.find_first_of("\r\n") == std::string::npos) {
    try {
      return toml::parse(key + " = " + value);
    } catch (const toml::parse_error&) {
    }
  }
  try {
    return toml::parse(key + " = " + toml_string(value));
  } catch (const toml::parse_error& e) {
    throw Error("--set: cannot parse " + shown(kv) + " (" + std::string(e.description()) + ")");
  }
}

toml::table parse_config_file(const std::string& path) {
  try {
    return toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const auto& src = e.source();
    const bool missing = src.begin.line == 0;
    throw Error("config: " + path + (missing ? "" : ":" + std::to_string(src.begin.line)) +
                ": " + (missing ? "cannot read the file" : "not TOML: " + std::string(e.description())));
  }
}

void read_marker(const Reader& root, ConfigSource* source) {
  const toml::table* t = table_at(root, "wavg");
  if (!t) return;
  Reader r(*t, "wavg.", nullptr);
  r.allow({"resolved", "format"});
  const int64_t format = r.opt<int64_t>("format").value_or(kFormat);
  WAVG_CHECK(format == kFormat, "config: 'wavg.format' is ", format, "; this wavg reads format ",
             kFormat, " (a newer wavg wrote it)");
  if (source) source->resolved = r.opt<bool>("resolved").value_or(false);
}

void read_threads(const Reader& r, RunConfig& c) {
  const toml::node* t = r.node("threads");
  if (!t) return;
  if (t->is_integer()) {
    const int64_t n = t->as_integer()->get();
    WAVG_CHECK(n >= 0 && n <= 256, "config: 'threads' must be in [0, 256], got ", n);
    c.threads.intra_op = c.threads.averaging = int(n);
    c.threads.blas = n > 0 ? 1 : 0;  // measured: intra-op n with BLAS 1 is fastest here
    return;
  }
  WAVG_CHECK(t->is_table(), "config: 'threads' must be an integer or a table, got ", type_name(*t),
             " ", show(*t));
  Reader tr(*t->as_table(), "threads.", nullptr);
  tr.allow({"intra_op", "blas", "averaging"});
  for (auto [key, field] : {std::pair{"intra_op", &c.threads.intra_op},
                            std::pair{"blas", &c.threads.blas},
                            std::pair{"averaging", &c.threads.averaging}}) {
    const int64_t n = tr.opt<int64_t>(key).value_or(0);
    WAVG_CHECK(n >= 0 && n <= 256, "config: 'threads.", key, "' must be in [0, 256], got ", n);
    *field = int(n);
  }
}

void read_top(const Reader& r, const WorkloadDefaults& d, RunConfig& c) {
  c.seed = r.get<int64_t>("seed", 0);
  c.steps = r.get<int64_t>("steps", d.steps);
  c.eval_every = r.get<int64_t>("eval_every", d.eval_every);
  c.target = r.get<double>("target", d.target);
  c.out = r.get<std::string>("out", "runs/" + c.workload);
  c.batch_size = r.get<int64_t>("batch_size", d.batch_size);
  c.early_stop = r.get<bool>("early_stop", false);
  c.ckpt_every = r.get<int64_t>("ckpt_every", c.eval_every);
  c.state_every = r.get<int64_t>("state_every", std::max(c.ckpt_every, c.eval_every) * 4);
  c.keep_states = r.get<int64_t>("keep_states", 2);
  c.device = r.get<std::string>("device", "cpu");
  c.async_averaging = r.get<bool>("async_averaging", c.device != "cpu");
  c.dist_timeout = r.get<double>("dist_timeout", 300.0);
  read_threads(r, c);
}

void read_optimizer(const Reader& root, const WorkloadDefaults& d, RunConfig& c) {
  static const toml::table empty;
  const toml::table* t = table_at(root, "optimizer");
  Reader o(t ? *t : empty, "optimizer.", root.defaulted());
  std::set<std::string> known;
  for (const OptimizerKey& k : optimizer_keys()) known.insert(k.key);
  o.allow(known);
  OptimizerConfig base;
  base.lr = d.lr;
  base.weight_decay = d.weight_decay;
  OptimizerConfig& out = c.optimizer;
  for (const OptimizerKey& k : optimizer_keys()) {
    // Distributed Shampoo's default start: the first inverse root (start_preconditioning_step = -1).
    if (k.key == std::string("shampoo_start_step")) base.shampoo_start_step = out.shampoo_precondition_frequency;
    std::visit([&](auto field) { out.*field = o.get(k.key, base.*field); }, k.field);
  }
}

void read_schedule(const Reader& root, const WorkloadDefaults& d, RunConfig& c) {
  static const toml::table empty;
  const toml::table* t = table_at(root, "schedule");
  Reader s(t ? *t : empty, "schedule.", root.defaulted());
  s.allow({"kind", "warmup", "final_fraction", "decay_fraction", "total_steps"});
  const Schedule base;
  c.schedule.lr = c.optimizer.lr;
  // Schedule-Free runs without a decaying schedule (Defazio et al. 2024): constant by default.
  c.schedule.kind = parse_schedule_kind(
      s.get<std::string>("kind", c.optimizer.name == "schedule_free_adamw" ? "constant" : "cosine"));
  c.schedule.warmup_steps =
      s.steps("warmup", c.steps, int64_t(std::llround(d.warmup_fraction * double(c.steps))));
  c.schedule.final_fraction = s.get<double>("final_fraction", base.final_fraction);
  c.schedule.decay_fraction = s.get<double>("decay_fraction", base.decay_fraction);
  // The decay may end before or after the budget (a shorter or longer schedule).
  c.schedule.total_steps = s.steps("total_steps", c.steps, c.steps);
}

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

RunConfig from_table(const toml::table& root, ConfigSource* source) {
  Reader r(root, "", source ? &source->defaulted : nullptr);
  r.allow({"wavg", "workload", "seed", "steps", "eval_every", "target", "out", "threads",
           "batch_size", "early_stop", "async_averaging", "optimizer", "schedule", "lawa", "ema",
           "swa", "phema", "lawa_exp", "ckpt_every", "state_every", "keep_states", "device",
           "dist_timeout"});
  read_marker(r, source);
  RunConfig c;
  std::string known;
  for (const auto& n : workload_names()) known += (known.empty() ? "" : ", ") + n;
  const auto workload = r.opt<std::string>("workload");
  WAVG_CHECK(workload.has_value(), "config: 'workload' is required (one of ", known, ")");
  c.workload = *workload;
  const WorkloadDefaults d = workload_defaults(c.workload);
  read_top(r, d, c);
  read_optimizer(r, d, c);
  read_schedule(r, d, c);
  read_averagers(r, c);
  validate(c);
  return c;
}

// The bank in its canonical order (kBankOrder), each scheme's averagers in their listed order.
std::vector<const AveragerEntry*> bank_order(const RunConfig& c) {
  std::vector<const AveragerEntry*> out;
  for (Scheme s : kBankOrder)
    for (const AveragerEntry& e : c.averagers)
      if (e.averager.scheme == s) out.push_back(&e);
  return out;
}

void check_averager(const AveragerEntry& e, const std::string& key, std::set<std::string>& names) {
  const AveragerOptions& o = e.averager;
  const std::string name = o.name.empty() ? default_name(o) : o.name;
  bool safe = !name.empty() && name != "." && name != "..";
  for (char ch : name) safe &= std::isalnum((unsigned char)ch) || ch == '_' || ch == '-' || ch == '.';
  WAVG_CHECK(safe, "config: '", key, ".name' must be letters, digits, _, - and . (it names ",
             "final_NAME.safetensors), got ", shown(name));
  WAVG_CHECK(name != "raw" && names.insert(name).second, "config: '", key,
             ".name': duplicate averager name ", shown(name));
  WAVG_CHECK(o.every >= 1, "config: '", key, ".every' must be >= 1, got ", o.every);
  WAVG_CHECK(o.start >= 0, "config: '", key, ".start' must be >= 0 steps, got ", o.start);
  if (o.scheme == Scheme::kLawa || o.scheme == Scheme::kLawaExp)
    WAVG_CHECK(o.window >= 1, "config: '", key, ".window' must be >= 1, got ", o.window);
  if (o.scheme == Scheme::kLawaExp)
    WAVG_CHECK(std::isfinite(o.alpha) && o.alpha > 0 && o.alpha < 1, "config: '", key,
               ".alpha' must be in (0, 1), got ", format_exact(o.alpha));
  if (o.scheme == Scheme::kEma)
    WAVG_CHECK(std::isfinite(o.beta) && o.beta >= 0 && o.beta < 1, "config: '", key,
               ".beta' must be in [0, 1), got ", format_exact(o.beta));
  WAVG_CHECK(e.recompute_batches >= 1, "config: '", key, ".recompute_batches' must be >= 1, got ",
             e.recompute_batches);
  WAVG_CHECK(e.eval_every >= 0, "config: '", key, ".eval_every' must be >= 0 (0: the run's ",
             "eval_every), got ", e.eval_every);
  if (o.scheme == Scheme::kPhema)
    WAVG_CHECK(e.snapshot_every >= 1, "config: '", key, ".snapshot_every' must be >= 1 steps, got ",
               e.snapshot_every);
  try {
    validate(o);
  } catch (const Error& err) {
    throw Error("config: '" + key + "': " + err.what());
  }
}

void check_range(const char* key, double v, double lo, double hi, bool hi_open, const char* shown_range) {
  const bool ok = std::isfinite(v) && v >= lo && (hi_open ? v < hi : v <= hi);
  WAVG_CHECK(ok, "config: '", key, "' must be in ", shown_range, ", got ", format_exact(v));
}

void check_optimizer_and_schedule(const RunConfig& c) {
  const OptimizerConfig& o = c.optimizer;
  if (const auto p = optimizer_problem(o)) throw Error("config: 'optimizer." + p->key + "' " + p->what);
  const Schedule& s = c.schedule;
  // Schedule-Free replaces the schedule (Defazio et al. 2024): only a warmup is allowed.
  WAVG_CHECK(o.name != "schedule_free_adamw" || s.kind == ScheduleKind::kConstant ||
                 s.final_fraction == 1,
             "config: optimizer 'schedule_free_adamw' runs without a decaying schedule: set "
             "schedule.kind = \"constant\" (a warmup is allowed), got ", schedule_kind_name(s.kind),
             " with final_fraction ", format_exact(s.final_fraction));
  WAVG_CHECK(s.total_steps >= 1, "config: 'schedule.total_steps' must be >= 1, got ", s.total_steps);
  WAVG_CHECK(s.warmup_steps >= 0 && s.warmup_steps <= s.total_steps, "config: 'schedule.warmup' ",
             "must be in [0, schedule.total_steps = ", s.total_steps, "] steps, got ", s.warmup_steps);
  check_range("schedule.final_fraction", s.final_fraction, 0, 1, false, "[0, 1]");
  WAVG_CHECK(std::isfinite(s.decay_fraction) && s.decay_fraction > 0 && s.decay_fraction <= 1,
             "config: 'schedule.decay_fraction' must be in (0, 1], got ", format_exact(s.decay_fraction));
  Schedule peak = s;
  peak.lr = o.lr;
  validate(peak);
}

void write_averager(std::string& out, const AveragerEntry& e) {
  const AveragerOptions& o = e.averager;
  out += "\n[[" + std::string(scheme_name(o.scheme)) + "]]\n";
  out += "name = " + toml_string(o.name.empty() ? default_name(o) : o.name) + "\n";
  if (o.scheme == Scheme::kLawa || o.scheme == Scheme::kLawaExp)
    out += "window = " + std::to_string(o.window) + "\n";
  if (o.scheme == Scheme::kLawaExp) out += "alpha = " + toml_float(o.alpha) + "\n";
  if (o.scheme == Scheme::kEma) out += "beta = " + toml_float(o.beta) + "\n";
  if (o.scheme == Scheme::kPhema) {
    std::string list;
    for (double v : o.sigma_rels) list += (list.empty() ? "" : ", ") + toml_float(v);
    out += "sigma_rel = [" + list + "]\nsnapshot_every = " + std::to_string(e.snapshot_every) +
           "  # steps\n";
  }
  out += "every = " + std::to_string(o.every) + "\n";
  out += "start = " + std::to_string(o.start) + "  # steps\n";
  out += "buffers = " + toml_string(buffer_policy_name(e.buffers)) + "\n";
  out += "recompute_batches = " + std::to_string(e.recompute_batches) + "\n";
  if (e.eval_every > 0) out += "eval_every = " + std::to_string(e.eval_every) + "\n";  // 0: unwritten
}

// One "key" -> value text per leaf of a parsed resolved config (array elements as key[i]).
void flatten(const toml::node& n, const std::string& key, std::map<std::string, std::string>* out) {
  if (const toml::table* t = n.as_table()) {
    for (auto&& [k, v] : *t) flatten(v, key.empty() ? std::string(k.str()) : key + "." + std::string(k.str()), out);
  } else if (const toml::array* a = n.as_array()) {
    for (size_t i = 0; i < a->size(); ++i) flatten((*a)[i], key + "[" + std::to_string(i) + "]", out);
  } else {
    (*out)[key] = show(n);
  }
}

}  // namespace

void validate(const RunConfig& c) {
  workload_defaults(c.workload);  // names the known ones
  WAVG_CHECK(c.seed >= 0, "config: 'seed' must be >= 0, got ", c.seed);
  WAVG_CHECK(c.steps >= 1, "config: 'steps' must be >= 1, got ", c.steps);
  WAVG_CHECK(c.eval_every >= 1, "config: 'eval_every' must be >= 1, got ", c.eval_every);
  WAVG_CHECK(std::isfinite(c.target), "config: 'target' must be finite, got ", format_exact(c.target));
  WAVG_CHECK(!c.out.empty(), "config: 'out' must not be empty");
  WAVG_CHECK(c.batch_size >= 1, "config: 'batch_size' must be >= 1, got ", c.batch_size);
  WAVG_CHECK(c.ckpt_every >= 0, "config: 'ckpt_every' must be >= 0 (0 disables), got ", c.ckpt_every);
  WAVG_CHECK(c.state_every >= 0, "config: 'state_every' must be >= 0 (0 disables), got ",
             c.state_every);
  WAVG_CHECK(c.keep_states >= 1, "config: 'keep_states' must be >= 1, got ", c.keep_states);
  check_device_spec(c.device);  // syntax only: resolve_device() checks the device is there
  WAVG_CHECK(std::isfinite(c.dist_timeout) && c.dist_timeout >= 1 && c.dist_timeout <= 86400,
             "config: 'dist_timeout' must be in [1, 86400] seconds, got ", c.dist_timeout);
  for (auto [key, v] : {std::pair{"threads.intra_op", c.threads.intra_op},
                        std::pair{"threads.blas", c.threads.blas},
                        std::pair{"threads.averaging", c.threads.averaging}})
    WAVG_CHECK(v >= 0 && v <= 256, "config: '", key, "' must be in [0, 256], got ", v);
  check_optimizer_and_schedule(c);
  std::set<std::string> names;
  std::map<Scheme, int> index;
  for (const AveragerEntry* e : bank_order(c)) {
    const Scheme s = e->averager.scheme;
    check_averager(*e, std::string(scheme_name(s)) + "[" + std::to_string(index[s]++) + "]", names);
  }
  check_resources(c, available_memory_bytes());  // before anything trains or allocates
}

RunConfig default_run_config(const std::string& workload) {
  toml::table root;
  root.insert("workload", workload);
  return from_table(root, nullptr);
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& sets,
                          ConfigSource* source) {
  toml::table root;
  if (!path.empty()) root = parse_config_file(path);
  for (const auto& kv : sets) merge(root, parse_set(kv));
  if (source) *source = {};
  return from_table(root, source);
}

std::string resolved_toml(const RunConfig& c) {
  const auto i = [](int64_t v) { return std::to_string(v); };
  const auto b = [](bool v) { return std::string(v ? "true" : "false"); };
  std::string out =
      "wavg = {resolved = true, format = " + i(kFormat) + "}  # every effective value of the run\n";
  out += "workload = " + toml_string(c.workload) + "\nseed = " + i(c.seed) +
         "\nsteps = " + i(c.steps) + "\neval_every = " + i(c.eval_every) +
         "\ntarget = " + toml_float(c.target) + "\nout = " + toml_string(c.out) +
         "\nbatch_size = " + i(c.batch_size) + "\nearly_stop = " + b(c.early_stop) +
         "\nckpt_every = " + i(c.ckpt_every) + "\nstate_every = " + i(c.state_every) +
         "\nkeep_states = " + i(c.keep_states) + "\nasync_averaging = " + b(c.async_averaging) +
         "\ndevice = " + toml_string(c.device) +
         "\ndist_timeout = " + toml_float(c.dist_timeout) + "  # seconds\n";
  out += "\n[threads]\nintra_op = " + i(c.threads.intra_op) + "\nblas = " + i(c.threads.blas) +
         "\naveraging = " + i(c.threads.averaging) + "\n";
  const OptimizerConfig& o = c.optimizer;
  out += "\n[optimizer]\nname = " + toml_string(o.name) + "\nlr = " + toml_float(o.lr) +
         "\nbeta1 = " + toml_float(o.beta1) + "\nbeta2 = " + toml_float(o.beta2) +
         "\neps = " + toml_float(o.eps) + "\nweight_decay = " + toml_float(o.weight_decay) +
         "\nnesterov = " + b(o.nesterov) + "\n";
  if (o.clip_norm > 0) out += "clip_norm = " + toml_float(o.clip_norm) + "\n";  // 0 (none): unwritten
  // Keys of one optimizer or of Lookahead only where they act (other runs keep their hashes).
  if (o.name == "shampoo")
    out += "shampoo_block_size = " + i(o.shampoo_block_size) +
           "\nshampoo_precondition_frequency = " + i(o.shampoo_precondition_frequency) +
           "  # steps\nshampoo_start_step = " + i(o.shampoo_start_step) +
           "  # steps\nshampoo_eps = " + toml_float(o.shampoo_eps) + "\n";
  if (o.name == "schedule_free_adamw")
    out += "schedule_free_bn_batches = " + i(o.schedule_free_bn_batches) + "\n";
  if (o.lookahead_k > 0)
    out += "lookahead_k = " + i(o.lookahead_k) + "  # steps\nlookahead_alpha = " +
           toml_float(o.lookahead_alpha) + "\n";
  const Schedule& s = c.schedule;
  out += "\n[schedule]\nkind = " + toml_string(schedule_kind_name(s.kind)) +
         "\nwarmup = " + i(s.warmup_steps) + "  # steps\ntotal_steps = " + i(s.total_steps) +
         "\nfinal_fraction = " + toml_float(s.final_fraction) +
         "\ndecay_fraction = " + toml_float(s.decay_fraction) + "\n";
  for (const AveragerEntry* e : bank_order(c)) write_averager(out, *e);
  return out;
}

std::string config_hash(const RunConfig& c) {
  RunConfig h = c;
  h.threads = {};
  h.device = "cpu";
  h.out = "-";
  h.dist_timeout = RunConfig().dist_timeout;  // how long to wait, not what is computed
  const std::string text = resolved_toml(h);
  uint64_t x = 14695981039346656037ull;  // FNV-1a 64: offset basis, then xor and multiply per byte
  for (unsigned char ch : text) {
    x ^= ch;
    x *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)x);
  return buf;
}

// Zero thread counts as the defaults they stand for (default_threads()), as run_training applies them.
ThreadSettings threads_in_force(ThreadSettings t) {
  const ThreadSettings d = default_threads();
  if (t.intra_op <= 0) t.intra_op = d.intra_op;
  if (t.blas <= 0) t.blas = d.blas;
  if (t.averaging <= 0) t.averaging = d.averaging;
  return t;
}

std::vector<ConfigChange> config_changes(const RunConfig& run, const RunConfig& now) {
  RunConfig r = run, n = now;
  r.threads = threads_in_force(run.threads);
  n.threads = threads_in_force(now.threads);
  std::map<std::string, std::string> a, b;
  flatten(toml::parse(resolved_toml(r)), "", &a);
  flatten(toml::parse(resolved_toml(n)), "", &b);
  std::vector<ConfigChange> out;
  for (const auto& [k, v] : a)
    if (!b.count(k) || b[k] != v) out.push_back({0, k, v, b.count(k) ? b[k] : "unset"});
  for (const auto& [k, v] : b)
    if (!a.count(k)) out.push_back({0, k, "unset", v});
  return out;
}

int bank_rank(Scheme s) {
  int rank = 0;
  while (rank < int(std::size(kBankOrder)) && kBankOrder[rank] != s) ++rank;
  return rank;
}

std::string describe(const ConfigChange& c) {
  return c.key + " (run: " + c.old_value + ", now: " + c.new_value + ")";
}

std::vector<std::string> config_differences(const RunConfig& run, const RunConfig& now) {
  std::vector<std::string> out;
  for (const ConfigChange& c : config_changes(run, now)) out.push_back(describe(c));
  return out;
}

bool may_change_on_resume(const std::string& difference) {
  return difference.rfind("threads.", 0) == 0 || difference.rfind("device ", 0) == 0 ||
         difference.rfind("dist_timeout ", 0) == 0;
}

}  // namespace wavg
