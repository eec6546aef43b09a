// Paths and file names as the checkpoint readers and writers (and the run directory) use them: their
// parts, the shard index's suffix, and a path as a message quotes it. Internal (not installed).
#pragma once

#include <string>

#include "wavg/core/error.h"

namespace wavg::detail {

// The ending of a sharded checkpoint's index file (model.safetensors.index.json).
inline constexpr const char* kShardIndexSuffix = ".safetensors.index.json";

inline bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The directory part of a path ("." for a bare name, "/" for a file at the root).
inline std::string dir_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

inline std::string base_name(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// A path (or a file name) as a message shows it: in single quotes, odd bytes escaped, at most 200
// characters ("'runs/a\\x0a'").
inline std::string quoted_path(const std::string& path) { return "'" + quote_bytes(path, 200) + "'"; }

}  // namespace wavg::detail
