// metrics.jsonl, the run's evaluation log: one JSON object per line and per (step, model),
//   {"step":50,"model":"raw","metric":"error_rate","value":0.12,"loss":0.35,"lr":0.002,"train_wall_s":1.2}
// The one writer and the one reader of that format (the runner, the study and the report use them).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "wavg/core/target.h"

namespace wavg {

struct MetricRecord {
  int64_t step = 0;
  std::string model;   // "raw" or an averager's name
  std::string metric;  // the workload's validation metric
  double value = 0;    // the metric on the validation split
  double loss = 0;     // the training loss function on the validation split
  double lr = 0;       // the learning rate in force at `step`
  double train_wall_s = 0;  // training time so far, evaluation excluded (seconds)
};

// One line, without the newline.
std::string metrics_line(const MetricRecord& r);

// Reads a metrics log. max_bytes >= 0 reads only its first max_bytes bytes (a resumed run's log up
// to its state). A malformed line is a wavg::Error naming the file and the line number; a missing
// file is a wavg::Error naming it.
std::vector<MetricRecord> read_metrics(const std::string& path, int64_t max_bytes = -1);

// One model's curve, in step order.
struct ModelCurve {
  std::string model;
  std::vector<CurvePoint> points;
};
// The records grouped by model, models in order of first appearance.
std::vector<ModelCurve> curves_by_model(const std::vector<MetricRecord>& records);

}  // namespace wavg
