// TOML run configuration: parse, override, validate, resolve horizons and fractions.
#include "wavg/train/config.h"

#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#include "wavg/core/error.h"
#include "wavg/workloads/defaults.h"

namespace wavg {

namespace {

std::string type_name(const toml::node& n) {
  if (n.is_string()) return "a string";
  if (n.is_integer()) return "an integer";
  if (n.is_floating_point()) return "a float";
  if (n.is_boolean()) return "a boolean";
  if (n.is_table()) return "a table";
  if (n.is_array()) return "an array";
  return "a date/time";
}

std::string show(const toml::node& n) {
  std::ostringstream os;
  if (n.is_table()) return "a table";
  if (n.is_array()) return "an array";
  n.visit([&](auto&& v) { os << v; });
  return os.str();
}

// Typed access with errors naming the key and the value.
class Reader {
 public:
  Reader(const toml::table& t, std::string prefix) : t_(t), prefix_(std::move(prefix)) {}

  void allow(std::initializer_list<const char*> keys) {
    std::set<std::string> ok(keys.begin(), keys.end());
    for (auto&& [k, v] : t_) {
      const std::string key(k.str());
      WAVG_CHECK(ok.count(key), "config: unknown key '", prefix_ + key, "'");
    }
  }
  const toml::node* get(const char* key) const { return t_.get(key); }
  std::string full(const char* key) const { return prefix_ + key; }

  template <typename T>
  std::optional<T> opt(const char* key) const {
    const toml::node* n = t_.get(key);
    if (!n) return std::nullopt;
    if constexpr (std::is_same_v<T, double>) {
      if (auto v = n->value<double>()) return *v;  // integers are accepted as floats
      throw Error("config: '" + full(key) + "' must be a number, got " + show(*n));
    } else if constexpr (std::is_same_v<T, int64_t>) {
      if (n->is_integer()) return n->as_integer()->get();
      throw Error("config: '" + full(key) + "' must be an integer, got " + type_name(*n) + " " +
                  show(*n));
    } else if constexpr (std::is_same_v<T, bool>) {
      if (n->is_boolean()) return n->as_boolean()->get();
      throw Error("config: '" + full(key) + "' must be true or false, got " + show(*n));
    } else {
      if (n->is_string()) return std::string(n->as_string()->get());
      throw Error("config: '" + full(key) + "' must be a string, got " + show(*n));
    }
  }

  // An integer is a number of steps; a float in [0, 1] is a fraction of the run.
  std::optional<int64_t> steps_or_fraction(const char* key, int64_t total) const {
    const toml::node* n = t_.get(key);
    if (!n) return std::nullopt;
    if (n->is_integer()) {
      const int64_t v = n->as_integer()->get();
      WAVG_CHECK(v >= 0, "config: '", full(key), "' must be >= 0 steps, got ", v);
      return v;
    }
    if (n->is_floating_point()) {
      const double f = n->as_floating_point()->get();
      WAVG_CHECK(f >= 0 && f <= 1, "config: '", full(key),
                 "' as a float is a fraction of the run and must be in [0, 1], got ", f);
      return int64_t(std::llround(f * double(total)));
    }
    throw Error("config: '" + full(key) + "' must be steps (integer) or a fraction (float), got " +
                show(*n));
  }

 private:
  const toml::table& t_;
  std::string prefix_;
};

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

toml::table parse_set(const std::string& kv) {
  const auto eq = kv.find('=');
  WAVG_CHECK(eq != std::string::npos && eq > 0, "--set: expected key=value, got '", kv, "'");
  const std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
  try {
    return toml::parse(key + " = " + value);
  } catch (const toml::parse_error&) {
  }
  try {  // a bare word: take it as a string
    return toml::parse(key + " = \"" + value + "\"");
  } catch (const toml::parse_error& e) {
    throw Error("--set: cannot parse '" + kv + "' (" + std::string(e.description()) + ")");
  }
}

AveragerEntry read_averager(const toml::node& node, Scheme scheme, size_t index, int64_t total) {
  const std::string prefix = std::string(scheme_name(scheme)) + "[" + std::to_string(index) + "].";
  WAVG_CHECK(node.is_table(), "config: '", prefix.substr(0, prefix.size() - 1),
             "' must be a table like {window = 20, every = 16}");
  Reader r(*node.as_table(), prefix);
  AveragerEntry e;
  AveragerOptions& o = e.averager;
  o.scheme = scheme;
  o.name = r.opt<std::string>("name").value_or("");
  e.buffers = r.opt<std::string>("buffers").value_or("copy");
  WAVG_CHECK(e.buffers == "copy" || e.buffers == "average" || e.buffers == "recompute", "config: '",
             r.full("buffers"), "' must be copy, average or recompute, got '", e.buffers, "'");
  e.recompute_batches = r.opt<int64_t>("recompute_batches").value_or(20);
  WAVG_CHECK(e.recompute_batches >= 1, "config: '", r.full("recompute_batches"),
             "' must be >= 1, got ", e.recompute_batches);
  o.start = r.steps_or_fraction("start", total).value_or(0);
  const auto every = r.opt<int64_t>("every");
  switch (scheme) {
    case Scheme::kLawa: {
      r.allow({"name", "buffers", "recompute_batches", "start", "every", "window", "horizon"});
      const auto window = r.opt<int64_t>("window");
      const auto horizon = r.opt<double>("horizon");
      if (horizon) {
        WAVG_CHECK(!(window && every), "config: '", prefix,
                   "' gives horizon, window and every: give horizon with at most one of them");
        WAVG_CHECK(*horizon > 0 && *horizon <= 1, "config: '", r.full("horizon"),
                   "' must be in (0, 1] (a fraction of the run), got ", *horizon);
        if (every) {
          o.every = *every;
          o.window = lawa_window_for_horizon(*horizon, o.every, total);
        } else {
          // ν from the window (default L = 20, the paper's choice): ν = round(h·T/L) >= 1.
          o.window = window.value_or(20);
          WAVG_CHECK(o.window >= 1, "config: '", r.full("window"), "' must be >= 1, got ", o.window);
          o.every = std::max<int64_t>(1, std::llround(*horizon * double(total) / double(o.window)));
        }
      } else {
        WAVG_CHECK(window.has_value(), "config: '", prefix, "' needs window or horizon");
        o.window = *window;
        o.every = every.value_or(1);
      }
      break;
    }
    case Scheme::kEma: {
      r.allow({"name", "buffers", "recompute_batches", "start", "every", "beta", "half_life"});
      const auto beta = r.opt<double>("beta");
      const auto half_life = r.opt<double>("half_life");
      WAVG_CHECK(beta.has_value() != half_life.has_value(), "config: '", prefix,
                 "' needs exactly one of beta or half_life");
      o.every = every.value_or(1);
      WAVG_CHECK(o.every >= 1, "config: '", r.full("every"), "' must be >= 1, got ", o.every);
      o.beta = beta ? *beta : ema_beta_for_half_life(*half_life, o.every);
      if (half_life && o.name.empty()) {  // name it by what the user chose; describe() shows β
        std::ostringstream n;
        n << "ema_hl" << *half_life << "_nu" << o.every;
        if (o.start) n << "_s" << o.start;
        o.name = n.str();
      }
      break;
    }
    case Scheme::kSwa:
      r.allow({"name", "buffers", "recompute_batches", "start", "every"});
      o.every = every.value_or(1);
      break;
  }
  validate(o);
  return e;
}

}  // namespace

namespace {
void flatten(const toml::table& t, const std::string& prefix, std::map<std::string, std::string>* out) {
  for (auto&& [k, v] : t) {
    const std::string key = prefix + std::string(k.str());
    if (v.is_table()) {
      flatten(*v.as_table(), key + ".", out);
    } else {
      std::ostringstream os;
      if (v.is_array()) os << *v.as_array();
      else v.visit([&](auto&& x) { os << x; });
      (*out)[key] = os.str();
    }
  }
}
}  // namespace

std::vector<std::string> config_differences(const RunConfig& run, const RunConfig& now) {
  std::map<std::string, std::string> a, b;
  flatten(toml::parse(run.resolved_toml), "", &a);
  flatten(toml::parse(now.resolved_toml), "", &b);
  std::vector<std::string> out;
  for (const auto& [k, v] : a)
    if (!b.count(k) || b[k] != v)
      out.push_back(k + " (run: " + v + ", now: " + (b.count(k) ? b[k] : "unset") + ")");
  for (const auto& [k, v] : b)
    if (!a.count(k)) out.push_back(k + " (run: unset, now: " + v + ")");
  return out;
}

RunConfig default_run_config(const std::string& workload) {
  toml::table root;
  root.insert("workload", workload);
  std::ostringstream os;
  os << root;
  return load_run_config("", {os.str()});
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& sets) {
  toml::table root;
  if (!path.empty()) {
    try {
      root = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
      const auto& src = e.source();
      throw Error("config: " + path + ":" + std::to_string(src.begin.line) + ": " +
                  std::string(e.description()));
    }
  }
  for (const auto& kv : sets) merge(root, parse_set(kv));

  Reader r(root, "");
  r.allow({"workload", "seed", "steps", "eval_every", "target", "out", "threads", "batch_size",
           "early_stop", "async_averaging", "optimizer", "schedule", "lawa", "ema", "swa",
           "ckpt_every", "state_every", "keep_states"});
  RunConfig c;
  const auto workload = r.opt<std::string>("workload");
  WAVG_CHECK(workload.has_value(), "config: 'workload' is required (one of fmnist_cnn, text_lm, ",
             "synth_ctr)");
  c.workload = *workload;
  const WorkloadDefaults d = workload_defaults(c.workload);
  c.seed = r.opt<int64_t>("seed").value_or(0);
  c.steps = r.opt<int64_t>("steps").value_or(d.steps);
  WAVG_CHECK(c.steps >= 1, "config: 'steps' must be >= 1, got ", c.steps);
  c.eval_every = r.opt<int64_t>("eval_every").value_or(d.eval_every);
  WAVG_CHECK(c.eval_every >= 1, "config: 'eval_every' must be >= 1, got ", c.eval_every);
  c.target = r.opt<double>("target").value_or(d.target);
  WAVG_CHECK(std::isfinite(c.target), "config: 'target' must be finite, got ", c.target);
  c.out = r.opt<std::string>("out").value_or("runs/" + c.workload);
  WAVG_CHECK(!c.out.empty(), "config: 'out' must not be empty");
  c.batch_size = r.opt<int64_t>("batch_size").value_or(0);
  WAVG_CHECK(c.batch_size >= 0, "config: 'batch_size' must be >= 1, got ", c.batch_size);
  c.early_stop = r.opt<bool>("early_stop").value_or(false);
  c.ckpt_every = r.opt<int64_t>("ckpt_every").value_or(c.eval_every);
  WAVG_CHECK(c.ckpt_every >= 0, "config: 'ckpt_every' must be >= 0, got ", c.ckpt_every);
  c.state_every = r.opt<int64_t>("state_every").value_or(std::max(c.ckpt_every, c.eval_every) * 4);
  WAVG_CHECK(c.state_every >= 0, "config: 'state_every' must be >= 0, got ", c.state_every);
  c.keep_states = r.opt<int64_t>("keep_states").value_or(2);
  WAVG_CHECK(c.keep_states >= 1, "config: 'keep_states' must be >= 1, got ", c.keep_states);
  c.async_averaging = r.opt<bool>("async_averaging");
  if (const toml::node* t = r.get("threads")) {
    if (t->is_integer()) {
      const int64_t n = t->as_integer()->get();
      WAVG_CHECK(n >= 0 && n <= 256, "config: 'threads' must be in [0, 256], got ", n);
      c.threads.intra_op = c.threads.averaging = int(n);
      c.threads.blas = n > 0 ? 1 : 0;  // measured: intra-op n with BLAS 1 is fastest here
    } else if (t->is_table()) {
      Reader tr(*t->as_table(), "threads.");
      tr.allow({"intra_op", "blas", "averaging"});
      for (auto [key, field] : {std::pair{"intra_op", &c.threads.intra_op},
                                std::pair{"blas", &c.threads.blas},
                                std::pair{"averaging", &c.threads.averaging}}) {
        const int64_t n = tr.opt<int64_t>(key).value_or(0);
        WAVG_CHECK(n >= 0 && n <= 256, "config: 'threads.", key, "' must be in [0, 256], got ", n);
        *field = int(n);
      }
    } else {
      throw Error("config: 'threads' must be an integer or a table, got " + show(*t));
    }
  }

  c.optimizer.lr = d.lr;
  c.optimizer.weight_decay = d.weight_decay;
  if (const toml::node* t = r.get("optimizer")) {
    WAVG_CHECK(t->is_table(), "config: 'optimizer' must be a table");
    Reader o(*t->as_table(), "optimizer.");
    o.allow({"name", "lr", "beta1", "beta2", "eps", "weight_decay", "nesterov"});
    c.optimizer.name = o.opt<std::string>("name").value_or(c.optimizer.name);
    c.optimizer.lr = o.opt<double>("lr").value_or(c.optimizer.lr);
    c.optimizer.beta1 = o.opt<double>("beta1").value_or(c.optimizer.beta1);
    c.optimizer.beta2 = o.opt<double>("beta2").value_or(c.optimizer.beta2);
    c.optimizer.eps = o.opt<double>("eps").value_or(c.optimizer.eps);
    c.optimizer.weight_decay = o.opt<double>("weight_decay").value_or(c.optimizer.weight_decay);
    c.optimizer.nesterov = o.opt<bool>("nesterov").value_or(c.optimizer.nesterov);
  }
  validate(c.optimizer);

  c.schedule.lr = c.optimizer.lr;
  c.schedule.total_steps = c.steps;
  c.schedule.warmup_steps = int64_t(std::llround(d.warmup_fraction * double(c.steps)));
  if (const toml::node* t = r.get("schedule")) {
    WAVG_CHECK(t->is_table(), "config: 'schedule' must be a table");
    Reader s(*t->as_table(), "schedule.");
    s.allow({"kind", "warmup", "final_fraction", "decay_fraction", "total_steps"});
    c.schedule.kind = parse_schedule_kind(s.opt<std::string>("kind").value_or("cosine"));
    c.schedule.warmup_steps = s.steps_or_fraction("warmup", c.steps).value_or(c.schedule.warmup_steps);
    c.schedule.final_fraction = s.opt<double>("final_fraction").value_or(0.0);
    c.schedule.decay_fraction = s.opt<double>("decay_fraction").value_or(0.2);
    // The decay may end before or after the budget (a shorter or longer schedule).
    c.schedule.total_steps = s.steps_or_fraction("total_steps", c.steps).value_or(c.steps);
  }
  validate(c.schedule);

  std::set<std::string> names;
  for (auto [key, scheme] : {std::pair{"lawa", Scheme::kLawa}, std::pair{"ema", Scheme::kEma},
                             std::pair{"swa", Scheme::kSwa}}) {
    const toml::node* n = r.get(key);
    if (!n) continue;
    WAVG_CHECK(n->is_array(), "config: '", key, "' must be an array of tables, like ", key,
               " = [{...}]");
    const toml::array& arr = *n->as_array();
    for (size_t i = 0; i < arr.size(); ++i) {
      AveragerEntry e = read_averager(arr[i], scheme, i, c.steps);
      if (e.averager.name.empty()) e.averager.name = default_name(e.averager);
      WAVG_CHECK(e.averager.name != "raw" && names.insert(e.averager.name).second,
                 "config: duplicate averager name '", e.averager.name, "'");
      c.averagers.push_back(e);
    }
  }
  std::ostringstream os;
  os << root;
  c.resolved_toml = os.str();
  return c;
}

}  // namespace wavg
