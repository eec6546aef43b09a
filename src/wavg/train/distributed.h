// Data-parallel training on torch.distributed's c10d (DESIGN.md §8): the torchrun launch environment,
// a TCPStore rendezvous and a ProcessGroupGloo, and the few collectives the runner needs (broadcast
// of the initial model, bucketed gradient all-reduce, sums of evaluation statistics, all-gather of
// averager shards and of evaluation rows, barriers). c10d stays inside distributed.cpp.
//
// A collective that fails (a rank died, or did not answer within the timeout) throws wavg::Error
// naming the lost rank(s): every surviving rank reports itself to the store, and the ranks that do
// not report within a short grace are the lost ones (rank 0 holds the store: when the store is
// gone, rank 0 is the one lost).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace wavg::detail {

// The torchrun convention: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT.
struct LaunchEnv {
  bool present = false;  // WORLD_SIZE (or RANK) is set: launched as one rank of a group
  int rank = 0, world = 1, local_rank = 0, local_world = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};
// Reads the environment; an invalid value throws wavg::Error naming the variable and the value.
LaunchEnv launch_env_from_environment();

// Rows [first, first + count) of `n` that rank `rank` of `world` takes (contiguous, sizes differ by
// at most one).
std::pair<int64_t, int64_t> rank_rows(int64_t n, int rank, int world);

class Distributed {
 public:
  // Rendezvous at MASTER_ADDR:MASTER_PORT (rank 0 serves the TCPStore). Every wait (rendezvous
  // and collectives) gives up after timeout_s seconds with a wavg::Error.
  Distributed(const LaunchEnv& env, double timeout_s);
  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  int rank() const { return rank_; }
  int world() const { return world_; }

  // Rank 0's values into every rank's tensors (CPU, contiguous), one flat buffer per dtype.
  void broadcast(const std::vector<at::Tensor>& tensors);
  // Sum over ranks, in place, in buckets of at most bucket_elems elements of one flat fp32 buffer
  // each (all buckets in flight at once); `scale` multiplies the sums.
  void all_reduce(const std::vector<at::Tensor>& tensors, double scale = 1.0,
                  int64_t bucket_elems = int64_t(1) << 22);
  // Sum over ranks of a few doubles, in place.
  void all_reduce(std::vector<double>& values);
  // `whole` holds numel elements of elem_bytes bytes; this rank's shard (rank_rows(numel, rank,
  // world)) is filled; on return every shard is.
  void all_gather(void* whole, int64_t numel, size_t elem_bytes);
  // Every rank's `mine` (lengths may differ), concatenated in rank order, on every rank: the rows
  // of an evaluation whose metric needs them all (average precision).
  std::vector<float> all_gather_concat(const std::vector<float>& mine);
  void barrier();

 private:
  struct Impl;
  [[noreturn]] void fail(const std::string& what, const std::string& why);
  std::unique_ptr<Impl> impl_;
  int rank_ = 0, world_ = 1;
  double timeout_s_ = 0;
};

// Data parallel, as torch DDP does it: every rank's gradients of `params` (zeros where a parameter
// has none) and `loss` averaged by one bucketed all-reduce over flat buffers, the loss riding in
// the last bucket; returns the averaged loss.
double average_gradients(Distributed& dist, const std::vector<at::Tensor>& params, const at::Tensor& loss);
// Data parallel: BatchNorm normalises with each rank's batch statistics; the running statistics
// (the floating `buffers`) are rank 0's after every step (torch DDP's broadcast_buffers), so that
// every rank holds the same model and samples the same weights.
void broadcast_buffers(Distributed& dist, const std::vector<at::Tensor>& buffers);

}  // namespace wavg::detail
