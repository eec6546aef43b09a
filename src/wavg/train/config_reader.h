// Reading a run configuration's TOML (internal to train/): typed access to one table with errors
// naming the key and the value, and the readers of the bank's [[scheme]] tables.
#pragma once

#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <toml++/toml.h>
#include <vector>

#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/train/config.h"
#include "wavg/train/config_keys.h"

namespace wavg::detail {

inline std::string type_name(const toml::node& n) {
  if (n.is_string()) return "a string";
  if (n.is_integer()) return "an integer";
  if (n.is_floating_point()) return "a float";
  if (n.is_boolean()) return "a boolean";
  if (n.is_table()) return "a table";
  if (n.is_array()) return "an array";
  return "a date/time";
}

// A scalar as a person reads it ("a table"/"an array" for those).
inline std::string show(const toml::node& n) {
  if (n.is_string()) return toml_string(std::string(n.as_string()->get()));
  if (n.is_integer()) return std::to_string(n.as_integer()->get());
  if (n.is_floating_point()) return format_exact(n.as_floating_point()->get());
  if (n.is_boolean()) return n.as_boolean()->get() ? "true" : "false";
  if (n.is_table() || n.is_array()) return type_name(n);
  std::ostringstream os;
  n.visit([&](auto&& v) { os << v; });
  return os.str();
}

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
    note(key, shown(ConfigValue(fallback)));
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
inline const toml::table* table_at(const Reader& r, const char* key) {
  const toml::node* n = r.node(key);
  if (!n) return nullptr;
  WAVG_CHECK(n->is_table(), "config: '", r.full(key), "' must be a table, got ", type_name(*n),
             " ", show(*n));
  return n->as_table();
}

// Appends the averagers of every [[scheme]] array of the root table to c.averagers, in kBankOrder.
void read_averagers(const Reader& root, RunConfig& c);

}  // namespace wavg::detail
