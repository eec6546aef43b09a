// Checks of a run's state (checkpoint.h) before anything is loaded from it: every count, index,
// offset and size a state holds is checked against the run it would be loaded into, so that a
// damaged or foreign state is refused with one wavg::Error naming the file and the field (and
// resume falls back to an older state) instead of reaching an index or an allocation.
#pragma once

#include <cstdint>
#include <string>

#include "wavg/train/checkpoint.h"

namespace torch::nn {
class Module;
}

namespace wavg::detail {

// The files of a state written by `world` ranks (model, optimizer, each rank's bank and generator).
std::vector<std::string> state_file_names(int64_t world);

// RUN_DIR/state/step_N/manifest.json, each field checked: step (= N, the directory's), world_size
// in [1, 65536], the file list (exactly state_file_names(world_size), each with its size and CRC-32,
// both verified), wall times (finite, >= 0), metrics_bytes (at most metrics.jsonl's length, at the
// end of a line), config_hash (a string), stop_reason ("", "budget" or "early_stop").
StateCounters read_manifest(const std::string& dir, const std::string& run_dir);

// model.safetensors: its step (metadata) is the manifest's; every parameter and buffer of the module
// is there with the module's shape and dtype.
void check_model_file(const std::string& path, torch::nn::Module& module, int64_t step);

// optimizer.pt (LibTorch's archive) against the optimizer it would be loaded into: its parameter
// groups and their sizes; each parameter's moments (exp_avg, exp_avg_sq, max_exp_avg_sq,
// momentum_buffer, Schedule-Free's z and x, Lookahead's slow weights) have that parameter's shape;
// every step count lies in [0, step] and the largest is `step` (the manifest's).
void check_optimizer_file(const std::string& path, const std::string& bytes,
                          torch::optim::Optimizer& optimizer, int64_t step);

// rng.bin: exactly the size of this build's CPU generator state.
void check_rng_file(const std::string& path, size_t bytes);

}  // namespace wavg::detail
