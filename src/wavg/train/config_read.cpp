// Reading a run configuration: the TOML file, `--set` overrides, the workload's defaults for what
// is left out, and the marker of a resolved file; the bank's tables are read by config_read_bank.cpp.
#include <cmath>
#include <set>
#include <toml++/toml.h>

#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/train/config.h"
#include "wavg/train/config_keys.h"
#include "wavg/train/config_reader.h"
#include "wavg/workloads/defaults.h"

namespace wavg {

namespace {

using detail::ConfigValue;
using detail::kResolvedFormat;
using detail::Reader;
using detail::shown;
using detail::show;
using detail::table_at;
using detail::toml_string;
using detail::type_name;

// The keys of the root table: config_fields' top-level keys, its tables and the bank's arrays.
std::set<std::string> top_level_keys() {
  std::set<std::string> keys = {"wavg", "threads", "optimizer", "schedule"};
  for (Scheme s : kBankOrder) keys.insert(scheme_name(s));
  for (const std::string& k : detail::top_level_key_names()) keys.insert(k);
  return keys;
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
  WAVG_CHECK(eq != std::string::npos && eq > 0, "--set: expected key=value, got ", shown(ConfigValue(kv)));
  const std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
  for (char ch : key)
    WAVG_CHECK(std::isalnum((unsigned char)ch) || ch == '_' || ch == '-' || ch == '.',
               "--set: ", shown(ConfigValue(key)), " is not a key (letters, digits, _, - and . only)");
  if (value.find_first_of("\r\n") == std::string::npos) {
    try {
      return toml::parse(key + " = " + value);
    } catch (const toml::parse_error&) {
    }
  }
  try {
    return toml::parse(key + " = " + toml_string(value));
  } catch (const toml::parse_error& e) {
    throw Error("--set: cannot parse " + shown(ConfigValue(kv)) + " (" + std::string(e.description()) + ")");
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

// Whether the file is a resolved config ([wavg] resolved = true).
bool read_marker(const Reader& root, ConfigSource* source) {
  const toml::table* t = table_at(root, "wavg");
  if (!t) return false;
  Reader r(*t, "wavg.", nullptr);
  r.allow({"resolved", "format"});
  const int64_t format = r.opt<int64_t>("format").value_or(kResolvedFormat);
  WAVG_CHECK(format == kResolvedFormat, "config: 'wavg.format' is ", format, "; this wavg reads format ",
             kResolvedFormat, " (a newer wavg wrote it)");
  const bool resolved = r.opt<bool>("resolved").value_or(false);
  if (source) source->resolved = resolved;
  return resolved;
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

RunConfig from_table(const toml::table& root, ConfigSource* source) {
  Reader r(root, "", source ? &source->defaulted : nullptr);
  r.allow(top_level_keys());
  const bool resolved = read_marker(r, source);
  RunConfig c;
  std::string known;
  for (const auto& n : workload_names()) known += (known.empty() ? "" : ", ") + n;
  const auto workload = r.opt<std::string>("workload");
  WAVG_CHECK(workload.has_value(), "config: 'workload' is required (one of ", known, ")");
  c.workload = *workload;
  const WorkloadDefaults d = workload_defaults(c.workload);
  // A resolved file records the definition it was made under (1 where unwritten); a new
  // configuration is made under today's.
  c.workload_version = r.opt<int64_t>("workload_version").value_or(resolved ? 1 : d.definition);
  read_top(r, d, c);
  read_optimizer(r, d, c);
  read_schedule(r, d, c);
  read_averagers(r, c);
  validate(c);
  return c;
}

}  // namespace

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

}  // namespace wavg
