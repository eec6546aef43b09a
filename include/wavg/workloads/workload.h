// A workload (DESIGN.md §3): a data set, a model, a loss, a validation metric with a direction, a
// default step budget and a default target. Everything is deterministic given the seed: the training
// batch for a step is a pure function of (seed, step), so a run can resume from any step.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "wavg/workloads/defaults.h"

namespace wavg {

enum class Split { kTrain, kValidation, kTest };
Split parse_split(const std::string& s);  // "train", "validation", "test"

struct Evaluation {
  double value = 0;  // the metric
  double loss = 0;   // mean loss
};

struct WorkloadOptions {
  int64_t seed = 0;
  int64_t batch_size = 0;  // 0: the default
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
};

// Loads the data (from Debian packages or generated) and builds the model from the seed. A missing
// data package is a wavg::Error naming the package and the command that installs it.
std::unique_ptr<Workload> make_workload(const std::string& name, const WorkloadOptions& options);

}  // namespace wavg
