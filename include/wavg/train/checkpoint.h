// Checkpoints of a run directory (DESIGN.md §5):
//   RUN_DIR/checkpoints/model_00001500.safetensors   the model (state-dict names; step and config
//                                                    hash in __metadata__), kept for offline sweeps
//   RUN_DIR/state/step_00001500/                     everything needed to continue: model, optimizer,
//       model.safetensors optimizer.pt bank.safetensors rng.bin manifest.json
//     data parallel over W processes: bank.rankR.safetensors and rng.rankR.bin per rank R (each
//       rank writes its bank shard), model and optimizer once (rank 0); the manifest, written by
//       rank 0 once every rank has written its part, records world_size.
// A state directory is written as step_N.tmp/ and renamed into place once complete; its
// manifest.json, written last, records every file's size and CRC-32, so a torn or corrupted state
// is detected and never loaded.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "wavg/torch/model_averager.h"

namespace torch::optim {
class Optimizer;
}

namespace wavg {

struct StateCounters {
  int64_t step = 0;
  double train_wall_s = 0, eval_wall_s = 0;
  uint64_t metrics_bytes = 0;  // length of metrics.jsonl when the state was written
  std::string config_hash;
  std::string stop_reason;  // "" while the run goes on; "budget" or "early_stop" once it finished
  int64_t world_size = 1;   // processes that wrote the state (data parallel)
};

// The data-parallel group a state is written and read by: this process's rank, the world size, and
// a barrier over all ranks. The default is one process.
struct StateGroup {
  int rank = 0, world = 1;
  std::function<void()> barrier;
};

std::string model_checkpoint_path(const std::string& run_dir, int64_t step);
// Model checkpoints in step order.
std::vector<std::pair<int64_t, std::string>> list_model_checkpoints(const std::string& run_dir);

// Every rank of `group` calls it; each writes its bank shard, rank 0 the rest and the manifest.
void save_state(const std::string& run_dir, const StateCounters& counters,
                torch::nn::Module& module, torch::optim::Optimizer& optimizer,
                ModelAverager& averager, const StateGroup& group = {});

struct FoundState {
  std::string dir;
  StateCounters counters;
};
// The newest state before step `before` whose manifest checks out (every field, and every file's
// size and CRC-32; train/state_check.h); `warn` hears about each one skipped.
std::optional<FoundState> find_state(const std::string& run_dir,
                                     const std::function<void(const std::string&)>& warn,
                                     int64_t before = std::numeric_limits<int64_t>::max());
// Whether this rank's part of a state fits the run, changing nothing: the model file's tensors and
// step, the optimizer state's parameter groups, shapes and step counts, the bank state's counters
// (each rank's shard, or every shard when resharding), the generator's size. Throws wavg::Error
// naming the file and the field; resume then falls back to an older state.
void check_state(const FoundState& state, torch::nn::Module& module,
                 torch::optim::Optimizer& optimizer, ModelAverager& averager,
                 const StateGroup& group = {});
// Loads a state that check_state accepted. A state written by another world size is resharded:
// the bank shard is cut from all the ranks' shards (the bank must already have this process's
// shard: ModelAverager::set_shard). The optimizer's options stay the run's (a forced change of
// betas, eps or weight decay takes effect); its state is the saved one.
void load_state(const FoundState& state, torch::nn::Module& module,
                torch::optim::Optimizer& optimizer, ModelAverager& averager,
                const StateGroup& group = {});
// Removes all but the newest `keep` states (and stale temporary ones).
void prune_states(const std::string& run_dir, int64_t keep);

uint32_t crc32_of(const std::string& bytes);

}  // namespace wavg
