// The one table of a run configuration's keys (internal to train/): for each key, its value in a
// RunConfig, when the resolved file writes it, a unit comment, and whether it may change when a
// run is resumed. resolved_toml, config_hash and config_changes are all read off this table.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "wavg/train/config.h"

namespace wavg::detail {

// Whether a key's value may differ when a run is resumed (or reused by a study).
enum class OnResume {
  kFixed,      // refused unless --force; part of config_hash
  kMayChange,  // warned about and recorded, not refused (how fast, where: not what is computed);
               // not part of config_hash
  kWhere,      // where the run is written (out): not part of config_hash; resume takes the run's
};

using ConfigValue = std::variant<std::string, int64_t, double, bool, std::vector<double>>;

// One written key of one configuration: "optimizer.lr", "lawa[0].window".
struct ConfigField {
  std::string key;
  ConfigValue value;
  OnResume on_resume = OnResume::kFixed;
  const char* unit = nullptr;  // written as a comment ("steps", "seconds")
};

// The keys of the root table that config_fields may write (a key written only sometimes too).
std::vector<std::string> top_level_key_names();

// Every key resolved_toml writes for c, in its order (the [wavg] marker aside): the top-level keys,
// [threads], [optimizer], [schedule], then each averager of bank_order(c) as [[scheme]] tables.
std::vector<ConfigField> config_fields(const RunConfig& c);

// The rule of a key as config_fields names it ("threads.blas", "device"); kFixed for keys that
// are not in the table ("world_size").
OnResume on_resume_of(const std::string& key);

// A value as a person reads it (and as config_changes records it): strings TOML-quoted, floats in
// their shortest exact form. A list is shown element by element (key[i]).
std::string shown(const ConfigValue& v);

// TOML basic string: quotes, backslashes and control characters escaped.
std::string toml_string(const std::string& s);
// A TOML float that reads back as the same double (never an integer literal).
std::string toml_float(double v);

// The bank in its canonical order (kBankOrder), each scheme's averagers in their listed order.
std::vector<const AveragerEntry*> bank_order(const RunConfig& c);
// "lawa[0]": the key of c's averager `e` in the configuration, its index among c's averagers of its
// scheme as listed (the [[lawa]] table it is read from and written to).
std::string averager_key(const RunConfig& c, const AveragerEntry& e);

// Version of the resolved layout ([wavg] format).
inline constexpr int64_t kResolvedFormat = 1;

}  // namespace wavg::detail
