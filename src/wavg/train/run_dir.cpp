// The run directory: what wavg writes there, creating it, and removing a previous run (--overwrite)
// with std::filesystem, never through a shell.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <set>

#include "wavg/core/error.h"
#include "wavg/io/atomic_file.h"
#include "wavg/io/path_names.h"
#include "wavg/train/run_loop.h"
#include "wavg/workloads/defaults.h"

namespace wavg {

namespace fs = std::filesystem;

using detail::ends_with;
using detail::starts_with;

bool run_dir_entry_is_wavg(const std::string& name) {
  static const std::set<std::string> fixed = {
      "config.toml", "metrics.jsonl", "summary.json",      "state",      "checkpoints",
      "sweep.jsonl", "sweep_summary.csv", "report.html", "phema", "config_changes.jsonl"};
  if (fixed.count(name)) return true;
  // Final models (final_raw, final_NAME) and averages saved by `wavg sweep --save-averages`.
  if ((starts_with(name, "final_") || starts_with(name, "sweep_")) && ends_with(name, ".safetensors"))
    return true;
  // A named temporary of an atomic write (io/atomic_file) left by a killed process, in today's
  // naming (TARGET.tmp.HOST.PID.RANDOM) or the older TARGET.tmp.PID.
  if (const auto t = parse_temporary_name(name)) return run_dir_entry_is_wavg(t->target);
  const auto t = name.rfind(".tmp.");
  if (t == std::string::npos || t + 5 == name.size()) return false;
  const std::string pid = name.substr(t + 5);
  return std::all_of(pid.begin(), pid.end(), [](unsigned char c) { return std::isdigit(c); }) &&
         run_dir_entry_is_wavg(name.substr(0, t));
}

namespace {

// A run made under another definition of its workload (WorkloadDefaults::definition) is refused
// unless force; forced, it continues under today's definition.
void accept_definition(RunConfig& c, bool force, const std::string& what, const std::string& run_dir) {
  const int64_t today = workload_defaults(c.workload).definition;
  if (c.workload_version == today) return;
  WAVG_CHECK(force, what, ": ", run_dir, " was made under workload '", c.workload, "' definition ",
             c.workload_version, "; this wavg has definition ", today,
             " (its model or data generator changed); pass --force to use definition ", today);
  std::fprintf(stderr, "wavg: warning: %s --force: %s was made under workload '%s' definition %lld; "
               "using definition %lld\n", what.c_str(), run_dir.c_str(), c.workload.c_str(),
               (long long)c.workload_version, (long long)today);
  c.workload_version = today;
}

}  // namespace

RunConfig recorded_run_config(const std::string& run_dir, bool force, const std::string& what) {
  std::error_code ec;
  WAVG_CHECK(fs::is_directory(run_dir, ec), what, ": ", run_dir,
             " holds no run (the directory does not exist)");
  const std::string path = run_config_path(run_dir);
  WAVG_CHECK(fs::exists(path, ec), what, ": ", run_dir, " holds no run (no config.toml): it was ",
             "stopped before it started; start it with wavg train --config FILE --set out=", run_dir);
  ConfigSource source;
  RunConfig c = load_run_config(path, {}, &source);
  accept_definition(c, force, what, run_dir);
  if (source.resolved) return c;
  WAVG_CHECK(force, what, ": ", path, " is a raw configuration (written by an older wavg): the ",
             "values it leaves out would come from today's defaults, which may differ from the ",
             "run's; pass --force to use today's defaults");
  std::string list;
  for (const auto& d : source.defaulted) list += (list.empty() ? "" : ", ") + d;
  std::fprintf(stderr, "wavg: warning: %s --force: %s is a raw configuration; taken from today's "
               "defaults: %s\n", what.c_str(), path.c_str(), list.empty() ? "nothing" : list.c_str());
  return c;
}

namespace detail {

namespace {

// Removes every entry of a previous run; refuses, before removing anything, an entry wavg did not
// write (naming it), so that a mistyped 'out' never deletes a user's files.
void remove_previous_run(const std::string& dir) {
  std::vector<fs::path> entries;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    entries.push_back(it->path());
  WAVG_CHECK(!ec, "--overwrite: cannot list run directory '", dir, "' (", ec.message(), ")");
  std::sort(entries.begin(), entries.end());
  for (const fs::path& p : entries)
    WAVG_CHECK(run_dir_entry_is_wavg(p.filename().string()), "--overwrite: run directory '", dir,
               "' holds '", p.filename().string(),
               "', which wavg did not write there; move it away or choose another 'out'");
  for (const fs::path& p : entries) {
    fs::remove_all(p, ec);
    WAVG_CHECK(!ec, "--overwrite: cannot remove '", p.string(), "' (", ec.message(), ")");
  }
}

}  // namespace

void prepare_run_dir(const std::string& dir, const RunOptions& options) {
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  WAVG_CHECK(!fs::exists(st) || fs::is_directory(st), "run directory '", dir,
             "' is not a directory (a file of that name exists); choose another 'out'");
  WAVG_CHECK(!options.resume || fs::is_directory(st), "resume: run directory '", dir,
             "' does not exist");
  fs::create_directories(dir, ec);
  WAVG_CHECK(!ec, "cannot create run directory '", dir, "' (", ec.message(), ")");
  if (options.overwrite) {
    remove_previous_run(dir);
  } else if (!options.resume) {
    for (const char* f : {"config.toml", "metrics.jsonl", "summary.json"})
      WAVG_CHECK(!fs::exists(fs::path(dir) / f, ec), "run directory '", dir,
                 "' already holds a run (", f, "); resume it with --resume ", dir,
                 ", or choose another 'out', or pass --overwrite");
  }
}

}  // namespace detail
}  // namespace wavg
