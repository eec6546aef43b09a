// The table of a run configuration's keys, and what is read off it: the resolved TOML, the config
// hash and the typed comparison of two configurations (config_changes).
#include "wavg/train/config_keys.h"

#include <cstdio>
#include <iterator>
#include <map>

#include "wavg/core/format.h"

namespace wavg {

namespace detail {

namespace {

// One key outside [optimizer] and the banks: where its value is in a RunConfig.
struct RunKey {
  const char* key;
  ConfigValue (*get)(const RunConfig&);
  OnResume on_resume = OnResume::kFixed;
  const char* unit = nullptr;
  bool (*written)(const RunConfig&) = nullptr;  // nullptr: always
};

// Keys written before [optimizer], in their order ("threads.x" under [threads]).
const std::vector<RunKey>& run_keys() {
  using R = const RunConfig&;
  static const std::vector<RunKey> keys = {
      {"workload", [](R c) -> ConfigValue { return c.workload; }},
      // Definition 1 is unwritten: the runs made before versions began keep their hashes.
      {"workload_version", [](R c) -> ConfigValue { return c.workload_version; }, OnResume::kFixed,
       nullptr, [](R c) { return c.workload_version != 1; }},
      {"seed", [](R c) -> ConfigValue { return c.seed; }},
      {"steps", [](R c) -> ConfigValue { return c.steps; }},
      {"eval_every", [](R c) -> ConfigValue { return c.eval_every; }},
      {"target", [](R c) -> ConfigValue { return c.target; }},
      {"out", [](R c) -> ConfigValue { return c.out; }, OnResume::kWhere},
      {"batch_size", [](R c) -> ConfigValue { return c.batch_size; }},
      {"early_stop", [](R c) -> ConfigValue { return c.early_stop; }},
      {"ckpt_every", [](R c) -> ConfigValue { return c.ckpt_every; }},
      {"state_every", [](R c) -> ConfigValue { return c.state_every; }},
      {"keep_states", [](R c) -> ConfigValue { return c.keep_states; }},
      {"async_averaging", [](R c) -> ConfigValue { return c.async_averaging; }},
      // A run continues on another device within floating-point tolerance, not bit-identically.
      {"device", [](R c) -> ConfigValue { return c.device; }, OnResume::kMayChange},
      // How long to wait, not what is computed.
      {"dist_timeout", [](R c) -> ConfigValue { return c.dist_timeout; }, OnResume::kMayChange,
       "seconds"},
      {"threads.intra_op", [](R c) -> ConfigValue { return int64_t(c.threads.intra_op); },
       OnResume::kMayChange},
      {"threads.blas", [](R c) -> ConfigValue { return int64_t(c.threads.blas); },
       OnResume::kMayChange},
      {"threads.averaging", [](R c) -> ConfigValue { return int64_t(c.threads.averaging); },
       OnResume::kMayChange},
  };
  return keys;
}

// Keys written after [optimizer], under [schedule].
const std::vector<RunKey>& schedule_keys() {
  using R = const RunConfig&;
  static const std::vector<RunKey> keys = {
      {"schedule.kind",
       [](R c) -> ConfigValue { return std::string(schedule_kind_name(c.schedule.kind)); }},
      {"schedule.warmup", [](R c) -> ConfigValue { return c.schedule.warmup_steps; },
       OnResume::kFixed, "steps"},
      {"schedule.total_steps", [](R c) -> ConfigValue { return c.schedule.total_steps; }},
      {"schedule.final_fraction", [](R c) -> ConfigValue { return c.schedule.final_fraction; }},
      {"schedule.decay_fraction", [](R c) -> ConfigValue { return c.schedule.decay_fraction; }},
  };
  return keys;
}

void add_run_keys(const std::vector<RunKey>& keys, const RunConfig& c, std::vector<ConfigField>* out) {
  for (const RunKey& k : keys)
    if (!k.written || k.written(c)) out->push_back({k.key, k.get(c), k.on_resume, k.unit});
}

void add_optimizer_keys(const OptimizerConfig& o, std::vector<ConfigField>* out) {
  for (const OptimizerKey& k : optimizer_keys()) {
    if (k.acts && !k.acts(o)) continue;
    ConfigValue v;
    std::visit([&](auto field) { v = o.*field; }, k.field);
    out->push_back({std::string("optimizer.") + k.key, v, OnResume::kFixed, k.unit});
  }
}

// One averager's keys under "KEY." (averager_key), the scheme's own ones where they apply.
void add_averager_keys(const AveragerEntry& e, const std::string& key, std::vector<ConfigField>* out) {
  const SchemeOptions& o = e.averager;
  const std::string p = key + ".";
  const auto add = [&](const char* key, ConfigValue v, const char* unit = nullptr) {
    out->push_back({p + key, std::move(v), OnResume::kFixed, unit});
  };
  add("name", o.name().empty() ? default_name(o) : o.name());
  o.visit(Overloaded{[&](const LawaOptions& l) { add("window", l.window()); },
                     [&](const LawaExpOptions& x) {
                       add("window", x.window());
                       add("alpha", x.alpha());
                     },
                     [&](const EmaOptions& m) { add("beta", m.beta()); },
                     [&](const SwaOptions&) {},
                     [&](const PhemaOptions& h) {
                       add("sigma_rel", h.sigma_rels());
                       add("snapshot_every", e.snapshot_every, "steps");
                     }});
  add("every", o.every());
  add("start", o.start(), "steps");
  add("buffers", std::string(buffer_policy_name(e.buffers)));
  add("recompute_batches", e.recompute_batches);
  if (e.eval_every > 0) add("eval_every", e.eval_every);  // 0 (the run's): unwritten
}

// A value as TOML writes it.
std::string toml_text(const ConfigValue& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return toml_string(*s);
  if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&v)) return toml_float(*d);
  if (const auto* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
  std::string list;
  for (double x : std::get<std::vector<double>>(v)) list += (list.empty() ? "" : ", ") + toml_float(x);
  return "[" + list + "]";
}

std::string render(const std::vector<ConfigField>& fields) {
  std::string out = "wavg = {resolved = true, format = " + std::to_string(kResolvedFormat) +
                    "}  # every effective value of the run\n";
  std::string table;
  for (const ConfigField& f : fields) {
    const auto dot = f.key.rfind('.');
    const std::string t = dot == std::string::npos ? "" : f.key.substr(0, dot);
    if (t != table) {
      const auto bracket = t.find('[');
      out += bracket == std::string::npos ? "\n[" + t + "]\n" : "\n[[" + t.substr(0, bracket) + "]]\n";
      table = t;
    }
    out += f.key.substr(dot + 1) + " = " + toml_text(f.value) + (f.unit ? std::string("  # ") + f.unit : "") + "\n";
  }
  return out;
}

}  // namespace

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

std::string toml_float(double v) {
  std::string s = format_exact(v);
  if (s.find_first_of(".eEni") == std::string::npos) s += ".0";
  return s;
}

std::string shown(const ConfigValue& v) {
  if (const auto* d = std::get_if<double>(&v)) return format_exact(*d);
  return toml_text(v);
}

std::vector<const AveragerEntry*> bank_order(const RunConfig& c) {
  std::vector<const AveragerEntry*> out;
  for (Scheme s : kBankOrder)
    for (const AveragerEntry& e : c.averagers)
      if (e.averager.scheme() == s) out.push_back(&e);
  return out;
}

std::string averager_key(const RunConfig& c, const AveragerEntry& e) {
  int index = 0;
  for (const AveragerEntry& other : c.averagers) {
    if (&other == &e) break;
    index += other.averager.scheme() == e.averager.scheme();
  }
  return std::string(scheme_name(e.averager.scheme())) + "[" + std::to_string(index) + "]";
}

std::vector<ConfigField> config_fields(const RunConfig& c) {
  std::vector<ConfigField> out;
  add_run_keys(run_keys(), c, &out);
  add_optimizer_keys(c.optimizer, &out);
  add_run_keys(schedule_keys(), c, &out);
  for (const AveragerEntry* e : bank_order(c)) add_averager_keys(*e, averager_key(c, *e), &out);
  return out;
}

std::vector<std::string> top_level_key_names() {
  std::vector<std::string> out;
  for (const RunKey& k : run_keys())
    if (std::string(k.key).find('.') == std::string::npos) out.push_back(k.key);
  return out;
}

OnResume on_resume_of(const std::string& key) {
  for (const RunKey& k : run_keys())
    if (key == k.key) return k.on_resume;
  return OnResume::kFixed;
}

}  // namespace detail

int bank_rank(Scheme s) {
  int rank = 0;
  while (rank < int(std::size(kBankOrder)) && kBankOrder[rank] != s) ++rank;
  return rank;
}

std::string resolved_toml(const RunConfig& c) { return detail::render(detail::config_fields(c)); }

std::string config_hash(const RunConfig& c) {
  // The keys that may change on resume, and out, at the values of a default configuration.
  RunConfig neutral;
  neutral.out = "-";
  std::map<std::string, detail::ConfigValue> fixed;
  for (detail::ConfigField& f : detail::config_fields(neutral))
    if (f.on_resume != detail::OnResume::kFixed) fixed[f.key] = f.value;
  std::vector<detail::ConfigField> fields = detail::config_fields(c);
  for (detail::ConfigField& f : fields)
    if (f.on_resume != detail::OnResume::kFixed) f.value = fixed.at(f.key);
  const std::string text = detail::render(fields);
  uint64_t x = 14695981039346656037ull;  // FNV-1a 64: offset basis, then xor and multiply per byte
  for (unsigned char ch : text) {
    x ^= ch;
    x *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)x);
  return buf;
}

}  // namespace wavg
