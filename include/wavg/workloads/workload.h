// A workload (DESIGN.md §3): a data set, a model, a loss, a validation metric with a direction, a
// default step budget and a default target. Everything is deterministic given the seed: the training
// batch for a step is a pure function of (seed, step), so a run can resume from any step.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "wavg/workloads/defaults.h"

namespace wavg {

enum class Split { kTrain, kValidation, kTest };
Split parse_split(const std::string& s);  // "train", "validation", "test"

struct Evaluation {
  double value = 0;  // the metric over this process's rows of the split
  double loss = 0;   // mean loss
  // Sufficient statistics of those rows, which data-parallel ranks sum (value = metric_sum / count,
  // loss = loss_sum / count): count rows (or predicted bytes), metric_sum the metric's numerator.
  double metric_sum = 0, loss_sum = 0, count = 0;
  // A metric that is not a mean over rows (average precision ranks every example of the split)
  // needs the rows themselves: this process's per-row values in the workload's layout, which
  // data-parallel ranks gather in rank order for Workload::metric_of_rows. Empty otherwise.
  std::vector<float> rows;
};

// Rows [first, first + count) of n that data-parallel rank `rank` of `world` takes.
inline std::pair<int64_t, int64_t> shard_rows(int64_t n, int rank, int world) {
  return {n * rank / world, n * (rank + 1) / world - n * rank / world};
}

struct WorkloadOptions {
  int64_t seed = 0;
  int64_t batch_size = 0;  // 0: the default; data parallel: the global batch of all ranks
  // Data parallel: this rank's rows of every training batch (batch_size / world of them) and of
  // every evaluation set (shard_rows); the batches stay pure functions of (seed, step).
  int rank = 0, world = 1;
};

class Workload {
 public:
  virtual ~Workload() = default;
  virtual std::string name() const = 0;
  virtual std::string metric() const = 0;  // e.g. "error_rate"
  virtual bool lower_is_better() const { return true; }
  virtual std::shared_ptr<torch::nn::Module> model() = 0;
  // Mean loss on the training batch of the update that produces step + 1 (model in train mode).
  virtual at::Tensor train_loss(int64_t step) = 0;
  // A forward pass without gradients on training batch `index` of a separate, seeded stream
  // (BatchNorm statistics recomputation).
  virtual void forward_train_batch(int64_t index) = 0;
  // Metric and loss over a split, in eval mode, without gradients.
  virtual Evaluation evaluate(Split split) = 0;
  // True when the metric needs every row of the split (Evaluation::rows) rather than sums.
  virtual bool metric_needs_all_rows() const { return false; }
  // The metric of the whole split from the rows of all ranks, concatenated in rank order (only for
  // workloads whose metric_needs_all_rows()).
  virtual double metric_of_rows(const std::vector<float>& rows) const;
};

// Loads the data (from Debian packages or generated) and builds the model from the seed. A missing
// data package is a wavg::Error naming the package and the command that installs it.
std::unique_ptr<Workload> make_workload(const std::string& name, const WorkloadOptions& options);

}  // namespace wavg
