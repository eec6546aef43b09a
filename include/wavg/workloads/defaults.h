// Names and defaults of the built-in workloads, without LibTorch (configs are parsed without it).
// They are read from the one workload table {name, defaults, make} in workloads/registry.cpp, which
// make_workload() (workload.h) reads too.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wavg {

// Defaults a config may override; sized so that a default run takes a few minutes on 2 cores.
struct WorkloadDefaults {
  int64_t steps = 1000;       // T, the step budget
  int64_t batch_size = 128;
  int64_t eval_every = 100;   // steps
  double target = 0;          // validation target of the metric
  double lr = 1e-3;           // a good NAdamW peak learning rate
  double weight_decay = 0.0;
  double warmup_fraction = 0.05;  // of T
  // Version of the workload's own definition: its model and its data generator. Bump it in the
  // workload table (registry.cpp) whenever either changes: it is part of the resolved config and
  // its hash, and a run made under another version is refused on resume, sweep and eval.
  int64_t definition = 1;
};

// What a run of the workload holds in memory, estimated from its model's shapes where they are
// declared (each workload's .cpp), for the resource check of a configuration (train/resource_check.h).
// Estimates, not measurements: they count every fp32 activation the forward pass keeps for the
// backward pass, twice (backward makes a gradient of each), and leave allocator slack to the check.
struct WorkloadFootprint {
  int64_t averaged_elements = 0;  // parameters and floating buffers: the bank's flat vector
  int64_t example_bytes = 0;      // one training example: its data, activations and their gradients
  int64_t data_bytes = 0;         // resident data set (training, validation and test splits)
  int64_t train_examples = 0;     // examples of a finite training split; 0: an endless stream
};

// The names of the table, in its order.
std::vector<std::string> workload_names();
// Throws wavg::Error for an unknown name, naming the known ones.
WorkloadDefaults workload_defaults(const std::string& name);
// Throws wavg::Error for an unknown name, naming the known ones.
WorkloadFootprint workload_footprint(const std::string& name);

}  // namespace wavg
