// metrics.jsonl writer and reader (see metrics_log.h).
#include "wavg/io/metrics_log.h"

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "wavg/core/error.h"

namespace wavg {

std::string metrics_line(const MetricRecord& r) {
  const nlohmann::ordered_json j = {{"step", r.step},   {"model", r.model}, {"metric", r.metric},
                                    {"value", r.value}, {"loss", r.loss},   {"lr", r.lr},
                                    {"train_wall_s", r.train_wall_s}};
  return j.dump();
}

namespace {

double number_or_nan(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nan("");  // NaN is written as null by nlohmann
  return it->get<double>();
}

}  // namespace

std::vector<MetricRecord> read_metrics(const std::string& path, int64_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  WAVG_CHECK(in.good(), "cannot read metrics log ", path);
  std::vector<MetricRecord> out;
  std::string line;
  int64_t consumed = 0, line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    consumed += int64_t(line.size()) + 1;
    if (max_bytes >= 0 && consumed > max_bytes) break;
    if (line.empty()) continue;
    try {
      const nlohmann::json j = nlohmann::json::parse(line);
      MetricRecord r;
      r.step = j.at("step").get<int64_t>();
      r.model = j.at("model").get<std::string>();
      r.metric = j.value("metric", std::string());
      r.value = number_or_nan(j, "value");
      r.loss = number_or_nan(j, "loss");
      r.lr = number_or_nan(j, "lr");
      r.train_wall_s = number_or_nan(j, "train_wall_s");
      out.push_back(std::move(r));
    } catch (const nlohmann::json::exception&) {
      throw Error("metrics log " + path + ": line " + std::to_string(line_no) +
                  " is not a metrics record (step, model, value)");
    }
  }
  return out;
}

std::vector<ModelCurve> curves_by_model(const std::vector<MetricRecord>& records) {
  std::vector<ModelCurve> out;
  std::map<std::string, size_t> index;
  for (const MetricRecord& r : records) {
    auto [it, fresh] = index.emplace(r.model, out.size());
    if (fresh) out.push_back({r.model, {}});
    out[it->second].points.push_back({r.step, r.value});
  }
  return out;
}

}  // namespace wavg
