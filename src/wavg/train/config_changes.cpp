// What differs between a run's configuration and the one it is resumed (or reused) with: typed
// resolved values compared key by key, and the rule of each key (config_keys.h) on whether it may.
#include <map>

#include "wavg/train/config.h"
#include "wavg/train/config_keys.h"

namespace wavg {

namespace {

// Every written key of c as "key" -> value text, a list's elements as key[i].
std::map<std::string, std::string> shown_fields(const RunConfig& c) {
  std::map<std::string, std::string> out;
  for (const detail::ConfigField& f : detail::config_fields(c)) {
    if (const auto* list = std::get_if<std::vector<double>>(&f.value)) {
      for (size_t i = 0; i < list->size(); ++i)
        out[f.key + "[" + std::to_string(i) + "]"] = detail::shown((*list)[i]);
    } else {
      out[f.key] = detail::shown(f.value);
    }
  }
  return out;
}

// Zero thread counts as the defaults they stand for (default_threads()), as run_training applies them.
ThreadSettings threads_in_force(ThreadSettings t) {
  const ThreadSettings d = default_threads();
  if (t.intra_op <= 0) t.intra_op = d.intra_op;
  if (t.blas <= 0) t.blas = d.blas;
  if (t.averaging <= 0) t.averaging = d.averaging;
  return t;
}

}  // namespace

std::vector<ConfigChange> config_changes(const RunConfig& run, const RunConfig& now) {
  RunConfig r = run, n = now;
  r.threads = threads_in_force(run.threads);
  n.threads = threads_in_force(now.threads);
  std::map<std::string, std::string> a = shown_fields(r), b = shown_fields(n);
  std::vector<ConfigChange> out;
  for (const auto& [k, v] : a)
    if (!b.count(k) || b[k] != v) out.push_back({0, k, v, b.count(k) ? b[k] : "unset"});
  for (const auto& [k, v] : b)
    if (!a.count(k)) out.push_back({0, k, "unset", v});
  return out;
}

bool may_change_on_resume(const ConfigChange& change) {
  return detail::on_resume_of(change.key) == detail::OnResume::kMayChange;
}

std::string describe(const ConfigChange& c) {
  return c.key + " (run: " + c.old_value + ", now: " + c.new_value + ")";
}

std::vector<ConfigChange> refused_changes(const RunConfig& run, const RunConfig& now) {
  std::vector<ConfigChange> out;
  for (ConfigChange& c : config_changes(run, now))
    if (!may_change_on_resume(c)) out.push_back(std::move(c));
  return out;
}

}  // namespace wavg
