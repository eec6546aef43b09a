// summary.json (written once a run finished: its presence marks the run finished) and the summary
// table printed by `wavg train`.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/io/atomic_file.h"
#include "wavg/train/run_loop.h"

namespace wavg {

namespace detail {

nlohmann::ordered_json change_json(const ConfigChange& c) {
  return {{"step", c.step}, {"key", c.key}, {"old", c.old_value}, {"new", c.new_value}};
}

ConfigChange change_of_json(const nlohmann::json& j) {
  return {j.at("step").get<int64_t>(), j.at("key").get<std::string>(),
          j.at("old").get<std::string>(), j.at("new").get<std::string>()};
}

void write_summary(const std::string& run_dir, const RunSummary& s) {
  using json = nlohmann::ordered_json;
  json js;
  js["workload"] = s.workload;
  js["metric"] = s.metric;
  js["lower_is_better"] = s.lower_is_better;
  js["target"] = s.target;
  js["steps"] = s.steps;
  js["steps_done"] = s.steps_done;
  js["stop_reason"] = s.stop_reason;  // "budget" or "early_stop"
  js["config_hash"] = s.config_hash;
  js["train_wall_s"] = s.train_wall_s;
  js["eval_wall_s"] = s.eval_wall_s;
  js["averager_state_bytes_per_param"] = s.averager_state_bytes_per_param;
  js["config_changes"] = json::array();
  for (const ConfigChange& c : s.config_changes) js["config_changes"].push_back(change_json(c));
  js["models"] = json::array();
  for (const auto& ms : s.models) {
    json m;
    m["model"] = ms.model;
    m["description"] = ms.description;
    m["steps_to_target"] = ms.steps_to_target ? json(*ms.steps_to_target) : json(nullptr);
    m["best_value"] = ms.best_step >= 0 ? json(ms.best_value) : json(nullptr);
    m["best_step"] = ms.best_step;
    js["models"].push_back(m);
  }
  write_file_atomic(run_dir + "/summary.json", js.dump(2) + "\n");
}

RunSummary read_summary(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  WAVG_CHECK(in.good(), "cannot read ", path);
  try {
    const auto j = nlohmann::json::parse(in);
    RunSummary s;
    s.workload = j.at("workload").get<std::string>();
    s.metric = j.at("metric").get<std::string>();
    s.lower_is_better = j.at("lower_is_better").get<bool>();
    s.target = j.at("target").get<double>();
    s.steps = j.value("steps", int64_t(0));
    s.steps_done = j.at("steps_done").get<int64_t>();
    s.stop_reason = j.value("stop_reason", std::string("budget"));  // older runs: no key
    s.config_hash = j.value("config_hash", std::string());
    s.train_wall_s = j.value("train_wall_s", 0.0);
    s.eval_wall_s = j.value("eval_wall_s", 0.0);
    s.averager_state_bytes_per_param = j.value("averager_state_bytes_per_param", 0.0);
    if (j.contains("config_changes"))  // absent before issue 21
      for (const auto& c : j.at("config_changes")) s.config_changes.push_back(change_of_json(c));
    for (const auto& m : j.at("models")) {
      ModelSummary ms;
      ms.model = m.at("model").get<std::string>();
      ms.description = m.value("description", std::string());
      if (!m.at("steps_to_target").is_null())
        ms.steps_to_target = m.at("steps_to_target").get<int64_t>();
      ms.best_step = m.at("best_step").get<int64_t>();
      if (!m.at("best_value").is_null()) ms.best_value = m.at("best_value").get<double>();
      s.models.push_back(ms);
    }
    WAVG_CHECK(!s.models.empty(), path, " lists no models");
    return s;
  } catch (const nlohmann::json::exception&) {
    throw Error(path + " is not a run summary (damaged JSON or missing fields)");
  }
}

std::vector<ConfigChange> read_config_changes(const std::string& run_dir) {
  const std::string path = run_dir + "/config_changes.jsonl";
  std::vector<ConfigChange> out;
  std::ifstream in(path, std::ios::binary);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    try {
      out.push_back(change_of_json(nlohmann::json::parse(line)));
    } catch (const nlohmann::json::exception&) {
      throw Error(path + ": line " + std::to_string(out.size() + 1) + " is not a config change");
    }
  }
  return out;
}

void append_config_changes(const std::string& run_dir, const std::vector<ConfigChange>& changes) {
  std::string text;
  for (const ConfigChange& c : read_config_changes(run_dir)) text += change_json(c).dump() + "\n";
  for (const ConfigChange& c : changes) text += change_json(c).dump() + "\n";
  write_file_atomic(run_dir + "/config_changes.jsonl", text);
}

}  // namespace detail

std::optional<RunSummary> finished_run(const std::string& run_dir) {
  const std::string path = run_dir + "/summary.json";
  if (!file_exists(path)) return std::nullopt;
  return detail::read_summary(path);
}

std::string format_summary(const RunSummary& s) {
  std::string out;
  char buf[512];
  std::snprintf(buf, sizeof buf, "%-22s %16s %10s   best %s (step)\n", "model", "steps to target",
                "% of raw", s.metric.c_str());
  out += buf;
  const auto& raw = s.models.front();
  for (const auto& m : s.models) {
    const std::string stt = m.steps_to_target ? std::to_string(*m.steps_to_target) : "not reached";
    std::string pct = "-";
    if (m.steps_to_target && raw.steps_to_target)
      pct = format_fixed(100.0 * double(*m.steps_to_target) / double(*raw.steps_to_target), 1);
    const std::string best = m.best_step >= 0 ? format_fixed(m.best_value, 4) + " (" +
                                                    std::to_string(m.best_step) + ")"
                                              : "-";
    std::snprintf(buf, sizeof buf, "%-22s %16s %10s   %s\n", m.model.c_str(), stt.c_str(),
                  pct.c_str(), best.c_str());
    out += buf;
  }
  const char* why = s.stop_reason == "early_stop" ? " (early stop: every model reached the target)" : "";
  std::snprintf(buf, sizeof buf, "target: %s %s %s; %lld of %lld steps%s, %s s training + %s s evaluation\n",
                s.metric.c_str(), s.lower_is_better ? "<=" : ">=", format_number(s.target).c_str(),
                (long long)s.steps_done, (long long)s.steps, why,
                format_fixed(s.train_wall_s, 1).c_str(), format_fixed(s.eval_wall_s, 1).c_str());
  out += buf;
  return out;
}

}  // namespace wavg
